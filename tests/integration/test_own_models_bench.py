"""`pytest bench --model ... --video ...` end to end: a user's models on a user's video give the
same table and history as the synthetic default, named after the model files."""

from __future__ import annotations

import json
import re

import pytest

from fixtures.models import file_digest
from fixtures.video import write_synthetic_video
from tests.helpers.input_models import write_image_model
from tests.helpers.run_bench import bench_inprocess

pytest_plugins = ["pytester"]

QUICK = ["--strategy", "serial", "--strategy", "threads", "--rounds", "1", "--warmup", "0", "--provider", "cpu",
         "--scenario", "offline", "--no-report"]


def run_bench(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return bench_inprocess(pytester, *QUICK, *args)


def test_own_models_on_own_video_are_benchmarked_and_named_by_file(pytester: pytest.Pytester):
    video = write_synthetic_video(pytester.path / "street.mp4", 2, height=48, width=64)
    det = write_image_model(pytester.path / "cam" / "det.onnx", ["N", 3, "H", "W"])
    det_b = write_image_model(pytester.path / "other" / "det.onnx", ["N", 3, "H", "W"])
    fixed = write_image_model(pytester.path / "cls.onnx", [1, 3, 16, 16], fixed_features=3 * 16 * 16)
    storage = pytester.path / "history"

    result = run_bench(pytester, "--model", f"{det}@24x32", "--model", str(det_b), "--model", str(fixed),
                       "--video", str(video), "--frames", "3", "--loop-video", "--frame-size", "16x16",
                       "--benchmark-storage", f"file://{storage}")

    assert result.ret == pytest.ExitCode.OK, "\n".join(result.outlines + result.errlines)
    result.stdout.fnmatch_lines([
        "fanbench: 3 models x 3 frames, batch 4, provider cpu*",
        "models, in the order of the per-model column: cam/det / other/det / cls",
    ])
    rows = [line for line in result.outlines if re.match(r"(serial|threads)\s.*\b(yes|NO)\s*$", line)]
    assert len(rows) == 4
    assert all(line.rstrip().endswith("yes") for line in rows)
    (saved,) = storage.glob("*/0001_*.json")
    for bench in json.loads(saved.read_text())["benchmarks"]:
        info = bench["extra_info"]["settings"]
        assert info["models"] == ["cam/det", "other/det", "cls"]
        assert info["model_flops"] == [None, None, None]
        assert info["model_set_hash"] == file_digest([det, det_b, fixed])
        assert info["frames"] == 3


def test_own_video_with_the_synthetic_models(pytester: pytest.Pytester):
    video = write_synthetic_video(pytester.path / "street.mp4", 4, height=48, width=64)
    result = run_bench(pytester, "--video", str(video), "--frames", "2", "--model-size", "tiny", "--models", "2",
                       "--frame-size", "32x32", "--no-history")
    assert result.ret == pytest.ExitCode.OK, "\n".join(result.outlines + result.errlines)
    result.stdout.fnmatch_lines(["fanbench: 2 models x 2 frames, batch 4, provider cpu*"])
