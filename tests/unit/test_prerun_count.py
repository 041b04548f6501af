"""The count printed before a run counts what will run: a strategy known to skip (no CUDA, no Ray) is
said apart, and the streams' pacing time counts only the streams that run (issue 21: 'x 12' while 10 ran)."""

from __future__ import annotations

import importlib.util

import pytest

from strategies.cuda_graph import CudaGraph
from strategies.ray import RayActors
from strategies.serial import Serial
from tests.helpers.run_bench import bench_subprocess


def test_a_strategy_says_before_the_run_when_it_cannot_run() -> None:
    assert Serial.unavailable("cpu") is None
    assert CudaGraph.unavailable("cpu") == "needs the CUDA provider, which this run will not have"
    assert CudaGraph.unavailable("cuda") is None  # --require-gpu / --provider cuda: open() decides


def test_ray_not_installed_is_known_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert RayActors.unavailable("cpu") == "Ray is not installed (pip install -e '.[ray]')"


def test_the_pre_run_count_leaves_out_what_will_skip() -> None:
    result = bench_subprocess("--collect-only", "-q", "--no-history", "--provider", "cpu", "--strategy", "serial",
                              "--strategy", "cuda_graph", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert ("fanbench: 3 benchmarks (2 offline, 1 streaming) and 2 that will skip; pacing the streams alone takes "
            "about 4 s (32 frames at 25 fps x 3 rounds + 8 x 1 warm-up, x 1), the compute comes on top") in lines
    assert "fanbench: will skip cuda_graph: needs the CUDA provider, which this run will not have" in lines
