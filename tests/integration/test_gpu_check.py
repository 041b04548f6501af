"""`python -m bench.gpu_check`: refuses without a GPU; its summary, from fabricated step outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import USAGE_ERROR, Step, main, read_step, steps, summary

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_gpu_it_refuses_in_one_line_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "check"
    assert main(["--out", str(out)]) == USAGE_ERROR
    error = capsys.readouterr().err
    assert error.startswith("fanbench gpu_check needs a CUDA GPU: onnxruntime ")
    assert error.count("\n") == 1
    assert not out.exists()


def test_it_is_one_command_that_exits_4_without_a_gpu(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--out", str(tmp_path / "check")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == USAGE_ERROR, done.stderr
    assert "needs a CUDA GPU" in done.stderr


def test_a_bad_frame_count_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--frames", "0"])
    assert exit_.value.code == USAGE_ERROR
    assert "--frames must be above 0, got 0." in capsys.readouterr().err


def test_the_steps_are_the_gpu_tests_the_writeup_the_noise_check_and_the_real_models_when_present():
    with_real = steps(300, 100, 10.0, ["det.onnx@640x640", "cls.onnx@48x192"])
    assert [step.name for step in with_real] == ["tests", "writeup", "noise", "real"]
    assert with_real[0].args == ("-m", "gpu", "--require-gpu", "tests")
    assert "--strategy" not in with_real[1].args  # every strategy
    assert with_real[3].args[-4:] == ("--model", "det.onnx@640x640", "--model", "cls.onnx@48x192")
    assert all("--require-gpu" in step.args for step in with_real)
    assert [step.name for step in steps(300, 100, 10.0, [])] == ["tests", "writeup", "noise"]


def test_step_runs_only_the_steps_named(tmp_path, monkeypatch):
    import bench.gpu_check as gpu_check

    ran: list[str] = []
    monkeypatch.setattr(gpu_check, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(gpu_check, "real_model_args", lambda: ([], "real models det, cls need rapidocr"))
    monkeypatch.setattr(gpu_check, "run_step", lambda step, out: ran.append(step.name) or read_step(step, 0, out))
    assert main(["--out", str(tmp_path), "--step", "noise", "--step", "tests"]) == 0
    assert ran == ["tests", "noise"]  # in the suite's order, not the command's
    text = (tmp_path / "summary.md").read_text()
    assert "real models" not in text  # not asked for, so not reported as skipped
    with pytest.raises(SystemExit):
        main(["--step", "everything"])


def bench_entry(strategy: str, settings: str, walls: list[float], *, ort_defaults: bool = False,
                **extra) -> dict:
    info = {"strategy": strategy, "settings": settings, "ort_defaults": ort_defaults, "wall_s": sorted(walls)[1],
            "rounds_wall_s": walls, "equivalent": True, "provider": "cuda", "gpu_util_mean": 57.6,
            "gpu_memory_peak_bytes": 1632 * 2**20, "tolerance": "tf32: rtol=0.001, atol=0.005 x max|reference|",
            **extra}
    return {"extra_info": info}


def test_the_summary_shows_device_table_spread_overhead_failures_and_skips(tmp_path):
    machine = {"onnxruntime": "1.31.1", "onnxruntime_device": "GPU", "available_providers": ["CUDAExecutionProvider"],
               "usable_cores": 16, "gpu": {"name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04",
                                           "cuda_driver": "13.0", "memory_total_mb": 81559.0}}
    benchmarks = [
        bench_entry("serial", "ort-defaults", [1.30, 1.322, 1.40], ort_defaults=True, harness_overhead=0.012,
                    bare_loop_s=1.306),
        bench_entry("threads", "intra4-inter1-spin0", [0.53, 0.551, 0.56]),
        bench_entry("batched", "intra16-inter1-spin0", [0.25, 0.261, 0.27], equivalent=False,
                    mismatch="model 'det' frame 4 output 0: max abs difference 9e-06"),
    ]
    (tmp_path / "writeup.json").write_text(json.dumps({"machine_info": {"fanbench": machine}, "benchmarks": benchmarks}))
    (tmp_path / "writeup.xml").write_text(
        '<testsuites><testsuite><testcase classname="bench.test_strategies" name="test_strategy[batched]">'
        '<failure message="AssertionError: batched: outputs differ">long text</failure></testcase>'
        '<testcase classname="bench.test_strategies" name="test_strategy[cuda_graph]">'
        '<skipped message="cuda_graph: onnxruntime cannot run model \'det\' as a CUDA graph" /></testcase>'
        '</testsuite></testsuites>')
    writeup = read_step(Step("writeup", "write-up workload", ("bench",)), 1, tmp_path)
    tests = read_step(Step("tests", "gpu-marked tests", ("-m", "gpu"), benchmarks=False), 0, tmp_path)
    text = summary([tests, writeup], "python -m bench.gpu_check")
    assert "- GPU: NVIDIA H100 80GB HBM3, driver 580.159.04, CUDA driver 13.0, 81559 MB" in text
    assert "- onnxruntime 1.31.1 (GPU), providers CUDAExecutionProvider, 16 cores" in text
    assert "## gpu-marked tests: passed" in text
    assert "## write-up workload: FAILED (exit 1)" in text
    assert "| serial | ort-defaults | 1.322 | 1.300-1.400 (+-4%) | 1.00 | 58 | 1632 | yes | cuda |" in text
    assert "| threads | intra4-inter1-spin0 | 0.551 | 0.530-0.560 (+-3%) | 2.40 | 58 | 1632 | yes | cuda |" in text
    assert "| batched | intra16-inter1-spin0 | 0.261 |" in text
    assert "| NO | cuda |" in text
    assert "- harness overhead of serial ort-defaults: +1.2% (bare loop 1.306 s)" in text
    assert "- equal to serial within: tf32: rtol=0.001, atol=0.005 x max|reference|" in text
    assert "- batched intra16-inter1-spin0 NOT equal: model 'det' frame 4" in text
    assert "- failed: bench.test_strategies::test_strategy[batched]: AssertionError: batched: outputs differ" in text
    assert "- skipped: bench.test_strategies::test_strategy[cuda_graph]: cuda_graph: onnxruntime cannot" in text


def test_a_step_that_failed_without_a_report_points_to_its_log(tmp_path):
    result = read_step(Step("real", "real models", ("bench",)), 2, tmp_path)
    assert result.failures == ["pytest exited with 2: see real.log"]


@pytest.mark.slow
def test_a_real_benchmark_step_on_the_cpu_gives_a_summary_with_its_rows_and_overhead(tmp_path, monkeypatch):
    """The subprocess, JUnit and benchmark-JSON path for real, on the CPU (the GPU flags left out)."""
    from bench.gpu_check import run_step

    monkeypatch.chdir(ROOT)
    step = Step("writeup", "small CPU run", ("bench", "--frames", "2", "--model-size", "small", "--rounds", "1",
                                             "--scenario", "offline", "--strategy", "serial", "--no-history"))
    result = run_step(step, tmp_path)
    assert result.returncode == 0, (tmp_path / "writeup.log").read_text()
    assert result.failures == []
    assert result.machine["usable_cores"] >= 1
    text = summary([result], "python -m bench.gpu_check")
    assert "## small CPU run: passed" in text
    assert "| serial | ort-defaults |" in text
    assert "- harness overhead of serial ort-defaults: " in text
    assert "| yes | cpu |" in text
