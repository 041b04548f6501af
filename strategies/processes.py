"""`processes`: one process per model, frames shared through a `multiprocessing.Manager().list`."""

from __future__ import annotations

import shutil
import tempfile
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any

from strategies.base import Arrivals, Strategy, release
from strategies.records import CallRecord, Outputs
from strategies.runtime.workers import (
    JOIN_TIMEOUT_S,
    WorkerPool,
    context,
    detach_from_terminal_signals,
    serve,
    terminal_signals_blocked,
)


def end_manager(manager: SyncManager) -> None:
    """Stop the Manager's process for certain: `shutdown()` falls back on SIGTERM, which it ignores, and under
    load a slow answer left it running, holding the interpreter's exit forever; so wait, then kill."""
    shutdown = getattr(manager, "shutdown", None)  # set by start() once the Manager answered, not a method
    if shutdown is not None:
        shutdown()
    process = getattr(manager, "_process", None)  # multiprocessing keeps the Manager's process private
    if process is not None and process.pid is not None and process.exitcode is None:  # started, still running
        process.join(JOIN_TIMEOUT_S)
        if process.exitcode is None:
            process.kill()
            process.join()


class Processes(Strategy):
    """The write-up's processes, flaw kept: every `frames[i]` in a worker pickles the whole batch
    through the Manager's proxy process (`processes_shm` removes that copy)."""

    name = "processes"
    models_at_once = True

    def frame_sources(self) -> list[Any]:
        """What each worker indexes for its frames. Models sharing one input array share one list."""
        # The manager listens on a socket in a folder of ours: left to itself it makes a `pymp-*`
        # folder that only the manager process removes, so it stayed behind when that was killed.
        self.manager_dir = Path(tempfile.mkdtemp(prefix="fanbench_manager_"))
        # Recorded before it starts: Ctrl-C in the middle of start() still leaves close() a Manager to end.
        self.manager = manager = SyncManager(address=str(self.manager_dir / "socket"), ctx=context())
        with terminal_signals_blocked():  # a group SIGTERM is ours to handle: the manager outlives it until close()
            manager.start(detach_from_terminal_signals)
        arrays = {id(model.frames): model.frames for model in self.workload.models}
        lists = {key: manager.list(list(array)) for key, array in arrays.items()}
        return [lists[id(model.frames)] for model in self.workload.models]

    def open(self) -> None:
        # Held for the strategy's life: the manager frees a list once the parent's proxy goes.
        self.sources = sources = self.frame_sources()
        models = self.workload.models
        self.pool = WorkerPool(self.name, [f"process-{index}" for index in range(len(models))], self.workload.names)
        self.providers_used = self.pool.start(serve, lambda i: (
            i, models[i].name, str(models[i].path), self.settings, self.workload.sessions, sources[i], self.pool.lanes[i]))

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        return self.pool.run(arrivals, self.clock)

    def close(self) -> None:
        release(self, "pool", WorkerPool.close)  # closed mid-run (failure, time-out, Ctrl-C) it kills its workers at once
        self.sources = []
        release(self, "manager", end_manager)
        release(self, "manager_dir", lambda directory: shutil.rmtree(directory, ignore_errors=True))
