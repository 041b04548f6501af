"""SIGTERM ends a benchmark session the way Ctrl-C does: cleanly.

Python's default for SIGTERM is to die on the spot, skipping every `finally`, fixture
teardown and `close()`: worker processes would be orphaned and shared memory left in
/dev/shm. CI runners send SIGTERM on cancel and time-out, so the session turns it into a
KeyboardInterrupt raised in the main thread; strategies stop their lanes, kill their
workers and unlink their memory on the way out, and pytest exits with status 2
(interrupted). A second SIGTERM during that clean-up is handled by the default again.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The session received SIGTERM."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # Restore the default first: a second SIGTERM while cleaning up ends the process.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated(f"received {signal.Signals(signum).name}; stopping the run and cleaning up.")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def keep_complete(benchmarks: list, complete: set[str]) -> list[str]:
    """Remove from pytest-benchmark's `benchmarks` list every benchmark whose test did not complete.

    pytest-benchmark adds a benchmark to the list when its timing starts and marks it failed
    only on an ordinary exception: a benchmark stopped by Ctrl-C or SIGTERM in its warm-up
    (no rounds: saving it crashes on empty statistics) or in its timed rounds (some rounds,
    none of fanbench's extra_info) would be saved as if complete, and so would one whose
    outputs differ from serial's. `complete` holds the node ids whose test passed, teardown
    included. Returns the names of the benchmarks removed.
    """
    removed = [bench.name for bench in benchmarks if bench.fullname not in complete]
    benchmarks[:] = [bench for bench in benchmarks if bench.fullname in complete]
    return removed
