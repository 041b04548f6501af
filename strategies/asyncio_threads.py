"""`asyncio_threads`: asyncio done right for blocking inference."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, wait

from strategies.base import Arrivals
from strategies.lanes import EventLoopOwner, ModelThreads
from strategies.records import CallLog, CallRecord, Outputs
from strategies.runtime.sessions import SessionStrategy


class AsyncioThreads(ModelThreads, EventLoopOwner, SessionStrategy):
    """One asyncio task per model, each awaiting its `session.run` on an executor thread (as
    `asyncio.to_thread` does): `threads` driven by an event loop, at a hand-off per call."""

    name = "asyncio_threads"
    models_at_once = True

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        in_flight: set[Future] = set()

        async def step(model: int, frame: int) -> Outputs:
            call = self.pool.submit(self.run_one, log, model, frame, f"thread-{model}")
            in_flight.add(call)
            # Forgotten only once the thread is done with it, even if this task is cancelled.
            call.add_done_callback(in_flight.discard)
            return await asyncio.wrap_future(call)

        try:
            return self.run_models_as_tasks(arrivals, step), log.calls
        finally:
            # Calls already on a thread cannot be cancelled (a running session.run): wait for
            # them, so nothing of this run outlives it.
            wait(list(in_flight))
