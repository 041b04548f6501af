"""`cuda_graph`: each model's whole graph captured once as a CUDA graph, then replayed per frame."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, ClassVar

import numpy as np

from strategies.base import Arrivals, Strategy, StrategyUnavailable
from strategies.lanes import run_lanes, wait_for_lanes
from strategies.records import CallRecord, Outputs
from strategies.runtime.cuda import device_id
from strategies.runtime.sessions import io_names, make_session, onnxruntime, provider_used
from strategies.settings import ThreadSettings

# The start of onnxruntime's session-creation error for a model CUDA graphs cannot capture.
GRAPH_REFUSED = "cannot use the CUDA Graph feature"


class CudaGraph(Strategy):
    """A thread per model, each replaying its model's captured CUDA graph on every frame.

    With `enable_cuda_graph`, onnxruntime records every kernel launch of a run once and
    afterwards replays the recording with one call, removing the per-kernel launch cost
    that dominates small models. Replay reads and writes the same device addresses every
    time, so each model owns a pre-allocated input and output OrtValue, bound once; per frame
    the input is overwritten in place (`update_inplace`) and the graph replayed. Shapes are
    therefore fixed, which a model's frames are (one array). onnxruntime forbids running
    such a session from several threads at once, and its CUDA provider keeps the captured
    graph per thread: each model has one thread of its own for the strategy's whole life,
    which creates the session, warms it up, captures the graph (`open`, one model at a time)
    and replays it on every frame of every run. `close` releases each session on its thread.
    """

    name = "cuda_graph"
    models_at_once = True
    #: Runs in `open`: onnxruntime needs regular runs (memory allocation) before it captures.
    warmup_runs = 3
    #: False only in tests, which run the same buffer logic on the CPU provider.
    needs_cuda: ClassVar[bool] = True

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
        # Fixed shapes hold by construction: a model's frames are one array (frames, *input shape).
        ort = onnxruntime()
        self.options = dict(self.workload.provider_options)
        if self.workload.provider == "cuda":
            self.options["enable_cuda_graph"] = "1"
        self.device_id = device_id(self.options)
        count = len(self.workload.models)
        self.sessions: list[Any] = [None] * count
        self.bindings: list[Any] = [None] * count
        self.inputs: list[Any] = [None] * count
        self.outputs: list[list[Any]] = [[] for _ in range(count)]
        self.run_options = ort.RunOptions()
        self._capture_lock = threading.Lock()
        self._stop.clear()  # set by a previous close; from here on it means "this open was interrupted"
        # One thread per model for the strategy's whole life: onnxruntime's CUDA provider keeps a
        # captured graph in the per-thread context of the thread that captured it, so the thread
        # that builds and captures a session must be the one that replays it, round after round.
        self.lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fanbench-{self.name}-{model}")
                      for model in range(count)]
        wait([lane.submit(threading.get_ident) for lane in self.lanes])  # every lane's thread started first
        # Every capture has finished before any lane is timed (and before close on failure); the
        # first failure stops the lanes still waiting for their turn.
        wait_for_lanes([lane.submit(self._set_up, model) for model, lane in enumerate(self.lanes)], self.stop)
        self.providers_used = [provider_used(session) for session in self.sessions]

    def _set_up(self, model: int) -> None:
        """On the model's own lane: create its session, bind its buffers, warm it and capture its graph.

        One lane at a time (the lock): while a stream is capturing, CUDA forbids other threads'
        synchronisations and allocations, which another session's creation or warm-up makes.
        """
        ort = onnxruntime()
        spec = self.workload.models[model]
        with self._capture_lock:
            if self._stop.is_set():  # open was interrupted while this lane waited its turn
                return
            session = self._graph_session(spec.name, spec.path, self.options)
            input_name, output_names = io_names(session)
            sample = np.ascontiguousarray(spec.frames[0])
            binding = session.io_binding()
            # A buffer of its own: on the CPU, ortvalue_from_numpy would wrap the frames array itself,
            # and update_inplace would then overwrite the workload's frames.
            value = ort.OrtValue.ortvalue_from_shape_and_type(sample.shape, sample.dtype, self.workload.provider, self.device_id)
            value.update_inplace(sample)
            binding.bind_ortvalue_input(input_name, value)
            outputs = [ort.OrtValue.ortvalue_from_shape_and_type(array.shape, array.dtype, self.workload.provider, self.device_id)
                       for array in self._output_templates(spec.path, input_name, sample)]
            for output_name, output in zip(output_names, outputs, strict=True):
                binding.bind_ortvalue_output(output_name, output)
            self.sessions[model], self.bindings[model] = session, binding
            self.inputs[model], self.outputs[model] = value, outputs
            for _ in range(self.warmup_runs):  # regular runs, then the capture, then a replay
                session.run_with_iobinding(binding, self.run_options)
            binding.synchronize_outputs()

    def _release(self, model: int) -> None:
        """On the model's own lane: drop its binding, buffers and session (and with it the captured graph)."""
        self.bindings[model] = self.inputs[model] = self.sessions[model] = None
        self.outputs[model] = []

    def _graph_session(self, name: str, path: Any, options: dict[str, str]) -> Any:
        """The model's session; StrategyUnavailable where onnxruntime refuses it CUDA graphs.

        onnxruntime refuses `enable_cuda_graph` when creating the session if the model has
        control-flow nodes (If, Loop, Scan) or compute nodes it places on the CPU: that is a
        property of the model, so the strategy is skipped with onnxruntime's reason, not failed.
        """
        try:
            return make_session(path, self.settings, self.workload.provider, options)
        except Exception as error:
            if GRAPH_REFUSED not in str(error):
                raise
            raise StrategyUnavailable(f"{self.name}: onnxruntime cannot run model {name!r} as a CUDA graph: "
                                      f"{str(error).strip()}") from error

    def _output_templates(self, path: Any, input_name: str, sample: np.ndarray) -> list[np.ndarray]:
        """Output arrays of one CPU run: their shapes and types size the pre-allocated outputs.

        (Read from a run, not from the model's declared outputs, which may have symbolic dims.)
        """
        probe = make_session(path, ThreadSettings(intra_op=1, inter_op=1, spinning=False), "cpu")
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
        self.bindings, self.inputs, self.outputs, self.sessions = [], [], [], []

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        calls: list[CallRecord] = []

        def step(model: int, frame: int) -> Outputs:
            binding, outputs = self.bindings[model], self.outputs[model]
            start = self.clock()
            # The same address every frame: the graph reads it.
            self.inputs[model].update_inplace(np.ascontiguousarray(self.workload.models[model].frames[frame]))
            self.sessions[model].run_with_iobinding(binding, self.run_options)
            binding.synchronize_outputs()  # the replay has finished before outputs are read
            # .numpy() copies a device buffer to the host; on the CPU it may be a view of the
            # buffer the next frame overwrites, hence the explicit copy.
            results = tuple(np.array(output.numpy(), copy=True) for output in outputs)
            calls.append(CallRecord(model, frame, 1, start, self.clock(), f"thread-{model}"))
            return results

        # Each model's lane on its own lifelong thread, the one that captured its graph.
        return run_lanes(self, arrivals, step, self.lanes), calls
