"""`serial`: every model in turn on each frame. The reference every other strategy must equal."""

from __future__ import annotations

from strategies.base import Arrivals
from strategies.lanes import failure_of
from strategies.records import CallLog, CallRecord, Outputs, empty_outputs
from strategies.runtime.sessions import SessionStrategy


class Serial(SessionStrategy):
    """One thread, one model after another, frame after frame: deterministic, so it is the oracle."""

    name = "serial"

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        outputs = empty_outputs(len(self.sessions), self.frame_count(arrivals))
        for frame in range(self.frame_count(arrivals)):
            arrivals.wait_for(frame, self.clock)
            for model in range(len(self.sessions)):
                with failure_of(self.name, self.workload.names[model], frame):
                    outputs[model][frame] = self.run_one(log, model, frame, "main")
        return outputs, log.calls
