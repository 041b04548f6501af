"""The per-frame loop of one lane (a thread or task running one model over every frame), how a lane's
failure is worded, and the mixins that own a strategy's threads (ModelThreads) or loop (EventLoopOwner)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from typing import Any

from strategies.base import Arrivals, Clock, RunStopped, Strategy, StrategyError
from strategies.records import Outputs


def model_failed(strategy: str, model: str, frame: int, error: BaseException | str,
                 last: int | None = None) -> StrategyError:
    """The error a run raises when `model` fails on `frame` (on frames `frame`..`last` for a call over several)."""
    where = f"frame {frame}" if last is None or last == frame else f"frames {frame}-{last}"
    return StrategyError(f"{strategy}: model {model!r} failed on {where}: {error}")


@contextmanager
def failure_of(strategy: str, model: str, frame: int, last: int | None = None) -> Iterator[None]:
    """An exception inside becomes `model_failed(...)`; a StrategyError (a RunTimeout, say) passes unchanged."""
    try:
        yield
    except StrategyError:
        raise
    except Exception as error:
        raise model_failed(strategy, model, frame, error, last) from error


def run_model_frames(arrivals: Arrivals, frame_count: int, step: Callable[[int], Outputs], *,
                     strategy: str, model: str, clock: Clock) -> list[Outputs]:
    """THE per-frame loop of one lane: wait for each frame (a stopped or late run ends there), run `step`."""
    outputs = []
    for frame in range(frame_count):
        arrivals.wait_for(frame, clock)
        with failure_of(strategy, model, frame):
            outputs.append(step(frame))
    return outputs


async def run_model_frames_async(arrivals: Arrivals, frame_count: int, step: Callable[[int], Awaitable[Outputs]], *,
                                 strategy: str, model: str, clock: Clock) -> list[Outputs]:
    """`run_model_frames` on an event loop: the loop stays free while this lane waits for its frame."""
    outputs = []
    for frame in range(frame_count):
        await until_arrival(arrivals, frame, clock)
        arrivals.wait_for(frame, clock)  # arrived by now: checks the deadline and the stop
        with failure_of(strategy, model, frame):
            outputs.append(await step(frame))
    return outputs


def wait_for_lanes(futures: Sequence[Future[Any]], cancel: Callable[[], None]) -> None:
    """Wait for every lane (a future); on the first failure or an interrupt, `cancel()` the others and raise that
    failure once they have ended (never the RunStopped it made the others raise)."""
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(future.exception() is not None for future in done):
            cancel()
            wait(futures)
    except BaseException:
        cancel()
        raise
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise next((error for error in errors if not isinstance(error, RunStopped)), errors[0])


def run_models_on_pools(strategy: Strategy, arrivals: Arrivals, step: Callable[[int, int], Outputs],
                        pools: Sequence[Executor], cancel: Callable[[], None] | None = None) -> list[list[Outputs]]:
    """outputs[model][frame], a `run_model_frames` lane per model on `pools[model]` (wait_for_lanes)."""
    futures = [pool.submit(run_model_frames, arrivals, strategy.frame_count(arrivals), partial(step, model),
                           strategy=strategy.name, model=name, clock=strategy.clock)
               for model, (pool, name) in enumerate(zip(pools, strategy.workload.names, strict=True))]
    wait_for_lanes(futures, cancel or arrivals.stop_all)
    return [future.result() for future in futures]


class ModelThreads(Strategy):
    """Mixin: one thread per model in a pool built in `open`, after what the classes behind it build;
    `close` waits for calls already running (a session.run cannot be cancelled)."""

    pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        super().open()
        self.pool = ThreadPoolExecutor(max_workers=len(self.workload.models), thread_name_prefix=f"fanbench-{self.name}")

    def close(self) -> None:
        self.stop()  # a run still in progress ends at its next frame instead of running every frame
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        super().close()

    def run_models_in_threads(self, arrivals: Arrivals, step: Callable[[int, int], Outputs],
                              cancel: Callable[[], None] | None = None) -> list[list[Outputs]]:
        return run_models_on_pools(self, arrivals, step, [self.pool] * len(self.workload.models), cancel)


class EventLoopOwner(Strategy):
    """Mixin: the strategy's own event loop; `close` finishes any task still pending first."""

    loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        super().open()
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        if self.loop is not None:
            finish_tasks(self.loop)
            self.loop.close()
            self.loop = None
        super().close()

    def run_models_as_tasks(self, arrivals: Arrivals, step: Callable[[int, int], Awaitable[Outputs]]) -> list[list[Outputs]]:
        """outputs[model][frame], a `run_model_frames_async` task per model; on any failure or interrupt,
        every task still pending is finished before the error propagates."""
        lanes = [run_model_frames_async(arrivals, self.frame_count(arrivals), partial(step, model), strategy=self.name,
                                        model=name, clock=self.clock) for model, name in enumerate(self.workload.names)]
        try:
            return self.loop.run_until_complete(gather_or_cancel_all(lanes))
        except BaseException as error:
            finish_tasks(self.loop, error)
            raise


async def until_arrival(arrivals: Arrivals, frame: int, clock: Clock) -> None:
    """Await `frame`'s arrival without blocking the loop (at once offline)."""
    delay = arrivals.time_of(frame) - clock()
    if arrivals.streaming and delay > 0:
        await asyncio.sleep(delay)


async def gather_or_cancel_all(coroutines: list[Coroutine[Any, Any, Outputs]]) -> list[Any]:
    """Await one task per model; on the first failure the others are cancelled and awaited, then it is raised."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def finish_tasks(loop: asyncio.AbstractEventLoop, interrupt: BaseException | None = None) -> None:
    """Cancel every task pending on `loop` and run it until all are done. An interrupt in a task stops the loop
    and leaves the others pending; one that awaited it raises `interrupt` again, not raised twice. Every
    exception is retrieved, so asyncio reports no task destroyed pending or never retrieved."""
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
