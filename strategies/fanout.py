"""`fanout`: for each frame, every model runs at once on a thread pool."""

from __future__ import annotations

from concurrent.futures import wait

from strategies.base import Arrivals
from strategies.lanes import ModelThreads, failure_of
from strategies.records import CallLog, CallRecord, Outputs, empty_outputs
from strategies.runtime.sessions import SessionStrategy


class Fanout(ModelThreads, SessionStrategy):
    """Per-frame fan-out for a live camera: a frame completes before the next one starts, so its
    latency is about its slowest model's time; the cost is a barrier per frame."""

    name = "fanout"
    models_at_once = True

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        outputs = empty_outputs(len(self.sessions), self.frame_count(arrivals))
        for frame in range(self.frame_count(arrivals)):
            arrivals.wait_for(frame, self.clock)
            futures = [self.pool.submit(self.run_one, log, model, frame, f"thread-{model}")
                       for model in range(len(self.sessions))]
            wait(futures)  # the frame's barrier: every model finishes before the next frame
            for model, future in enumerate(futures):
                with failure_of(self.name, self.workload.names[model], frame):
                    outputs[model][frame] = future.result()
        return outputs, log.calls
