"""How frames reach the strategies: all at once (offline) or at a camera's rate (streaming), and with
several cameras, when each frame of a run arrives and which workload frame it carries.

Camera c of N delivers its frame j at j/fps + c/(N fps) when the cameras are spread over a period
(`spread`), or at j/fps when all N arrive at once (`aligned`, the worst case). A run sees the frames in
arrival order, run frame k = j N + c, carrying workload frame k mod F (round-robin, reused cyclically:
a probe may be longer than the workload without copying a frame).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.measure.limits import checked_float
from strategies import Schedule

OFFLINE, STREAMING = "offline", "streaming"
SPREAD, ALIGNED = "spread", "aligned"  # how several cameras' frames fall in a period (Schedule.phase)
PHASES = (SPREAD, ALIGNED)
SCENARIO_CHOICES = ("both", OFFLINE, STREAMING)
# One frame every 1000 s. Far slower rates make waits for a frame longer than the OS's
# timers accept (an OverflowError mid-run), and no camera is that slow.
MIN_FPS = 0.001


def parse_fps(text: str) -> float:
    """--fps F: 0 (no streaming) or a frame rate of at least MIN_FPS."""
    return checked_float(text, lambda value: value == 0 or MIN_FPS <= value < float("inf"), "a number",  # refuses nan
                         f"must be 0 (offline only) or a finite frame rate of at least {MIN_FPS:g} "
                         f"(one frame every {1 / MIN_FPS:g} s)")


@dataclass(frozen=True)
class Scenario:
    """Offline: every frame is there at the start; throughput is the metric. Streaming: frames arrive at
    `fps`; a frame's latency runs from its arrival until every model has finished it."""

    name: str
    fps: float | None = None
    streams: int = 1  # cameras, each at `fps` (--streams)
    phase: str = SPREAD  # how their frames fall in a period (--stream-phase)
    deadline_override_s: float | None = None  # --deadline-ms; None: one camera period
    videos: int = 1  # --video files: camera c shows video c mod videos

    def __post_init__(self) -> None:
        if self.name not in (OFFLINE, STREAMING):
            raise ValueError(f"scenario must be {OFFLINE!r} or {STREAMING!r}, got {self.name!r}.")
        if self.name == STREAMING and (self.fps is None or self.fps <= 0):
            raise ValueError(f"a streaming scenario needs a frame rate above 0, got fps={self.fps!r}.")
        if self.name == OFFLINE and self.fps is not None:
            raise ValueError(f"an offline scenario has no frame rate, got fps={self.fps!r}.")
        if self.streams < 1 or self.phase not in PHASES:
            raise ValueError(f"a scenario needs at least one stream and a phase of {', '.join(PHASES)}, got "
                             f"streams={self.streams!r}, phase={self.phase!r}.")

    @property
    def period(self) -> float:
        """Seconds between frame arrivals (0 offline), as `Strategy.run(period=...)` takes it."""
        return 1.0 / self.fps if self.fps else 0.0

    @property
    def deadline_s(self) -> float | None:
        """The latency a frame may take before it counts as missed (default: one frame period)."""
        if self.name != STREAMING:
            return None
        return self.deadline_override_s if self.deadline_override_s is not None else self.period

    @property
    def id(self) -> str:
        if self.name == OFFLINE:
            return OFFLINE
        cameras = "" if self.streams == 1 else f"x{self.streams}" + ("aligned" if self.phase != SPREAD else "")
        return f"stream{self.fps:g}fps{cameras}"

    def schedule(self, workload_frames: int) -> Schedule | None:
        """The arrivals of one streaming round, every camera streaming its video's frames once; None offline
        and for one camera of one video, whose frames arrive one per period."""
        if self.name != STREAMING or (self.streams == 1 and self.phase == SPREAD and self.videos == 1):
            return None
        return camera_schedule(self.streams, self.fps, workload_frames // self.videos, workload_frames, self.phase,
                               self.videos)


def selected_scenarios(choice: str, fps: float, streams: int = 1, phase: str = SPREAD,
                       deadline_s: float | None = None, videos: int = 1) -> list[Scenario]:
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
        scenarios.append(Scenario(STREAMING, fps, streams, phase, deadline_s, videos))
    return scenarios


def not_streamed(ort_defaults: bool, options: Mapping[str, Any], swept: bool) -> str | None:
    """Why a benchmark case does not stream (None: it does). k frames per call make a frame wait k - 1
    periods, past a one-period deadline by construction; onnxruntime's default thread settings, run offline
    for the write-up, would only repeat each strategy's stream (they stream when a --threads sweep asks)."""
    if options.get("k", 1) > 1:
        return f"k={options['k']} frames per call: each frame waits for {options['k'] - 1} later ones, past the deadline"
    if ort_defaults and not swept:
        return "onnxruntime's defaults stream only when asked (--threads ort)"
    return None


def minimum_duration_s(frames: int, scenario: Scenario, rounds: int) -> float:
    """The least time one benchmark of `scenario` takes: a stream's last frame arrives at (frames - 1) / fps
    in every round; offline has no floor."""
    return rounds * (frames - 1) * scenario.period


def camera_schedule(cameras: int, fps: float, frames_per_camera: int, workload_frames: int,
                    phase: str = SPREAD, videos: int = 1) -> Schedule:
    """`cameras` cameras at `fps`, `frames_per_camera` frames each. One video: the cameras take the
    workload's frames round-robin. Several: the workload is `videos` equal runs of frames, and camera c
    shows video c mod `videos` from its start (replayed when the camera streams longer)."""
    if isinstance(cameras, bool) or not isinstance(cameras, int) or cameras < 1:
        raise ValueError(f"cameras must be a whole number of at least 1, got {cameras!r}.")
    if not fps > 0:
        raise ValueError(f"a camera schedule needs a frame rate above 0, got fps={fps!r}.")
    if frames_per_camera < 1 or workload_frames < 1:
        raise ValueError(f"a camera schedule needs at least one frame per camera and one workload frame, got "
                         f"{frames_per_camera} and {workload_frames}.")
    if videos < 1 or workload_frames % videos:
        raise ValueError(f"{workload_frames} workload frames cannot be {videos} videos of equal length.")
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}.")
    index = np.arange(cameras * frames_per_camera, dtype=np.int64)
    frame, camera = np.divmod(index, cameras)  # run frame k = j N + c
    times = frame / fps
    if phase == SPREAD:
        times = times + camera / (cameras * fps)
    per_video = workload_frames // videos
    sources = index % workload_frames if videos == 1 else (camera % videos) * per_video + frame % per_video
    return Schedule(times=times.astype(np.float64), sources=sources, cameras=camera,
                    period=1.0 / fps, phase=phase)


def stream_reference(reference: list[list[object]] | tuple, schedule: Schedule | None) -> list[list[object]]:
    """serial's outputs per model per run frame (the same arrays, no copies)."""
    if schedule is None:
        return [list(frames) for frames in reference]
    sources = schedule.sources.tolist()
    return [[frames[source] for source in sources] for frames in reference]
