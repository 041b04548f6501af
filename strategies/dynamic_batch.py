"""`dynamic_batch`: per model, every frame that has arrived and is not yet run goes into one call
(Triton's dynamic batcher, DeepStream's stream muxer)."""

from __future__ import annotations

import time

from strategies.base import Arrivals, Clock, pause
from strategies.lanes import ModelThreads, failure_of, wait_for_lanes
from strategies.records import CallLog, CallRecord, Outputs, Workload, empty_outputs
from strategies.runtime.batches import check_free_batch, run_stacked
from strategies.runtime.sessions import SessionStrategy
from strategies.settings import ThreadSettings

# Chosen by measurement (docs/capacity.md): on the 2-core CPU a call of 8 frames is as fast
# per frame as larger ones, and a queue that reaches 8 is already past any deadline.
DEFAULT_MAX_BATCH = 8
# Triton's default too: under load the queue fills by itself while the previous call runs, so batches
# grow exactly when they pay. A delay only pays where a call's cost does not grow with its frames (a
# GPU), and there it is an option (--max-delay-ms).
DEFAULT_MAX_DELAY_MS = 0.0


class DynamicBatch(ModelThreads, SessionStrategy):
    """A lane (thread) per model, each taking every frame that has arrived and it has not run, up to `max_batch`,
    waiting at most `max_delay_ms` after the first one's arrival for more. Offline this is `batched` with
    k = max_batch; at light load a frame runs alone as soon as it arrives."""

    name = "dynamic_batch"
    models_at_once = True

    def __init__(self, workload: Workload, settings: ThreadSettings | None = None, clock: Clock = time.perf_counter,
                 max_batch: int = DEFAULT_MAX_BATCH, max_delay_ms: float = DEFAULT_MAX_DELAY_MS):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"dynamic_batch: max_batch must be a whole number of at least 1, got {max_batch!r}.")
        if not (isinstance(max_delay_ms, int | float) and 0 <= max_delay_ms < float("inf")):
            raise ValueError(f"dynamic_batch: max_delay_ms must be 0 or more milliseconds, got {max_delay_ms!r}.")
        super().__init__(workload, settings, clock)
        self.max_batch, self.max_delay_s = max_batch, max_delay_ms / 1000

    def open(self) -> None:
        super().open()
        check_free_batch(self.name, self.sessions, self.workload.names)

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        outputs = empty_outputs(len(self.sessions), self.frame_count(arrivals))
        futures = [self.pool.submit(self._lane, arrivals, model, log, outputs[model])
                   for model in range(len(self.sessions))]
        wait_for_lanes(futures, arrivals.stop_all)  # the first failure stops the other lanes
        return outputs, log.calls

    def batch_end(self, arrivals: Arrivals, first: int, count: int) -> int:
        """One past the last frame of the batch starting at `first` (arrived), waiting up to max_delay for more."""
        limit = min(first + self.max_batch, count)
        cutoff = arrivals.time_of(first) + self.max_delay_s  # wait no later than this for company
        end = first + 1
        while end < limit:
            due = arrivals.time_of(end)
            now = self.clock()
            if due <= now:
                end += 1
            elif due <= cutoff:
                if pause(due - now, arrivals.stop):
                    arrivals.check_deadline(self.clock)  # stopped: raises RunStopped
            else:
                break
        return end

    def _lane(self, arrivals: Arrivals, model: int, log: CallLog, out: list[Outputs]) -> None:
        spec, first = self.workload.models[model], 0
        while first < len(out):
            arrivals.wait_for(first, self.clock)  # also where a stopped or late run ends
            end = self.batch_end(arrivals, first, len(out))
            with failure_of(self.name, spec.name, first, end - 1):
                out[first:end] = run_stacked(log, self.sessions[model], self.input_names[model], spec.frames, arrivals,
                                             model, first, end, f"thread-{model}")
            first = end
