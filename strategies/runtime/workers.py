"""Worker processes with a pipe each: start, command, collect, and always clean up. A worker that dies
is noticed through its process sentinel while the parent waits, so a run fails within moments, naming
its model and exit code or signal, instead of hanging on a pipe that never answers."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import Any

from strategies.base import Arrivals, Clock, RunTimeout, StrategyError
from strategies.records import CallLog, CallRecord, Outputs
from strategies.runtime.sessions import SessionFactory, io_names, provider_used
from strategies.settings import ThreadSettings

READY, DONE, FAILED, TIMED_OUT = "ready", "done", "failed", "timed out"
JOIN_TIMEOUT_S = 5.0
# How long a new worker may take to be ready (a fresh interpreter, onnxruntime, the session, on CUDA the
# device's context): far more than that anywhere sane; one stuck there fails instead of holding the run.
START_TIMEOUT_S = 300.0
GRACE_S = 1.0


def answer_timeout(arrivals: Arrivals, clock: Clock) -> float | None:
    """Until the run's deadline plus a grace second: the workers check the deadline at every frame; the
    grace covers one that hangs inside `session.run` or is stopped (SIGSTOP)."""
    return None if arrivals.deadline is None else max(0.0, arrivals.deadline - clock()) + GRACE_S


def context() -> Any:
    # spawn, not fork: forking a process that already runs onnxruntime's thread pools (or
    # holds a CUDA context) copies locks in unknown states.
    return multiprocessing.get_context("spawn")


# What a terminal's Ctrl-C, `timeout`, a CI cancel or systemd send to the whole process group.
TERMINAL_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextmanager
def terminal_signals_blocked() -> Iterator[None]:
    """Start child processes inside this: they begin with SIGINT and SIGTERM blocked until they ignore them
    (`detach_from_terminal_signals`); a signal meant for this process waits for the end of the block."""
    _kill_leftover_children_at_exit()
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINAL_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@functools.cache  # registered once, at the first child started
def _kill_leftover_children_at_exit() -> None:
    """At exit multiprocessing SIGTERMs its children, which ignore it, then joins them: one an interrupt left
    unrecorded would hold the exit forever, so kill them first (atexit runs this before multiprocessing's)."""
    atexit.register(lambda: [child.kill() for child in multiprocessing.active_children()])


def detach_from_terminal_signals() -> None:
    """Called first in every child: a group signal is the parent's to handle (dead children would hide the
    interruption); the parent stops them itself, and on Linux a child dies with it (PR_SET_PDEATHSIG)."""
    for signum in TERMINAL_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # started blocked (terminal_signals_blocked); now ignored
        signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINAL_SIGNALS)
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def serve(conn: Connection, model: int, name: str, path: str, settings: ThreadSettings, sessions: SessionFactory,
          frames: Any, lane: str) -> None:
    """Worker main loop: build the session, then answer every 'run' with outputs and call records."""
    detach_from_terminal_signals()
    try:
        session = sessions.open(path, settings)
        input_name = io_names(session)[0]
        count = len(frames)
    except Exception as error:
        conn.send((FAILED, f"model {name!r}: could not start: {error}"))
        return
    conn.send((READY, provider_used(session)))
    while True:
        command, payload = conn.recv()
        if command == "stop":
            return
        arrivals = Arrivals(**payload)
        log = CallLog(time.perf_counter)
        outputs: list[Outputs] = []
        try:
            for frame in range(arrivals.frame_count(count)):
                arrivals.wait_for(frame)
                outputs.append(tuple(log.run(session, {input_name: frames[arrivals.source(frame)]}, model, frame, lane)))
        except RunTimeout as error:
            conn.send((TIMED_OUT, f"model {name!r} before frame {len(outputs)}: {error}"))
        except Exception as error:
            conn.send((FAILED, f"model {name!r} failed on frame {len(outputs)}: {error}"))
        else:
            conn.send((DONE, (outputs, log.calls)))


