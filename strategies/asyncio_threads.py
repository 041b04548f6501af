"""`asyncio_threads`: asyncio done right for blocking inference: each `session.run` goes to a
worker thread, one task per model."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, wait

from strategies.asyncio import EventLoopOwner, run_models, until_arrival
from strategies.base import Arrivals, CallLog, CallRecord, Outputs, empty_outputs
from strategies.failures import model_failed
from strategies.lanes import ModelThreads, SessionStrategy


class AsyncioThreads(EventLoopOwner, ModelThreads, SessionStrategy):
    """One asyncio task per model; each task awaits its model's `session.run` on an executor thread.

    What it fixes: the classic `asyncio` calls the blocking `session.run` on the event loop's
    only thread, so nothing overlaps and it equals `serial`. Offloading the call to a thread
    (what `asyncio.to_thread` does) gives the loop an await point, and onnxruntime releases the
    GIL inside the call, so the models run in parallel: this is `threads` driven by an event
    loop, for applications that already live in asyncio.

    Its costs: a loop-to-thread hand-off per call (a few tens of microseconds), and the same
    contention as `threads`. The loop and the executor (one thread per model) are built in
    `open`, outside the clock. Defaults as `threads`: cores / models intra-op threads each,
    spinning off.
    """

    name = "asyncio_threads"
    models_at_once = True

    def open(self) -> None:
        super().open()
        self.start_loop()
        self.start_pool(len(self.sessions))

    def close(self) -> None:
        self.stop_pool()
        self.stop_loop()
        super().close()

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        outputs = empty_outputs(len(self.sessions), self.workload.frame_count)
        in_flight: set[Future] = set()

        async def run_model(model: int) -> None:
            lane = f"thread-{model}"
            for frame in range(self.workload.frame_count):
                await until_arrival(arrivals, frame, self.clock)  # the loop stays free while this model waits
                try:
                    arrivals.wait_for(frame, self.clock)  # arrived by now: checks the deadline
                    call = self.pool.submit(self.run_one, log, model, frame, lane)
                    in_flight.add(call)
                    # Forgotten only once the thread is done with it, even if this task is cancelled.
                    call.add_done_callback(in_flight.discard)
                    outputs[model][frame] = await asyncio.wrap_future(call)
                except Exception as error:
                    raise model_failed(self.name, self.workload.names[model], frame, error) from error

        try:
            run_models(self.loop, [run_model(model) for model in range(len(self.sessions))])
        finally:
            # Calls already on a thread cannot be cancelled (a running session.run): wait for
            # them, so nothing of this run outlives it.
            wait(list(in_flight))
        return outputs, log.calls
