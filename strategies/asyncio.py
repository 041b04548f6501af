"""`asyncio`: one coroutine per model, each calling the blocking `session.run`.

(The module is not called asyncio.py so it cannot shadow the standard library.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from strategies.base import Arrivals, CallLog, CallRecord, Clock, Outputs, empty_outputs
from strategies.failures import model_failed
from strategies.lanes import SessionStrategy


class EventLoopOwner:
    """A strategy's own event loop: built in `open`, before the clock; on close, any task still
    pending is finished before the loop is closed."""

    loop: asyncio.AbstractEventLoop | None = None

    def start_loop(self) -> None:
        self.loop = asyncio.new_event_loop()

    def stop_loop(self) -> None:
        if self.loop is not None:
            finish_tasks(self.loop)
            self.loop.close()
            self.loop = None


async def until_arrival(arrivals: Arrivals, frame: int, clock: Clock) -> None:
    """Await `frame`'s arrival without blocking the loop (at once offline)."""
    delay = arrivals.time_of(frame) - clock()
    if arrivals.period > 0 and delay > 0:
        await asyncio.sleep(delay)


class Asyncio(EventLoopOwner, SessionStrategy):
    """The write-up's asyncio: a coroutine per model gathered on one event loop.

    Kept faithful, flaw included: `session.run` blocks and has no await point, so the
    coroutines run one after another on the loop's single thread, and the result is the
    serial strategy with an event loop around it. (Offline there is no await at all; when
    frames arrive at a rate, each coroutine awaits its next frame's arrival.)
    """

    name = "asyncio"

    def open(self) -> None:
        super().open()
        self.start_loop()

    def close(self) -> None:
        self.stop_loop()
        super().close()

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        outputs = empty_outputs(len(self.sessions), self.workload.frame_count)

        async def run_model(model: int) -> None:
            for frame in range(self.workload.frame_count):
                arrivals.check_deadline(self.clock)
                await until_arrival(arrivals, frame, self.clock)
                try:
                    outputs[model][frame] = self.run_one(log, model, frame, "event-loop")
                except Exception as error:
                    raise model_failed(self.name, self.workload.names[model], frame, error) from error

        run_models(self.loop, [run_model(model) for model in range(len(self.sessions))])
        return outputs, log.calls


async def gather_models(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run one task per model. On the first failure the other models stop: their tasks are
    cancelled and awaited, so no task outlives the run, and the failure is raised."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run_models(loop: asyncio.AbstractEventLoop, coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run one task per model on `loop` until all are done; on any failure or interrupt,
    finish every task still pending before the error propagates."""
    try:
        loop.run_until_complete(gather_models(coroutines))
    except BaseException as error:
        finish_tasks(loop, error)
        raise


def finish_tasks(loop: asyncio.AbstractEventLoop, interrupt: BaseException | None = None) -> None:
    """Cancel every task still pending on `loop` and run it until they are all done.

    KeyboardInterrupt (Ctrl-C inside `session.run`, SIGTERM in `pytest bench`) or SystemExit
    raised in a task stops the loop at once and leaves the other tasks pending; a task that
    awaited the interrupted one raises `interrupt` again when it resumes, which is expected
    here and not raised a second time. Every exception is retrieved, so asyncio reports no
    task as destroyed pending or as never retrieved.
    """
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    while not all(task.done() for task in tasks):
        try:
            loop.run_until_complete(asyncio.gather(*(task for task in tasks if not task.done()), return_exceptions=True))
        except BaseException as error:
            if error is not interrupt:
                raise
    for task in tasks:
        if not task.cancelled():
            task.exception()
