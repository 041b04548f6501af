"""Running one function per model on a thread pool, stopping every lane at the first error."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait


def run_lanes(pool: ThreadPoolExecutor, count: int, lane: Callable[[int], None], cancel: Callable[[], None]) -> None:
    """Run `lane(0) .. lane(count - 1)` concurrently and wait for all of them.

    When one raises, `cancel()` tells the others to stop at their next frame; once all have
    returned, the first error raised (in lane order) is re-raised, so nothing is swallowed
    and no lane is still running when this returns.
    """
    futures = [pool.submit(lane, index) for index in range(count)]
    wait(futures, return_when=FIRST_EXCEPTION)
    if any(future.done() and future.exception() is not None for future in futures):
        cancel()
    wait(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
