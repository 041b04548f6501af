"""`fanout`: for each frame, every model runs at once on a thread pool; the frame completes
before the next one starts."""

from __future__ import annotations

from concurrent.futures import wait

from strategies.base import Arrivals
from strategies.lanes import ModelThreads, failure_of
from strategies.records import CallLog, CallRecord, Outputs, empty_outputs
from strategies.runtime.sessions import SessionStrategy


class Fanout(ModelThreads, SessionStrategy):
    """Per-frame fan-out: the latency-bound streaming case (a live camera).

    What it fixes: `threads` lets every model run ahead at its own pace, which is fine for a
    file but not for a camera, where a frame's results are wanted before the next frame
    arrives. Here the models of one frame run concurrently (onnxruntime releases the GIL),
    so a frame's latency is about its slowest model's time rather than the sum of all.

    Its cost: a barrier per frame. Cores that finish their model early idle until the slowest
    model of the frame is done, and the pool hand-off adds a little per frame; offline it
    cannot beat `threads`. Default settings: one thread per model and cores / models intra-op
    threads each, spinning off, so the busy threads stay near the core count.
    """

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
