"""`asyncio`: one coroutine per model, each calling the blocking `session.run`.

(Named as registered: `strategies.asyncio` cannot shadow the standard library's asyncio, because
imports are absolute and only the repository root, not `strategies/`, is on `sys.path`.)
"""

from __future__ import annotations

from strategies.base import Arrivals
from strategies.lanes import EventLoopOwner
from strategies.records import CallLog, CallRecord, Outputs
from strategies.runtime.sessions import SessionStrategy


class Asyncio(EventLoopOwner, SessionStrategy):
    """The write-up's asyncio: a coroutine per model gathered on one event loop.

    Kept faithful, flaw included: `session.run` blocks and has no await point, so the
    coroutines run one after another on the loop's single thread, and the result is the
    serial strategy with an event loop around it. (Offline there is no await at all; when
    frames arrive at a rate, each coroutine awaits its next frame's arrival.)
    """

    name = "asyncio"

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)

        async def step(model: int, frame: int) -> Outputs:  # blocks the loop: the flaw kept
            return self.run_one(log, model, frame, "event-loop")

        return self.run_models_as_tasks(arrivals, step), log.calls
