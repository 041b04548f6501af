"""The time limit of every timed run: a guard against a hung strategy, not a performance bound."""

from __future__ import annotations

import argparse

BASE_S = 60.0  # start-up slack: first calls, page faults, a busy CI machine
PER_MODEL_FRAME_S = 2.0  # one `session.run` of one model on one frame, with a wide margin


def default_time_limit(frames: int, models: int) -> float:
    """60 s plus 2 s per model per frame (40 frames x 4 models: 380 s per run).

    Generous on purpose: even the large models on two busy cores stay far below it, so only a
    run that hangs or crawls reaches it.
    """
    return BASE_S + PER_MODEL_FRAME_S * frames * models


def parse_time_limit(text: str) -> float:
    """--time-limit SECONDS: a positive number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds as a positive number, got {text!r}.") from None
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}.")
    return value


def time_limit(option: float | None, frames: int, models: int) -> float:
    """The limit for one run: --time-limit when given, else the default for this workload."""
    return option if option is not None else default_time_limit(frames, models)
