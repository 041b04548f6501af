"""Worker processes with a pipe each: start, command, collect, and always clean up.

A worker that dies (killed, segfault, out of memory) is noticed through its process
sentinel while the parent waits for its answer, so a run fails within moments, naming the
worker's model and its exit code or signal, instead of hanging on a pipe that never answers.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .base import StrategyError

READY, DONE, FAILED = "ready", "done", "failed"
JOIN_TIMEOUT_S = 5.0


def context() -> Any:
    # spawn, not fork: forking a process that already runs onnxruntime's thread pools (or
    # holds a CUDA context) copies locks in unknown states.
    return multiprocessing.get_context("spawn")


def detach_from_terminal_signals() -> None:
    """Called first in a worker: Ctrl-C goes to the parent, which stops the workers itself,
    and on Linux the worker is killed if the parent dies without cleaning up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by signal {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


class WorkerPool:
    """One process per lane, each talking to the parent over its own pipe."""

    def __init__(self, strategy: str, lanes: Sequence[str]):
        self.strategy = strategy
        self.lanes = list(lanes)
        self.processes: list[Any] = []
        self.pipes: list[Connection] = []

    def start(self, target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]]) -> list[Any]:
        """Start one worker per lane as `target(conn, *args_for(index))`; return their ready answers."""
        ctx = context()
        for index, lane in enumerate(self.lanes):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=target, args=(child, *args_for(index)), name=f"fanbench-{lane}", daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)
        return self.collect(READY)

    def send_all(self, message: Any) -> None:
        for pipe in self.pipes:
            pipe.send(message)

    def collect(self, expected: str, timeout: float | None = None) -> list[Any]:
        """One `expected` answer from every worker, in lane order.

        Fails at once when a worker reports an error or dies, and after `timeout` seconds.
        """
        answers: dict[int, Any] = {}
        waiting = {pipe: index for index, pipe in enumerate(self.pipes)}
        sentinels = {process.sentinel: index for index, process in enumerate(self.processes)}
        while waiting:
            ready = wait([*waiting, *sentinels], timeout)
            if not ready:
                raise StrategyError(f"{self.strategy}: workers {sorted(self.lanes[i] for i in waiting.values())} "
                                    f"did not answer within {timeout} s.")
            for handle in ready:
                if handle in waiting:
                    index = waiting[handle]
                    try:
                        kind, payload = handle.recv()
                    except EOFError:
                        continue  # the sentinel reports the death with its exit code
                    if kind == FAILED:
                        raise StrategyError(f"{self.strategy}: worker {self.lanes[index]!r} failed: {payload}")
                    answers[index] = payload
                    del waiting[handle]
                elif sentinels[handle] in waiting.values():
                    index = sentinels[handle]
                    process = self.processes[index]
                    process.join(JOIN_TIMEOUT_S)
                    raise StrategyError(f"{self.strategy}: worker {self.lanes[index]!r} died "
                                        f"({exit_reason(process.exitcode)}).")
        return [answers[index] for index in range(len(self.pipes))]

    def close(self) -> None:
        """Ask every worker to stop, then terminate and kill what is left. Idempotent."""
        for pipe in self.pipes:
            try:
                pipe.send(("stop", None))
            except (OSError, ValueError):
                pass
        for process in self.processes:
            process.join(JOIN_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
                process.join(JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
            process.close()
        for pipe in self.pipes:
            pipe.close()
        self.processes, self.pipes = [], []
