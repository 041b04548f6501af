"""Several cameras feeding one host: when each frame of a run arrives, and which workload frame it carries.

N cameras each deliver a frame every 1/fps seconds. Camera c's frame j arrives at
j/fps + c/(N fps) when the cameras are spread evenly over a period (unsynchronised cameras,
`spread`), or at j/fps when all N frames of a period arrive at once (`aligned`, the worst case).
A run sees the frames in arrival order: run frame k = j N + c (camera c's frame j), so with
one camera the schedule is today's single stream (frame k at k/fps). The cameras take the
workload's frames round-robin and reuse them cyclically: run frame k carries workload frame
k mod F, so a probe may be longer than the workload without copying a frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPREAD, ALIGNED = "spread", "aligned"
PHASES = (SPREAD, ALIGNED)


@dataclass(frozen=True, eq=False)
class Schedule:
    """Arrival offsets (seconds after the run's start, non-decreasing) of a run's frames, the
    workload frame each carries, and the camera it came from."""

    times: np.ndarray = field(repr=False)  # float64, one per run frame
    sources: np.ndarray = field(repr=False)  # int64: the workload frame run frame k carries
    cameras: np.ndarray = field(repr=False)  # int64: the camera run frame k came from
    period: float  # one camera's seconds between frames
    phase: str = SPREAD

    def __post_init__(self) -> None:
        if not (len(self.times) == len(self.sources) == len(self.cameras)) or len(self.times) == 0:
            raise ValueError("a schedule needs one arrival time, source frame and camera per run frame, at least one.")
        if np.any(np.diff(self.times) < 0):
            raise ValueError("a schedule's arrival times must be in arrival order (non-decreasing).")

    def __len__(self) -> int:
        return len(self.times)

    @property
    def camera_count(self) -> int:
        return int(self.cameras.max()) + 1

    @property
    def span_s(self) -> float:
        """Seconds from the first arrival to the last."""
        return float(self.times[-1] - self.times[0])


def camera_schedule(cameras: int, fps: float, frames_per_camera: int, workload_frames: int,
                    phase: str = SPREAD, videos: int = 1) -> Schedule:
    """`cameras` cameras at `fps`, `frames_per_camera` frames each, over a workload of `workload_frames`.

    One video (the default): the cameras take the workload's frames round-robin. Several: the
    workload is `videos` equal runs of frames, one per video, and camera c shows video c mod `videos`
    from its start (replayed when the camera streams longer)."""
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
    """serial's outputs per model per run frame: the reference of the workload frame each run frame
    carries (references to the same arrays, no copies)."""
    if schedule is None:
        return [list(frames) for frames in reference]
    sources = schedule.sources.tolist()
    return [[frames[source] for source in sources] for frames in reference]
