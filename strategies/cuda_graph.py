"""`cuda_graph`: each model's whole graph captured once as a CUDA graph, then replayed per frame (docs/gpu.md)."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, ClassVar

import numpy as np

from strategies.base import Arrivals, Strategy, StrategyUnavailable
from strategies.lanes import run_models_on_pools, wait_for_lanes
from strategies.records import CallRecord, Outputs
from strategies.runtime.cudart import CudaRuntime, CudaRuntimeError, cuda_runtime
from strategies.runtime.sessions import SessionFactory, device_id, io_names, onnxruntime, provider_used
from strategies.settings import ThreadSettings

# The start of onnxruntime's session-creation error for a model CUDA graphs cannot capture.
GRAPH_REFUSED = "cannot use the CUDA Graph feature"


class CudaGraph(Strategy):
    """A thread per model for the strategy's life, which creates its session, captures the graph
    (`open`, one model at a time), replays it on every frame and releases it: onnxruntime keeps a
    captured graph per thread and forbids running such a session from several threads. Replay uses
    the same device addresses every time, so each model owns an input and outputs bound once (shapes
    are fixed: a model's frames are one array).

    On CUDA each lane owns a stream (libcudart): frame in with `cudaMemcpyAsync` from page-locked
    frames, replay without onnxruntime's end-of-run synchronisation, outputs out, and only that stream
    waited for. `synchronize_outputs()` is a `cudaDeviceSynchronize`, with which four lanes on an H100
    ran no faster than `serial` (docs/gpu.md). On the CPU provider (tests) onnxruntime's own copies
    are used, unless a test hands in a `cudart` that copies host memory."""

    name = "cuda_graph"
    models_at_once = True
    #: Runs in `open`: onnxruntime needs regular runs (memory allocation) before it captures.
    warmup_runs = 3
    #: False only in tests, which run the same buffer logic on the CPU provider.
    needs_cuda: ClassVar[bool] = True
    #: The CUDA runtime calls the lanes' streams use; None: onnxruntime's own copies (the CPU provider).
    cudart: CudaRuntime | None = None

    @classmethod
    def unavailable(cls, provider: str) -> str | None:
        if cls.needs_cuda and (provider == "cpu" or (
                provider == "auto" and "CUDAExecutionProvider" not in onnxruntime().get_available_providers())):
            return "needs the CUDA provider, which this run will not have"
        return None

    def open(self) -> None:
        if self.needs_cuda and self.workload.provider != "cuda":
            raise StrategyUnavailable(
                f"{self.name} needs the CUDA provider (CUDA graphs), and this run's provider is "
                f"{self.workload.provider!r}; run on a CUDA host with `.[gpu]` installed and --provider cuda or auto.")
        ort = onnxruntime()
        self.options = {"enable_cuda_graph": "1"}  # on top of the run's (the session factory adds those)
        self.device_id = device_id(self.workload.provider_options)
        count = len(self.workload.models)
        self.sessions: list[Any] = [None] * count
        self.bindings: list[Any] = [None] * count
        self.inputs: list[Any] = [None] * count
        self.outputs: list[list[Any]] = [[] for _ in range(count)]
        self.run_options = ort.RunOptions()
        if self.workload.provider == "cuda" and self.cudart is None:
            try:
                self.cudart = cuda_runtime()
            except CudaRuntimeError as error:
                raise StrategyUnavailable(f"{self.name}: {error}") from error
        self.streams: list[int] = [0] * count
        self.staging: list[list[np.ndarray]] = [[] for _ in range(count)]
        self.pinned: list[np.ndarray] = []
        if self.cudart is not None:
            # Each lane waits for its own stream; onnxruntime's end-of-run wait is not needed.
            self.run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
            self._pin_frames()
        self._capture_lock = threading.Lock()
        self._stop.clear()  # set by a previous close; from here on it means "this open was interrupted"
        # The thread that captures a session's graph must replay it, round after round (see the class).
        self.lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fanbench-{self.name}-{model}")
                      for model in range(count)]
        wait([lane.submit(threading.get_ident) for lane in self.lanes])  # every lane's thread started first
        # Every capture has finished before any lane is timed (and before close on failure); the
        # first failure stops the lanes still waiting for their turn.
        wait_for_lanes([lane.submit(self._set_up, model) for model, lane in enumerate(self.lanes)], self.stop)
        self.providers_used = [provider_used(session) for session in self.sessions]

    def _pin_frames(self) -> None:
        """Page-lock each distinct frames array once (where refused, a locked-memory limit, the driver stages)."""
        seen: set[int] = set()
        for spec in self.workload.models:
            frames = spec.frames
            if id(frames) in seen or not frames.flags.c_contiguous:
                continue
            seen.add(id(frames))
            with contextlib.suppress(CudaRuntimeError):
                self.cudart.pin(frames)  # type: ignore[union-attr]
                self.pinned.append(frames)

    def _set_up(self, model: int) -> None:
        """On the model's own lane: create its session, bind its buffers, warm it and capture its graph; one lane
        at a time, since while a stream captures CUDA forbids other threads' synchronisations and allocations."""
        ort = onnxruntime()
        spec = self.workload.models[model]
        with self._capture_lock:
            if self._stop.is_set():  # open was interrupted while this lane waited its turn
                return
            options = self.options
            if self.cudart is not None:
                self.streams[model] = self.cudart.create_stream(self.device_id)
                options = {**options, "user_compute_stream": str(self.streams[model])}
            session = self._graph_session(spec.name, spec.path, options)
            input_name, output_names = io_names(session)
            sample = np.ascontiguousarray(spec.frames[0])
            binding = session.io_binding()
            # A buffer of its own: on the CPU, ortvalue_from_numpy would wrap the frames array itself,
            # and update_inplace would then overwrite the workload's frames.
            value = ort.OrtValue.ortvalue_from_shape_and_type(sample.shape, sample.dtype, self.workload.provider, self.device_id)
            value.update_inplace(sample)
            binding.bind_ortvalue_input(input_name, value)
            templates = self._output_templates(spec.path, input_name, sample)
            outputs = [ort.OrtValue.ortvalue_from_shape_and_type(array.shape, array.dtype, self.workload.provider, self.device_id)
                       for array in templates]
            if self.cudart is not None:  # where each frame's outputs land on the host, page-locked
                self.staging[model] = [np.empty_like(array) for array in templates]
                for buffer in self.staging[model]:
                    self.cudart.pin(buffer)
            for output_name, output in zip(output_names, outputs, strict=True):
                binding.bind_ortvalue_output(output_name, output)
            self.sessions[model], self.bindings[model] = session, binding
            self.inputs[model], self.outputs[model] = value, outputs
            for _ in range(self.warmup_runs):  # regular runs, then the capture, then a replay
                session.run_with_iobinding(binding, self.run_options)
                if self.cudart is not None:
                    self.cudart.synchronize(self.streams[model])
            binding.synchronize_outputs()  # once, before any lane is timed

    def _release(self, model: int) -> None:
        """On the model's own lane: drop its session (and graph), then its stream and page-locked buffers."""
        self.bindings[model] = self.inputs[model] = self.sessions[model] = None
        self.outputs[model] = []
        if self.cudart is not None:
            if self.streams[model]:
                self.cudart.synchronize(self.streams[model])
                self.cudart.destroy_stream(self.streams[model])
                self.streams[model] = 0
            for buffer in self.staging[model]:
                self.cudart.unpin(buffer)
            self.staging[model] = []

    def _graph_session(self, name: str, path: Any, options: dict[str, str]) -> Any:
        """The model's session; StrategyUnavailable (a property of the model, not a failure) where
        onnxruntime refuses it CUDA graphs: control-flow nodes, or compute nodes placed on the CPU."""
        try:
            return self.workload.sessions.open(path, self.settings, **options)
        except Exception as error:
            if GRAPH_REFUSED not in str(error):
                raise
            raise StrategyUnavailable(f"{self.name}: onnxruntime cannot run model {name!r} as a CUDA graph: "
                                      f"{str(error).strip()}") from error

    def _output_templates(self, path: Any, input_name: str, sample: np.ndarray) -> list[np.ndarray]:
        """Output arrays of one CPU run (declared outputs may have symbolic dims): they size the outputs."""
        probe = SessionFactory("cpu").open(path, ThreadSettings(intra_op=1, inter_op=1, spinning=False))
        return probe.run(None, {input_name: sample})

    def close(self) -> None:
        lanes, self.lanes = getattr(self, "lanes", []), []
        # Each lane drops its own session (a graph is released by the thread that captured it), then ends.
        # A lane still running (an interrupted setup, a stopped run) finishes its current call first.
        for model, lane in enumerate(lanes):
            with contextlib.suppress(RuntimeError):  # already shut down
                lane.submit(self._release, model)
        for lane in lanes:
            lane.shutdown(wait=True, cancel_futures=False)
        for frames in getattr(self, "pinned", []):
            self.cudart.unpin(frames)  # type: ignore[union-attr]
        self.pinned = []
        self.bindings, self.inputs, self.outputs, self.sessions = [], [], [], []

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        calls: list[CallRecord] = []
        cudart = self.cudart

        def step(model: int, frame: int) -> Outputs:
            binding, outputs = self.bindings[model], self.outputs[model]
            frame_input = np.ascontiguousarray(self.workload.models[model].frames[self.source(frame)])
            start = self.clock()
            if cudart is None:  # the CPU provider: onnxruntime's own copies
                self.inputs[model].update_inplace(frame_input)  # the same address every frame: the graph reads it
                self.sessions[model].run_with_iobinding(binding, self.run_options)
                # .numpy() on the CPU may be a view of the buffer the next frame overwrites: copy.
                results = tuple(np.array(output.numpy(), copy=True) for output in outputs)
            else:  # in order on the lane's own stream: frame in, replay, outputs out; then wait for it alone
                stream, staging = self.streams[model], self.staging[model]
                cudart.copy_to_device(self.inputs[model].data_ptr(), frame_input, stream)
                self.sessions[model].run_with_iobinding(binding, self.run_options)
                for buffer, output in zip(staging, outputs, strict=True):
                    cudart.copy_to_host(buffer, output.data_ptr(), stream)
                cudart.synchronize(stream)
                results = tuple(buffer.copy() for buffer in staging)  # the staging buffers serve the next frame
            calls.append(CallRecord(model, frame, 1, start, self.clock(), f"thread-{model}"))
            return results

        # Each model's lane on its own lifelong thread, the one that captured its graph.
        return run_models_on_pools(self, arrivals, step, self.lanes), calls
