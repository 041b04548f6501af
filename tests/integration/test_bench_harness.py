"""`pytest bench` end to end, as a user runs it: the table, the saved history, the comparison
with the previous run, and clear usage errors. Each test runs pytest in a subprocess."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.helpers.run_bench import bench_subprocess

SMALL = ["--frames", "2", "--model-size", "tiny", "--frame-size", "32x32", "--rounds", "2", "--warmup", "0",
         "--provider", "cpu",  # the harness itself, on any machine: a GPU host would resolve auto to CUDA
         "--probe-seconds", "0.25"]  # short capacity probes (tests/helpers/run_bench.py TINY_RUN says why)


@pytest.mark.slow
def test_bench_prints_the_table_saves_history_and_compares_next_time(tmp_path):
    storage = ["--benchmark-storage", f"file://{tmp_path / 'history'}", "--strategy", "serial", "--strategy", "threads",
               "--report-dir", str(tmp_path / "report")]
    first = bench_subprocess(*SMALL, *storage)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "fanbench: 4 models x 2 frames, batch 4, provider cpu" in out
    assert "equal to serial: every frame's outputs within a tolerance measured per model (float32 arithmetic" in out
    # Each model's noise floor, discrimination and tolerance, printed above the table.
    assert len(re.findall(r"^equivalence cnn_\S+: noise [\d.e-]+, adjacent frames differ by >= [\d.e-]+ "
                          r"\(median [\d.e-]+\), tolerance [\d.e-]+ x max\|output\|: tells adjacent frames apart$",
                          out, re.MULTILINE)) == 4
    for row in (r"serial\s+intra\d", r"serial\s+ort-defaults", r"threads\s+intra\d", r"threads\s+ort-defaults"):
        assert re.search(rf"^{row}.*\byes\s*$", out, re.MULTILINE), row
    assert "Comparing against" not in out

    assert (tmp_path / "report" / "report.md").is_file()
    (saved,) = tmp_path.glob("history/*/0001_*.json")
    history = json.loads(saved.read_text())
    assert history["machine_info"]["fanbench"]["onnxruntime"]
    benches = [bench["extra_info"] for bench in history["benchmarks"]]
    assert sorted((info["strategy"], info["settings"]["ort_defaults"], info["settings"]["scenario"]) for info in benches) == [
        (strategy, defaults, scenario) for strategy in ("serial", "threads") for defaults in (False, True)
        for scenario in ("offline", "streaming") if not (defaults and scenario == "streaming")]  # defaults: offline only
    assert all(info["schema_version"] == 2 for info in benches)
    for settings, timing, equal in ((info["settings"], info["timing"], info["equivalence"]) for info in benches):
        assert equal["equivalent"] is True
        assert settings["provider"] == "cpu"
        assert equal["tolerance"].startswith("a tolerance measured per model (float32 arithmetic")
        assert equal["calibration"]["precision"] == "float32"
        assert set(equal["calibration"]["models"]) == set(settings["models"])
        for check in equal["calibration"]["models"].values():
            assert check["pairs"] == 1
            assert check["tells_frames_apart"] is True
            assert check["noise"] < check["tolerance"] < check["separation_min"]
        assert settings["frames"] == 2
        assert settings["batch"] == 4
        assert len(settings["models"]) == 4
        assert len(timing["per_model_cumulative_s"]) == 4
        assert all(t > 0 for t in timing["per_model_cumulative_s"])
        assert timing["fps"] == pytest.approx(2 / timing["wall_s"])
        assert all(flops > 0 for flops in settings["model_flops"])
        assert settings["thread_settings"]["ort_defaults"] == settings["ort_defaults"]

    second = bench_subprocess(*SMALL, *storage)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Comparing against benchmarks from" in second.stdout + second.stderr
    assert len(list(tmp_path.glob("history/*/*.json"))) == 2


@pytest.mark.slow
def test_no_history_saves_nothing(tmp_path):
    result = bench_subprocess(*SMALL, "--strategy", "serial", "--no-history", "--no-report",
                        "--benchmark-storage", f"file://{tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(tmp_path.rglob("*.json"))


def test_benchmarks_refuse_xdist():
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install -e '.[dev]')")
    result = bench_subprocess("-n", "2", *SMALL)
    assert result.returncode == 4
    assert "fanbench refuses to benchmark under pytest-xdist" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--frames", "0"], "argument --frames: must be at least 1, got 0.", id="zero-frames"),
        pytest.param(["--frames", "-3"], "argument --frames: must be at least 1, got -3.", id="negative-frames"),
        pytest.param(["--batch", "four"], "argument --batch: expected a whole number, got 'four'.", id="batch-not-a-number"),
        pytest.param(["--frame-size", "256"], "argument --frame-size: expected HEIGHTxWIDTH", id="frame-size-without-x"),
        pytest.param(["--frame-size", "0x5"], "argument --frame-size: expected HEIGHTxWIDTH", id="frame-size-zero"),
        pytest.param(["--model-size", "huge"], "argument --model-size: invalid choice: 'huge'", id="unknown-model-size"),
        pytest.param(["--provider", "rocm"], "argument --provider: invalid choice: 'rocm'", id="unknown-provider"),
        pytest.param(["--strategy", "thread"], "--strategy: unknown strategy 'thread'; choose from: serial, threads",
                     id="unknown-strategy"),
    ],
)
def test_bad_options_are_usage_errors(args, message):
    result = bench_subprocess(*args)
    assert result.returncode == 4, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_onnxruntime_is_one_clear_line(tmp_path):
    blocker = tmp_path / "onnxruntime"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('onnxruntime hidden for this test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = bench_subprocess(*SMALL, env=env)
    assert result.returncode == 4
    assert "onnxruntime is not installed: run `pip install -e '.[cpu]'` (or `.[gpu]` on a CUDA host)." in result.stderr
    assert "Traceback" not in result.stderr
