"""How `pytest bench` ends on SIGTERM or Ctrl-C: cleanly, in every phase, with nothing half-written.

Python's default SIGTERM kills on the spot, skipping every `finally`, teardown and `close()` (orphaned
workers, shared memory left in /dev/shm, a half-written video in $TMPDIR); CI runners, `timeout` and systemd
send it on cancel and time-out, often to the whole process group. So the session turns it into a
KeyboardInterrupt in the main thread, and pytest exits with status 2. The children (workers, the Manager, the
sampler) ignore both signals: the parent stops them (strategies/runtime/workers.py). A second SIGTERM during
the clean-up ends the process, except in the short steps under `signals_held`, which finish first."""

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
    """While inside, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread; `pytest bench`
    is inside from its configuration to its end (bench/conftest.py)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_held(replay: bool = False) -> Iterator[list[signal.Signals]]:
    """While inside, SIGINT and SIGTERM are only noted, in order, in the list yielded: a step that must
    not be cut in half (the history saved, the report swapped in) finishes first. With `replay`, each
    noted signal is sent again on leaving, to whatever handles it then."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    noted: list[signal.Signals] = []

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signal.Signals(signum))

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
        for signum in dict.fromkeys(noted) if replay else ():
            signal.raise_signal(signum)


def interruption(error: BaseException | signal.Signals) -> str:
    """What stopped the run, in words: "received SIGTERM", "interrupted (Ctrl-C)"."""
    if isinstance(error, signal.Signals):
        return "interrupted (Ctrl-C)" if error == signal.SIGINT else f"received {error.name}"
    return "received SIGTERM" if isinstance(error, Terminated) else "interrupted (Ctrl-C)"
