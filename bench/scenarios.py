"""How frames reach the strategies: all at once (offline) or at a camera's rate (streaming)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

OFFLINE, STREAMING = "offline", "streaming"
SCENARIO_CHOICES = ("both", OFFLINE, STREAMING)
# One frame every 1000 s. Far slower rates make waits for a frame longer than the OS's
# timers accept (an OverflowError mid-run), and no camera is that slow.
MIN_FPS = 0.001


def parse_fps(text: str) -> float:
    """--fps F: 0 (no streaming) or a frame rate of at least MIN_FPS."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}.") from None
    if not (value == 0 or MIN_FPS <= value < float("inf")):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 (offline only) or a finite frame rate of at least {MIN_FPS:g} "
                                         f"(one frame every {1 / MIN_FPS:g} s), got {text!r}.")
    return value


@dataclass(frozen=True)
class Scenario:
    """Offline: every frame is decoded ahead and there at the start; throughput is the metric.
    Streaming: frame i arrives at start + i / fps; each frame's latency runs from its arrival
    until every model has finished it, and a frame misses its deadline when that takes longer
    than one frame period."""

    name: str
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.name not in (OFFLINE, STREAMING):
            raise ValueError(f"scenario must be {OFFLINE!r} or {STREAMING!r}, got {self.name!r}.")
        if self.name == STREAMING and (self.fps is None or self.fps <= 0):
            raise ValueError(f"a streaming scenario needs a frame rate above 0, got fps={self.fps!r}.")
        if self.name == OFFLINE and self.fps is not None:
            raise ValueError(f"an offline scenario has no frame rate, got fps={self.fps!r}.")

    @property
    def period(self) -> float:
        """Seconds between frame arrivals (0 offline), as `Strategy.run(period=...)` takes it."""
        return 1.0 / self.fps if self.fps else 0.0

    @property
    def deadline_s(self) -> float | None:
        """The latency a frame may take before it counts as missed: one frame period."""
        return self.period if self.name == STREAMING else None

    @property
    def id(self) -> str:
        return OFFLINE if self.name == OFFLINE else f"stream{self.fps:g}fps"


def selected_scenarios(choice: str, fps: float) -> list[Scenario]:
    """The scenarios `--scenario` and `--fps` ask for; `--fps 0` turns streaming off."""
    if choice not in SCENARIO_CHOICES:
        raise ValueError(f"--scenario must be one of {', '.join(SCENARIO_CHOICES)}, got {choice!r}.")
    if fps < 0:
        raise ValueError(f"--fps must be 0 (no streaming) or above, got {fps!r}.")
    if choice == STREAMING and fps == 0:
        raise ValueError("--scenario streaming needs a frame rate: give --fps above 0.")
    scenarios = []
    if choice in ("both", OFFLINE):
        scenarios.append(Scenario(OFFLINE))
    if choice in ("both", STREAMING) and fps > 0:
        scenarios.append(Scenario(STREAMING, fps))
    return scenarios
