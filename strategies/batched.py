"""`batched`: k consecutive frames stacked into one `session.run` per model, outputs split back."""

from __future__ import annotations

import time

import numpy as np

from strategies.base import Arrivals, Clock
from strategies.lanes import failure_of
from strategies.records import CallLog, CallRecord, Outputs, Workload, empty_outputs
from strategies.runtime.batches import check_free_batch, split_batch
from strategies.runtime.sessions import SessionStrategy
from strategies.settings import ThreadSettings

DEFAULT_K = 4


class Batched(SessionStrategy):
    """The offline-video technique: one call per model per k frames instead of per frame.

    What it fixes: on small models the fixed cost of a call (input checks, allocation, thread
    pool wake-ups) is a large share of its time; stacking k frames along the batch axis pays
    it once per k frames and gives the intra-op threads bigger kernels to split.

    Its costs: latency. A chunk runs only once its last frame has arrived, so in streaming
    the first frame of a chunk waits for k - 1 more (k - 1 periods) before any model sees it;
    streaming measurements show it. Memory per call grows k-fold. The models run one after
    another per chunk, each with every core (intra-op threads = cores, spinning off). Models
    need a free batch dimension, and every output must carry it (first axis = k x batch).
    The last chunk is shorter when the frame count is not a multiple of k.
    """

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
            last = min(first + self.k, count) - 1  # the last chunk may be shorter
            arrivals.wait_for(last, self.clock)  # the chunk's latency cost: wait for its last frame
            for model, (session, spec) in enumerate(zip(self.sessions, self.workload.models, strict=True)):
                frames = spec.frames[first:last + 1] if arrivals.schedule is None \
                    else spec.frames[arrivals.schedule.sources[first:last + 1]]
                per_frame = frames.shape[1]
                # A slice of a C-contiguous array along its first axis reshapes without a copy.
                stacked = np.ascontiguousarray(frames).reshape(-1, *frames.shape[2:])
                with failure_of(self.name, self.workload.names[model], first, last):
                    results = log.run(session, {self.input_names[model]: stacked}, model, first, "main",
                                      frames=last + 1 - first)
                    split = [split_batch(result, last + 1 - first, per_frame) for result in results]
                for offset in range(last + 1 - first):
                    outputs[model][first + offset] = tuple(parts[offset] for parts in split)
        return outputs, log.calls
