"""Frames stacked into one batch: whether a model accepts it, and its outputs split back per frame.

Shared by batched (a fixed k frames) and dynamic_batch (whatever frames have arrived)."""

from __future__ import annotations

import numpy as np

from strategies.base import StrategyError, StrategyUnavailable


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
