"""`iobinding`: a thread per model with IO binding; each frame is copied to the device once."""

from __future__ import annotations

from typing import Any

from strategies.base import Arrivals
from strategies.lanes import ModelThreads
from strategies.records import CallRecord, Outputs
from strategies.runtime.device_frames import DeviceFrames
from strategies.runtime.sessions import SessionStrategy, device_id, io_names


class IOBinding(ModelThreads, SessionStrategy):
    """`threads` without the per-call copies: each frame is uploaded once (DeviceFrames) as every model's
    input; outputs are bound on the device and copied back after `synchronize_outputs()`, so the clock
    never stops before the GPU has finished. On the CPU provider the same code runs on 'cpu' OrtValues."""

    name = "iobinding"
    models_at_once = True
    #: How many frames the fastest model may run past the slowest (bounds input copies held on the device).
    frames_ahead = 4

    def open(self) -> None:
        super().open()  # the sessions, then the pool
        self.device_id = device_id(self.workload.provider_options)
        self.bindings: list[Any] = []
        for session in self.sessions:
            binding = session.io_binding()
            for output in io_names(session)[1]:
                # No shape given: onnxruntime allocates each run's outputs on the device.
                binding.bind_output(output, self.workload.provider, self.device_id)
            self.bindings.append(binding)

    def close(self) -> None:
        super().close()  # the pool first: no lane uses a session any more
        self.bindings = []

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        calls: list[CallRecord] = []
        frames = DeviceFrames([model.frames for model in self.workload.models], self.workload.provider, self.device_id,
                              self.frames_ahead)

        def step(model: int, frame: int) -> Outputs:
            binding = self.bindings[model]
            binding.bind_ortvalue_input(self.input_names[model], frames.get(model, frame, self.source(frame)))
            start = self.clock()
            self.sessions[model].run_with_iobinding(binding)
            binding.synchronize_outputs()  # the device has finished before the clock reads
            outputs = tuple(binding.copy_outputs_to_cpu())
            calls.append(CallRecord(model, frame, 1, start, self.clock(), f"thread-{model}"))  # atomic under the GIL
            frames.release(model, frame)
            return outputs

        def cancel() -> None:  # wakes the lanes waiting for a frame's upload, and those waiting for its arrival
            frames.cancel()
            arrivals.stop_all()

        return self.run_models_in_threads(arrivals, step, cancel), calls
