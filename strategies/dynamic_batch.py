"""`dynamic_batch`: per model, every frame that has arrived and is not yet run goes into one call.

Triton's dynamic batcher and DeepStream's stream muxer, for fanbench's frames: the frames of
several cameras (or of one camera that fell behind) are stacked along the batch axis into one
`session.run` per model, and the outputs are split back per frame.
"""

from __future__ import annotations

import time

import numpy as np

from strategies.base import Arrivals, Clock, pause
from strategies.lanes import ModelThreads, failure_of, wait_for_lanes
from strategies.records import CallLog, CallRecord, Outputs, Workload, empty_outputs
from strategies.runtime.batches import check_free_batch, split_batch
from strategies.runtime.sessions import SessionStrategy
from strategies.settings import ThreadSettings

# Chosen by measurement (docs/capacity.md): on the 2-core CPU a call of 8 frames is as fast
# per frame as larger ones, and a queue that reaches 8 is already past any deadline.
DEFAULT_MAX_BATCH = 8
# Triton's default too: never hold a frame back waiting for company. Under load the queue
# fills by itself while the previous call runs, so batches grow exactly when they pay; at
# light load a frame runs alone at once. A delay only adds latency where a call's cost does
# not grow with its frames (a GPU), and there it is an option (--max-delay-ms).
DEFAULT_MAX_DELAY_MS = 0.0


class DynamicBatch(ModelThreads, SessionStrategy):
    """One lane (thread) per model. Each lane takes every frame that has arrived and that it has
    not run yet, up to `max_batch`; when fewer than `max_batch` are there it waits at most
    `max_delay_ms` (from the first frame's arrival) for more, then runs them as one call.

    A frame is complete when every model's lane has run it. Offline every frame is there at
    the start, so every call but the last carries `max_batch` frames (batched's technique with
    k = max_batch); in a stream the batch is as large as the queue, so at light load a frame
    runs alone as soon as it arrives (unlike `batched`, which makes it wait for k - 1 more).
    Models need a free batch dimension and every output must carry it.
    """

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
        """One past the last frame of the batch starting at `first` (which has arrived): every
        frame there by now, up to max_batch, after waiting up to max_delay for more."""
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
        count = len(out)
        frames, name = self.workload.models[model].frames, self.workload.names[model]
        first = 0
        while first < count:
            arrivals.wait_for(first, self.clock)  # also where a stopped or late run ends
            end = self.batch_end(arrivals, first, count)
            if arrivals.schedule is None:  # consecutive rows: a view, reshaped without a copy
                chunk = np.ascontiguousarray(frames[first:end])
            else:  # run frames carry reused workload frames: gather them
                chunk = frames[arrivals.schedule.sources[first:end]]
            per_frame = chunk.shape[1]
            with failure_of(self.name, name, first, end - 1):
                results = log.run(self.sessions[model], {self.input_names[model]: chunk.reshape(-1, *chunk.shape[2:])},
                                  model, first, f"thread-{model}", frames=end - first)
                split = [split_batch(result, end - first, per_frame) for result in results]
            for offset in range(end - first):
                out[first + offset] = tuple(parts[offset] for parts in split)
            first = end
