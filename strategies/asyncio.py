"""`asyncio`: one coroutine per model, each calling the blocking `session.run`. (It cannot shadow the
standard library's asyncio: imports are absolute, and `strategies/` is not on `sys.path`.)"""

from __future__ import annotations

from strategies.base import Arrivals
from strategies.lanes import EventLoopOwner
from strategies.records import CallLog, CallRecord, Outputs
from strategies.runtime.sessions import SessionStrategy


class Asyncio(EventLoopOwner, SessionStrategy):
    """The write-up's asyncio, flaw kept: `session.run` blocks and has no await point, so the coroutines
    run one after another on the loop's thread (awaiting only their frames' arrivals): `serial` in a loop."""

    name = "asyncio"

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)

        async def step(model: int, frame: int) -> Outputs:  # blocks the loop: the flaw kept
            return self.run_one(log, model, frame, "event-loop")

        return self.run_models_as_tasks(arrivals, step), log.calls
