"""`batched`: k consecutive frames stacked into one `session.run` per model, outputs split back."""

from __future__ import annotations

import time

from strategies.base import Arrivals, Clock
from strategies.lanes import failure_of
from strategies.records import CallLog, CallRecord, Outputs, Workload, empty_outputs
from strategies.runtime.batches import check_free_batch, run_stacked
from strategies.runtime.sessions import SessionStrategy
from strategies.settings import ThreadSettings

DEFAULT_K = 4


class Batched(SessionStrategy):
    """One call per model per k frames, the models one after another; a chunk runs once its last frame has
    arrived, so in a stream its first frame waits k - 1 periods (docs/strategies.md)."""

    name = "batched"

    def __init__(self, workload: Workload, settings: ThreadSettings | None = None, clock: Clock = time.perf_counter,
                 k: int = DEFAULT_K):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"batched: k (frames per call) must be a whole number of at least 1, got {k!r}.")
        super().__init__(workload, settings, clock)
        self.k = k

    def open(self) -> None:
        super().open()
        check_free_batch(self.name, self.sessions, self.workload.names)

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        count = self.frame_count(arrivals)
        outputs = empty_outputs(len(self.sessions), count)
        for first in range(0, count, self.k):
            end = min(first + self.k, count)
            arrivals.wait_for(end - 1, self.clock)  # the chunk's latency cost: wait for its last frame
            for model, (session, spec) in enumerate(zip(self.sessions, self.workload.models, strict=True)):
                with failure_of(self.name, spec.name, first, end - 1):
                    outputs[model][first:end] = run_stacked(log, session, self.input_names[model], spec.frames,
                                                            arrivals, model, first, end, "main")
        return outputs, log.calls
