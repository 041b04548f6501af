"""`asyncio`: one coroutine per model, each calling the blocking `session.run`.

(The module is not called asyncio.py so it cannot shadow the standard library.)
"""

from __future__ import annotations

import asyncio

from .base import Arrivals, CallLog, CallRecord, Outputs, StrategyError, empty_outputs
from .local import SessionStrategy


class Asyncio(SessionStrategy):
    """The write-up's asyncio: a coroutine per model gathered on one event loop.

    Kept faithful, flaw included: `session.run` blocks and has no await point, so the
    coroutines run one after another on the loop's single thread, and the result is the
    serial strategy with an event loop around it. (Offline there is no await at all; when
    frames arrive at a rate, each coroutine awaits its next frame's arrival.)
    """

    name = "asyncio"

    def open(self) -> None:
        super().open()
        self.loop = asyncio.new_event_loop()  # built before the clock starts

    def close(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:
            # A run interrupted inside `session.run` (Ctrl-C) leaves the loop stopped with its
            # tasks pending: cancel them and let them finish, so none is destroyed pending.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            self.loop = None
        super().close()

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        outputs = empty_outputs(len(self.sessions), self.workload.frame_count)

        async def run_model(model: int) -> None:
            for frame in range(self.workload.frame_count):
                arrivals.check_deadline(self.clock)
                delay = arrivals.time_of(frame) - self.clock()
                if arrivals.period > 0 and delay > 0:
                    await asyncio.sleep(delay)
                try:
                    outputs[model][frame] = self.run_one(log, model, frame, "event-loop")
                except Exception as error:
                    raise StrategyError(
                        f"{self.name}: model {self.workload.names[model]!r} failed on frame {frame}: {error}") from error

        async def run_all() -> None:
            tasks = [asyncio.ensure_future(run_model(model)) for model in range(len(self.sessions))]
            try:
                await asyncio.gather(*tasks)
            finally:
                # On a failure, stop the models still waiting and let them finish cancelling,
                # so no task outlives the run.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        self.loop.run_until_complete(run_all())
        return outputs, log.calls
