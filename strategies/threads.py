"""`threads`: one thread per model, each running its model over every frame."""

from __future__ import annotations

from strategies.base import Arrivals
from strategies.lanes import ModelThreads
from strategies.records import CallLog, CallRecord, Outputs
from strategies.runtime.sessions import SessionStrategy


class Threads(ModelThreads, SessionStrategy):
    """The write-up's winner. onnxruntime releases the GIL inside `session.run`, so the models overlap;
    each runs at its own pace, and a frame is complete when its slowest model is done with it."""

    name = "threads"
    models_at_once = True

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        # On the first failure the other models stop at their next frame.
        outputs = self.run_models_in_threads(arrivals, lambda model, frame: self.run_one(log, model, frame, f"thread-{model}"))
        return outputs, log.calls
