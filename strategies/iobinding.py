"""`iobinding`: a thread per model with IO binding; each frame is copied to the device once."""

from __future__ import annotations

from typing import Any

from strategies.base import Arrivals, CallRecord, Outputs, Strategy, StrategyError, empty_outputs, wait_for_lanes
from strategies.failures import model_failed
from strategies.lanes import ModelThreads
from strategies.runtime.cuda import device_id
from strategies.runtime.device_frames import Cancelled, DeviceFrames
from strategies.runtime.sessions import io_names, make_session, provider_used


class IOBinding(ModelThreads, Strategy):
    """`threads` without the per-call copies: inputs and outputs bound on the device.

    With `session.run`, every model copies the frame to the GPU itself (four models: four
    copies of the same ~3 MB batch) and copies its outputs back inside the call. Here the
    frame is uploaded once (`OrtValue.ortvalue_from_numpy(x, 'cuda', device_id)`) and bound
    as every model's input; outputs are bound on the device (`bind_output(name, 'cuda')`)
    and copied back once per model after `synchronize_outputs()`, so the clock never stops
    before the GPU has finished. One session per model, each run only from its own thread.

    Streams: onnxruntime's CUDA provider runs each `Run` on a stream it creates itself (not
    the legacy default stream) unless `use_ep_level_unified_stream` is set, so models run from
    different threads already overlap on the device. A stream of one's own per session
    (`user_compute_stream`, onnxruntime >= 1.17) needs a stream handle from a CUDA runtime
    binding in this process (PyTorch, CuPy, cuda-python), which fanbench does not depend on.

    On the CPU provider the same code runs with OrtValues on 'cpu', which is how its logic is
    checked for equivalence on machines without a GPU.
    """

    name = "iobinding"
    models_at_once = True
    #: How many frames the fastest model may run past the slowest (bounds input copies held on the device).
    frames_ahead = 4

    @property
    def device(self) -> str:
        return "cuda" if self.workload.provider == "cuda" else "cpu"

    def open(self) -> None:
        options = self.workload.provider_options
        self.device_id = device_id(options)
        self.sessions: list[Any] = []
        self.bindings: list[Any] = []
        self.input_names: list[str] = []
        for model in self.workload.models:
            session = make_session(model.path, self.settings, self.workload.provider, options)
            input_name, output_names = io_names(session)
            binding = session.io_binding()
            for output in output_names:
                # No shape given: onnxruntime allocates each run's outputs on the device.
                binding.bind_output(output, self.device, self.device_id)
            self.sessions.append(session)
            self.bindings.append(binding)
            self.input_names.append(input_name)
        self.providers_used = [provider_used(session) for session in self.sessions]
        self.start_pool(len(self.sessions))

    def close(self) -> None:
        self.stop_pool()
        self.bindings = []
        self.sessions = []

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        models = self.workload.models
        outputs = empty_outputs(len(models), self.workload.frame_count)
        calls: list[CallRecord] = []
        frames = DeviceFrames([model.frames for model in models], self.device, self.device_id, self.frames_ahead)

        def lane(model: int) -> None:
            session, binding, input_name = self.sessions[model], self.bindings[model], self.input_names[model]
            name = f"thread-{model}"
            frame = 0
            try:
                for frame in range(self.workload.frame_count):
                    arrivals.wait_for(frame, self.clock)
                    binding.bind_ortvalue_input(input_name, frames.get(model, frame))
                    start = self.clock()
                    session.run_with_iobinding(binding)
                    binding.synchronize_outputs()  # the device has finished before the clock reads
                    outputs[model][frame] = tuple(binding.copy_outputs_to_cpu())
                    calls.append(CallRecord(model, frame, 1, start, self.clock(), name))  # atomic under the GIL
                    frames.release(model, frame)
            except Cancelled:  # another lane failed: wait_for_lanes cancelled the frames
                return
            except StrategyError:  # RunTimeout, RunStopped: already says what happened
                raise
            except Exception as error:
                raise model_failed(self.name, self.workload.names[model], frame, error) from error

        # On the first failure, cancelling the frames wakes and ends the other lanes.
        wait_for_lanes([self.pool.submit(lane, model) for model in range(len(models))], frames.cancel)
        return outputs, calls
