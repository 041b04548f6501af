"""Shared base for strategies that hold one session per model in this process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from strategies.base import CallLog, Strategy
from strategies.runtime.sessions import io_names, make_session, provider_used


class ModelThreads:
    """Mixin: one thread per model in a pool built in `open` (before the clock) and shut down
    in `close`, waiting for calls already running (a session.run cannot be cancelled)."""

    name: str
    pool: ThreadPoolExecutor | None = None

    def start_pool(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fanbench-{self.name}")

    def stop_pool(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class SessionStrategy(Strategy):
    """Builds one onnxruntime session per model in `open`, drops them in `close`."""

    def open(self) -> None:
        self.sessions: list[Any] = []
        self.input_names: list[str] = []
        for model in self.workload.models:
            session = make_session(model.path, self.settings, self.workload.provider, self.workload.provider_options)
            self.sessions.append(session)
            self.input_names.append(io_names(session)[0])
        self.providers_used = [provider_used(session) for session in self.sessions]

    def close(self) -> None:
        self.sessions = []

    def feeds(self, model: int, frame: int) -> dict[str, np.ndarray]:
        return {self.input_names[model]: self.workload.models[model].frames[frame]}

    def run_one(self, log: CallLog, model: int, frame: int, lane: str) -> tuple[np.ndarray, ...]:
        """One `session.run` of `model` on `frame`, recorded in `log`."""
        return tuple(log.run(self.sessions[model], self.feeds(model, frame), model, frame, lane))
