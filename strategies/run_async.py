"""`run_async`: onnxruntime's own asynchronous API, `InferenceSession.run_async`, with callbacks."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from strategies.base import Arrivals, StrategyError, StrategyUnavailable
from strategies.lanes import failure_of, model_failed
from strategies.records import CallLog, CallRecord, Outputs, empty_outputs
from strategies.runtime.sessions import SessionStrategy, onnxruntime
from strategies.settings import ThreadSettings, split_cores

NO_POOL_THREAD = "at least one thread for RunAsync"  # onnxruntime's error when intra_op_num_threads is 1


class RunAsync(SessionStrategy):
    """Every call handed to `run_async`, which runs it on the session's intra-op pool and calls back. A pool of
    n threads has n - 1 workers, so n = 1 is not applicable (hence cores / models + 1 by default). One
    call in flight per session keeps a model's frames in order."""

    name = "run_async"

    @classmethod
    def default_settings(cls, model_count: int, cores: int | None = None) -> ThreadSettings:
        shared = split_cores(model_count, cores)
        return replace(shared, intra_op=shared.intra_op + 1)

    def open(self) -> None:
        if not hasattr(onnxruntime().InferenceSession, "run_async"):
            raise StrategyUnavailable(f"run_async: onnxruntime {onnxruntime().__version__} has no InferenceSession.run_async "
                                "(added in 1.16); upgrade onnxruntime.")
        if self.settings.intra_op == 1:
            raise StrategyUnavailable(self._no_pool_thread())
        super().open()
        # A first call per model, outside the clock: it warms the session up and finds a pool
        # without workers where the intra-op default resolves to 1 thread (a one-core host).
        for model in range(len(self.sessions)):
            done = threading.Event()
            try:
                # A failure inside the call is left to `run`, which names the model and frame.
                self.sessions[model].run_async(None, self.feeds(model, 0), lambda *_, done=done: done.set(), None)
            except Exception as error:
                if NO_POOL_THREAD in str(error):
                    raise StrategyUnavailable(self._no_pool_thread()) from error
                raise
            done.wait()

    def _no_pool_thread(self) -> str:
        return (f"run_async: onnxruntime runs the call on an intra-op pool worker, and intra_op_num_threads="
                f"{self.settings.intra_op or 'default (1 on this host)'} leaves the pool without one. "
                "Use intra=2 or more (e.g. --threads intra=2,inter=1,spin=0).")

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        models = len(self.sessions)
        outputs = empty_outputs(models, self.frame_count(arrivals))
        idle = [threading.Semaphore(1) for _ in range(models)]  # one call in flight per session
        errors: list[tuple[int, int, str]] = []

        def submit(model: int, frame: int) -> None:
            start = self.clock()

            def done(results: list[np.ndarray], _: object, error: str) -> None:
                # Runs on an onnxruntime pool thread: record, then free the session for its next frame.
                try:
                    if error:
                        errors.append((model, frame, error))
                    else:
                        outputs[model][frame] = tuple(results)
                        log.calls.append(CallRecord(model, frame, 1, start, self.clock(), f"ort-pool-{model}"))
                finally:
                    idle[model].release()

            try:
                self.sessions[model].run_async(None, self.feeds(model, frame), done, None)
            except Exception:
                idle[model].release()  # no callback will come
                raise

        try:
            for frame in range(self.frame_count(arrivals)):
                arrivals.wait_for(frame, self.clock)
                for model in range(models):
                    idle[model].acquire()
                    if errors:
                        idle[model].release()
                        raise self._failure(*errors[0])
                    with failure_of(self.name, self.workload.names[model], frame):
                        submit(model, frame)
        finally:
            # Wait for every call still in flight (it writes into this run's outputs), in every outcome.
            for semaphore in idle:
                semaphore.acquire()
                semaphore.release()
        if errors:
            raise self._failure(*errors[0])
        return outputs, log.calls

    def _failure(self, model: int, frame: int, error: str) -> StrategyError:
        return model_failed(self.name, self.workload.names[model], frame, RuntimeError(error))
