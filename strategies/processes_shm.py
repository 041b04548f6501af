"""`processes_shm`: persistent worker processes reading frames from shared memory."""

from __future__ import annotations

import contextlib
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from strategies.base import Arrivals, Strategy, StrategyError, StrategyUnavailable, release
from strategies.records import CallRecord, Outputs
from strategies.runtime.sessions import SessionFactory
from strategies.runtime.shared_frames import BlockSpec, SharedFrames, SharedMemoryFull, attach, check_room
from strategies.runtime.workers import FAILED, WorkerPool, context, detach_from_terminal_signals, serve
from strategies.settings import ThreadSettings


class StoppedByAnotherModel(RuntimeError):
    """Raised in a worker at its next frame once another model of the run has failed."""


class StoppableFrames:
    """A worker's shared-memory frames, refused once the parent has set `stop` (another model failed)."""

    def __init__(self, view: np.ndarray, stop: Any):
        self.view = view
        self.stop = stop

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, frame: int) -> np.ndarray:
        if self.stop.is_set():
            raise StoppedByAnotherModel("stopped: another model of this run failed")
        return self.view[frame]


def serve_shared(conn: Connection, model: int, name: str, path: str, settings: ThreadSettings,
                 sessions: SessionFactory, spec: BlockSpec, lane: str, stop: Any) -> None:
    """Worker main: attach the frames' block, then answer runs exactly as `serve` does."""
    detach_from_terminal_signals()
    try:
        block, view = attach(spec)
    except Exception as error:
        conn.send((FAILED, f"model {name!r}: could not attach the frames' shared memory {spec.name!r}: {error}"))
        return
    frames = StoppableFrames(view, stop)
    try:
        serve(conn, model, name, path, settings, sessions, frames, lane)
    finally:
        del frames, view  # the mapping can only close once no array points into it
        with contextlib.suppress(BufferError):  # the process is about to exit, which unmaps it anyway
            block.close()


class ProcessesShm(Strategy):
    """A process per model for the strategy's life, mapping the frames read-only from shared memory, answering
    once per run. An interrupted run or a dead worker closes the strategy (docs/strategies.md)."""

    name = "processes_shm"
    models_at_once = True

    def open(self) -> None:
        try:
            self._open()
        except BaseException:
            self.close()  # even when called without `with`: no block or process is left behind
            raise

    def _open(self) -> None:
        arrays = {id(model.frames): model.frames for model in self.workload.models}  # models sharing one array share one block
        try:
            check_room(sum(array.nbytes for array in arrays.values()))
            self.frames = SharedFrames()
            specs = {key: self.frames.share(array) for key, array in arrays.items()}
        except SharedMemoryFull as error:
            raise StrategyUnavailable(f"{self.name}: {error}") from None
        self.stop_event = context().Event()
        models = self.workload.models
        self.pool = WorkerPool(self.name, [f"process-{index}" for index in range(len(models))], self.workload.names)
        self.providers_used = self.pool.start(serve_shared, lambda i: (
            i, models[i].name, str(models[i].path), self.settings, self.workload.sessions,
            specs[id(models[i].frames)], self.pool.lanes[i], self.stop_event))

    def close(self) -> None:
        # Workers still in a run stop at their next frame instead of finishing it.
        release(self, "stop_event", lambda stop: stop.set())
        release(self, "pool", WorkerPool.close)
        release(self, "frames", SharedFrames.close)

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        if getattr(self, "pool", None) is None:
            raise StrategyError(f"{self.name}: the strategy is closed (an earlier run was interrupted or lost a "
                                "worker, which closes it); open a new one.")
        self.stop_event.clear()
        try:
            # The first failure stops the other workers at their next frame (they answer then).
            return self.pool.run(arrivals, self.clock, stop=self.stop_event.set)
        except BaseException as error:
            if not isinstance(error, StrategyError) or self.pool.busy:
                # A dead worker, a timeout or an interrupt leaves answers in flight: nothing
                # reliable can follow, so release processes and shared memory now. (A model
                # that failed leaves every worker answered and usable.)
                self.close()
            raise
