"""Small, fast workloads for the tests: tiny models, a few small frames."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fixtures.models import SIZES, ModelSpec, model_set
from fixtures.video import decode_video, write_synthetic_video
from fixtures.workloads import synthetic_workload
from strategies import Workload

TINY = SIZES["tiny"]


def pytest_configure(config: pytest.Config) -> None:
    """The interrupt tests send real SIGINTs. A shell without job control starts background
    jobs (`cmd &`) with SIGINT ignored, which Python then leaves ignored: restore Ctrl-C's
    KeyboardInterrupt, here and (exec resets a handled signal) in the pytest runs the tests start."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("test-models")


@pytest.fixture(scope="session")
def video_images(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Twelve decoded frames of the synthetic video, small enough for quick tests."""
    path = write_synthetic_video(tmp_path_factory.mktemp("test-video") / "clip.mp4", frames=12, height=48, width=64)
    return decode_video(path, 12)


@pytest.fixture(scope="session")
def make_workload(model_dir: Path, video_images: list[np.ndarray]) -> Callable[..., Workload]:
    """Build a workload of `models` tiny CNNs on `frames` frames of `size` x `size`, batch `batch`."""

    def make(models: int = 3, frames: int = 5, batch: int = 2, size: int = 32, spec: ModelSpec = TINY) -> Workload:
        sized = ModelSpec(width=spec.width, stages=spec.stages, blocks=spec.blocks, classes=spec.classes,
                          height=size, width_px=size, seed=spec.seed)
        images = [video_images[i % len(video_images)] for i in range(frames)]
        return synthetic_workload(model_set(sized, models), images, batch, model_dir)

    return make


@pytest.fixture(scope="session")
def tiny_workload(make_workload) -> Workload:
    return make_workload()