class WorkerPool:
    """One process per lane, each with its own pipe; `models` names what each runs, for messages. While
    commands are out the pool is busy: closing it then kills the workers at once."""

    def __init__(self, strategy: str, lanes: Sequence[str], models: Sequence[str]):
        self.strategy, self.lanes, self.models = strategy, list(lanes), list(models)
        if len(self.models) != len(self.lanes):
            raise ValueError(f"WorkerPool needs one model name per lane, got {len(self.models)} for {len(self.lanes)}.")
        self.processes: list[Any] = []
        self.pipes: list[Connection] = []
        self.busy = False

    @property
    def pids(self) -> list[int]:  # in lane order (tests kill them; monitors sample them)
        return [process.pid for process in self.processes]

    def describe(self, index: int) -> str:
        """"worker 'process-1' (model 'm1')" for messages."""
        if self.models[index] == self.lanes[index]:
            return f"worker {self.lanes[index]!r}"
        return f"worker {self.lanes[index]!r} (model {self.models[index]!r})"

    def start(self, target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]],
              timeout: float = START_TIMEOUT_S) -> list[Any]:
        """Start one worker per lane as `target(conn, *args_for(index))`; their ready answers, within `timeout`."""
        ctx = context()
        self.busy = True
        for index, lane in enumerate(self.lanes):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=target, args=(child, *args_for(index)), name=f"fanbench-{lane}", daemon=True)
            with terminal_signals_blocked():
                process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)
        return self.collect(READY, timeout, doing="start (a new Python, onnxruntime, the model's session)")

    def send_all(self, message: Any) -> None:
        self.busy = True
        for index, pipe in enumerate(self.pipes):
            try:
                pipe.send(message)
            except OSError:  # the worker died since its last answer: say so with its exit code
                raise self._died(index) from None

    def run(self, arrivals: Arrivals, clock: Clock,
            stop: Callable[[], None] | None = None) -> tuple[list[list[Outputs]], list[CallRecord]]:
        self.send_all(("run", {"start": arrivals.start, "period": arrivals.period, "deadline": arrivals.deadline,
                               "schedule": arrivals.schedule, "frames": arrivals.frames}))
        answers = self.collect(DONE, answer_timeout(arrivals, clock), stop)
        return [answer[0] for answer in answers], [call for answer in answers for call in answer[1]]

    def collect(self, expected: str, timeout: float | None = None,
                stop: Callable[[], None] | None = None, doing: str = "answer") -> list[Any]:
        """One `expected` answer per worker, in lane order; StrategyError when one dies or fails, RunTimeout past
        `timeout`. With `stop`, a failure calls `stop()` and is raised once the others answered (pool usable)."""
        answers: dict[int, Any] = {}
        failure: StrategyError | None = None
        waiting = {pipe: index for index, pipe in enumerate(self.pipes)}
        sentinels = {process.sentinel: index for index, process in enumerate(self.processes)}
        deadline = None if timeout is None else time.monotonic() + timeout
        while waiting:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([*waiting, *sentinels], left)
            if not ready:
                late = ", ".join(self.describe(index) for index in sorted(waiting.values()))
                raise RunTimeout(f"{self.strategy}: {late} did not {doing} within {timeout:.1f} s; "
                                 "the workers are stopped.")
            for handle in ready:
                if handle in waiting:
                    index = waiting[handle]
                    try:
                        kind, payload = handle.recv()
                    except (EOFError, OSError):  # the worker is gone (a reset when it died with
                        raise self._died(index) from None  # our message unread): report its exit code
                    del waiting[handle]
                    if kind == TIMED_OUT:
                        raise RunTimeout(f"{self.strategy}: {self.describe(index)} stopped: {payload}")
                    if kind == FAILED:
                        error = StrategyError(f"{self.strategy}: {self.describe(index)} failed: {payload}")
                        if stop is None:
                            raise error
                        if failure is None:  # later ones are the others stopping because of it
                            failure = error
                            stop()
                        continue
                    answers[index] = payload
                elif sentinels[handle] in waiting.values():
                    raise self._died(sentinels[handle])
        self.busy = False
        if failure is not None:
            raise failure
        return [answers[index] for index in range(len(self.pipes))]

    def _died(self, index: int) -> StrategyError:
        process = self.processes[index]
        process.join(JOIN_TIMEOUT_S)  # the exit code is there once the process is reaped
        return StrategyError(f"{self.strategy}: {self.describe(index)} died ({exit_reason(process.exitcode)}).")

    def close(self) -> None:
        """Stop every worker (asked when idle, killed after JOIN_TIMEOUT_S or when busy: a hung worker ignores
        requests) and release the pipes; idempotent."""
        if not self.busy:
            for pipe in self.pipes:
                with contextlib.suppress(OSError, ValueError):
                    pipe.send(("stop", None))
            alive = [process.sentinel for process in self.processes if process.exitcode is None]
            deadline = time.monotonic() + JOIN_TIMEOUT_S
            while alive and time.monotonic() < deadline:
                for sentinel in wait(alive, max(0.0, deadline - time.monotonic())):
                    alive.remove(sentinel)
        for process in self.processes:
            if process.exitcode is None:
                process.kill()
            process.join()
            process.close()
        for pipe in self.pipes:
            pipe.close()
        self.processes, self.pipes, self.busy = [], [], False
