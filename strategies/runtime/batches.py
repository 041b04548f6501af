"""Frames stacked into one call along the batch axis (batched, dynamic_batch), and the outputs split back."""

from __future__ import annotations

from typing import Any

import numpy as np

from strategies.base import Arrivals, StrategyError, StrategyUnavailable
from strategies.records import CallLog, Outputs


def check_free_batch(strategy: str, sessions: list, names: list[str]) -> None:
    """StrategyUnavailable unless every model's input has a free (dynamic) batch dimension."""
    for index, session in enumerate(sessions):
        batch_dim = session.get_inputs()[0].shape[0] if session.get_inputs()[0].shape else None
        if isinstance(batch_dim, int) and batch_dim > 0:
            raise StrategyUnavailable(
                f"{strategy}: model {names[index]!r} has a fixed batch size of {batch_dim}, "
                "so frames cannot be stacked; export it with a dynamic batch axis.")


def split_batch(result: np.ndarray, frames: int, per_frame: int) -> list[np.ndarray]:
    """One model's batched output back into one array per frame (per_frame rows each)."""
    if result.ndim == 0 or result.shape[0] != frames * per_frame:
        raise StrategyError(
            f"an output of shape {result.shape} does not carry the batch axis (expected first axis "
            f"{frames} x {per_frame} = {frames * per_frame}), so it cannot be split back per frame.")
    return [result[index * per_frame:(index + 1) * per_frame] for index in range(frames)]


def run_stacked(log: CallLog, session: Any, input_name: str, frames: np.ndarray, arrivals: Arrivals, model: int,
                first: int, end: int, lane: str) -> list[Outputs]:
    """Run frames `first`..`end - 1` of `model` as one call; the outputs of each frame."""
    if arrivals.schedule is None:  # consecutive rows: a view, reshaped without a copy
        chunk = np.ascontiguousarray(frames[first:end])
    else:  # run frames carry reused workload frames: gather them
        chunk = frames[arrivals.schedule.sources[first:end]]
    results = log.run(session, {input_name: chunk.reshape(-1, *chunk.shape[2:])}, model, first, lane,
                      frames=end - first)
    split = [split_batch(result, end - first, chunk.shape[1]) for result in results]
    return [tuple(parts[offset] for parts in split) for offset in range(end - first)]
