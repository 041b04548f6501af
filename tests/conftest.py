"""Small, fast workloads for the tests: tiny models, a few small frames."""

from __future__ import annotations

import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import scipy.stats  # noqa: F401  (loaded once here: an in-process `pytest bench` run would load it again, which numpy refuses)

from fixtures.video import decode_video, write_synthetic_video
from strategies import Workload
from tests.helpers import workloads as helpers


def pytest_configure(config: pytest.Config) -> None:
    """The interrupt tests send real SIGINTs. A shell without job control starts background
    jobs (`cmd &`) with SIGINT ignored, which Python then leaves ignored: restore Ctrl-C's
    KeyboardInterrupt, here and (exec resets a handled signal) in the pytest runs the tests start."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one folder of test models: files are named by spec and size, so every test can share it."""
    return tmp_path_factory.mktemp("test-models")


@pytest.fixture(scope="session")
def video_images(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Twelve decoded frames of the synthetic video, small enough for quick tests."""
    path = write_synthetic_video(tmp_path_factory.mktemp("test-video") / "clip.mp4", frames=12, height=48, width=64)
    return decode_video(path, 12)


@pytest.fixture(scope="session")
def make_workload(model_dir: Path, video_images: list[np.ndarray]) -> Callable[..., Workload]:
    """Build a workload of `models` tiny CNNs on `frames` video frames of `size` x `size` (32), batch `batch`."""
    return partial(helpers.tiny_workload, model_dir, images=video_images, size=32)


@pytest.fixture(scope="session")
def tiny_workload(make_workload) -> Workload:
    return make_workload()
