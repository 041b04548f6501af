"""`python -m bench.gpu_check`: refuses without a GPU; its summary, from fabricated step outputs;
stopped by SIGTERM or --timeout on the CPU (the GPU refusal patched out), nothing finished lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import bench.gpu_check as gpu_check
from bench.gpu_check import (
    DRY_RUN_WORKLOAD,
    STEP_NAMES,
    TIMED_OUT,
    USAGE_ERROR,
    Step,
    StepBudget,
    Stop,
    main,
    read_step,
    run_step,
    steps,
    summary,
)
from bench.measure.measurement import SCHEMA_VERSION
from tests.helpers.measurements import flat

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
    with_real = steps(300, 100, 10.0, ["det.onnx@640x640", "cls.onnx@48x192"], capacity_frames=60, capacity_rounds=2,
                      probe_seconds=2.5)
    assert [step.name for step in with_real] == ["tests", "writeup", "noise", "capacity", "real", "real-capacity"]
    assert tuple(step.name for step in with_real) == STEP_NAMES  # what --step accepts
    assert with_real[0].args == ("-m", "gpu", "--require-gpu", "tests")
    assert "--strategy" not in with_real[1].args  # every strategy
    for capacity in (with_real[3].args, with_real[5].args):
        assert "--scenario" not in capacity  # offline, and streaming with the capacity search
        assert "--no-capacity" not in capacity
        assert capacity[capacity.index("--frames") + 1] == "60"  # their own frames: a stream takes frames / fps
        assert capacity[capacity.index("--rounds") + 1] == "2"
        assert capacity[capacity.index("--probe-seconds") + 1] == "2.5"
        assert [capacity[i + 1] for i, arg in enumerate(capacity) if arg == "--strategy"] == \
            ["serial", "threads", "asyncio_threads", "dynamic_batch", "cuda_graph", "batched"]
    assert "writeup" in with_real[3].args
    assert with_real[4].args[-4:] == ("--model", "det.onnx@640x640", "--model", "cls.onnx@48x192")
    assert with_real[5].args.count("--model") == 2
    assert all("--require-gpu" in step.args for step in with_real)
    assert [step.name for step in steps(300, 100, 10.0, [])] == ["tests", "writeup", "noise", "capacity"]


def test_the_dry_run_swaps_the_gpu_for_the_cpu_and_the_writeup_for_tiny_models():
    dry = steps(2, 2, 5.0, ["det.onnx@64x64", "cls.onnx@48x192"], provider="cpu")
    assert [step.name for step in dry] == list(STEP_NAMES)
    assert dry[0].args == ("-m", "gpu", "tests")  # they skip without a GPU
    for step in dry[1:]:
        assert step.args[:3] == ("bench", "--provider", "cpu")
        assert "--require-gpu" not in step.args
        assert "writeup" not in step.args
    assert all(" ".join(DRY_RUN_WORKLOAD) in " ".join(step.args) for step in dry[1:4])


def test_cuda_options_reach_every_benchmark_step_and_not_the_plain_tests():
    listed = steps(300, 40, 10.0, ["det.onnx@640x640"], cuda_options=["cudnn_conv_algo_search=HEURISTIC"])
    assert "--cuda-option" not in listed[0].args
    assert all(step.args[1:4] == ("--require-gpu", "--cuda-option", "cudnn_conv_algo_search=HEURISTIC")
               for step in listed[1:])


@pytest.mark.parametrize("argv", [["--budget", "writeup"], ["--budget", "writeup=0"], ["--budget", "everything=10"],
                                  ["--budget", "real=soon"], ["--cuda-option", "enable_cuda_graph=1"]],
                         ids=["no-seconds", "zero", "unknown-step", "not-a-number", "refused-cuda-option"])
def test_a_bad_budget_or_cuda_option_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == USAGE_ERROR
    error = capsys.readouterr().err
    assert error.startswith("error: --budget expects STEP=SECONDS") or error.startswith("error: --cuda-option: ")
    assert error.count("\n") == 1


def test_a_step_budget_stops_only_that_step_and_says_why():
    stop = Stop()
    budget = StepBudget(stop, 0.05)
    assert not budget.requested
    time.sleep(0.1)
    assert budget.requested
    assert budget.reason == "its budget of 0.05 s ran out"
    assert not stop.requested  # the check itself goes on
    signalled = StepBudget(stop, 100.0)
    stop.on_signal(signal.SIGTERM, None)
    assert signalled.requested
    assert signalled.reason == "received SIGTERM"


def test_step_runs_only_the_steps_named(tmp_path, monkeypatch):
    ran: list[str] = []
    monkeypatch.setattr(gpu_check, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(gpu_check, "real_model_args", lambda *_: ([], "real models det, cls need rapidocr"))
    monkeypatch.setattr(gpu_check, "run_step", lambda step, out, stop: ran.append(step.name) or read_step(step, 0, out))
    assert main(["--out", str(tmp_path), "--step", "noise", "--step", "tests"]) == 0
    assert ran == ["tests", "noise"]  # in the suite's order, not the command's
    text = (tmp_path / "summary.md").read_text()
    assert "real models" not in text  # not asked for, so not reported as skipped
    with pytest.raises(SystemExit):
        main(["--step", "everything"])


def bench_entry(strategy: str, settings: str, walls: list[float], *, ort_defaults: bool = False,
                **extra) -> dict:
    """A benchmark as pytest-benchmark's JSON holds it, its extra_info a whole Measurement's."""
    wall = sorted(walls)[1]
    fields = {"strategy": strategy, "settings": settings, "ort_defaults": ort_defaults, "models": ["det", "cls"],
              "frames": 300, "batch": 4, "provider": "cuda", "per_model_cumulative_s": [wall / 2, wall / 2],
              "wall_s": wall, "fps": 300 / wall, "overlap": 1.0, "rounds_wall_s": walls, "equivalent": True,
              "gpu_util_mean": 57.6, "gpu_memory_peak_bytes": 1632 * 2**20,
              "tolerance": "tf32: rtol=0.001, atol=0.005 x max|reference|", **extra}
    name = f"test_strategy[{strategy}-{settings}-{fields.get('scenario', 'offline')}]"
    return {"name": name, "fullname": f"bench/test_strategies.py::{name}", "stats": {"median": wall},
            "extra_info": flat(**fields).extra_info()}


def test_the_summary_shows_each_streams_cameras_and_the_answer_and_no_ratio_for_a_paced_wall(tmp_path):
    def capacity(cameras: int, p99: float) -> dict:
        return {"cameras": cameras, "fps": 25.0, "p99_s": p99, "aggregate_fps": 25.0 * cameras}

    benchmarks = [
        bench_entry("serial", "ort-defaults", [1.30, 1.322, 1.40], ort_defaults=True),
        bench_entry("serial", "ort-defaults", [2.0, 2.0, 2.0], ort_defaults=True, scenario="stream25fps",
                    capacity=capacity(12, 0.031)),
        bench_entry("cuda_graph", "intra4-inter1-spin0", [2.0, 2.0, 2.0], scenario="stream25fps",
                    capacity=capacity(31, 0.0224)),
        bench_entry("threads", "intra4-inter1-spin0", [2.0, 2.0, 2.0], scenario="stream25fps", capacity=capacity(24, 0.02)),
    ]
    (tmp_path / "capacity.json").write_text(json.dumps({"machine_info": {"fanbench": {}}, "benchmarks": benchmarks}))
    text = summary([read_step(Step("capacity", "capacity", ("bench",)), 0, tmp_path)], "python -m bench.gpu_check")
    assert "| serial | ort-defaults | stream25fps | 2.000 | 2.000-2.000 (+-0%) | - | 58 | 1632 | 12 (p99 31.0 ms) |" in text
    assert "| cuda_graph | intra4-inter1-spin0 | stream25fps |" in text
    assert ("- this host serves 31 cameras at 25 fps with cuda_graph intra4-inter1-spin0 (p99 22.4 ms); "
            "threads intra4-inter1-spin0 serves 24") in text


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
    assert "| serial | ort-defaults | offline | 1.322 | 1.300-1.400 (+-4%) | 1.00 | 58 | 1632 | - | yes | cuda |" in text
    assert "| threads | intra4-inter1-spin0 | offline | 0.551 | 0.530-0.560 (+-3%) | 2.40 | 58 | 1632 | - | yes | cuda |" \
        in text
    assert "| batched | intra16-inter1-spin0 | offline | 0.261 |" in text
    assert "| NO | cuda |" in text
    assert "- harness overhead of serial ort-defaults: +1.2% (bare loop 1.306 s)" in text
    assert "- equal to serial within: tf32: rtol=0.001, atol=0.005 x max|reference|" in text
    assert "- batched intra16-inter1-spin0 NOT equal: model 'det' frame 4" in text
    assert "- failed: bench.test_strategies::test_strategy[batched]: AssertionError: batched: outputs differ" in text
    assert "- skipped: bench.test_strategies::test_strategy[cuda_graph]: cuda_graph: onnxruntime cannot" in text


def test_a_benchmark_json_of_a_newer_schema_is_reported_in_one_line_not_misread(tmp_path):
    """The steps' JSON is read as every saved run is: Measurement.from_extra_info and its schema check."""
    entry = bench_entry("serial", "ort-defaults", [1.0, 1.1, 1.2], ort_defaults=True)
    entry["extra_info"]["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "writeup.json").write_text(json.dumps({"benchmarks": [entry]}))
    result = read_step(Step("writeup", "write-up workload", ("bench",)), 0, tmp_path)
    assert result.benchmarks == []
    assert result.failures == [f"{tmp_path / 'writeup.json'}: test_strategy[serial-ort-defaults-offline]: saved with "
                               f"measurement schema {SCHEMA_VERSION + 1}, newer than this fanbench's {SCHEMA_VERSION}; "
                               "read it with the fanbench that saved it."]


def test_a_step_that_failed_without_a_report_points_to_its_log(tmp_path):
    result = read_step(Step("real", "real models", ("bench",)), 2, tmp_path)
    assert result.failures == ["pytest exited with 2: see real.log"]


@pytest.mark.slow
def test_a_real_benchmark_step_on_the_cpu_gives_a_summary_with_its_rows_and_overhead(tmp_path, monkeypatch):
    """The subprocess, JUnit and benchmark-JSON path for real, on the CPU (the GPU flags left out)."""
    monkeypatch.chdir(ROOT)
    step = Step("writeup", "small CPU run", ("bench", "--frames", "2", "--model-size", "small", "--rounds", "1",
                                             "--scenario", "offline", "--strategy", "serial", "--no-history"))
    result = run_step(step, tmp_path)
    assert result.returncode == 0, (tmp_path / "writeup.log").read_text()
    assert result.failures == []
    assert result.machine["usable_cores"] >= 1
    text = summary([result], "python -m bench.gpu_check")
    assert "## small CPU run: passed" in text
    assert "| serial | ort-defaults | offline |" in text
    assert "- harness overhead of serial ort-defaults: " in text
    assert "| yes | cpu |" in text


# --- stopping early: SIGTERM, Ctrl-C, --timeout ---------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_timeout_not_above_0_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--timeout", value])
    assert exit_.value.code == USAGE_ERROR
    assert f"--timeout must be above 0, got {float(value)}." in capsys.readouterr().err


def test_a_signal_sets_the_reason_and_the_shells_exit_status_and_a_second_one_hurries():
    stop = Stop()
    assert not stop.requested
    stop.on_signal(signal.SIGTERM, None)
    assert (stop.requested, stop.reason, stop.exit_status, stop.hurry) == (True, "received SIGTERM", 143, False)
    stop.on_signal(signal.SIGINT, None)
    assert (stop.reason, stop.exit_status, stop.hurry) == ("received SIGTERM", 143, True)  # the first one counts
    ctrl_c = Stop()
    ctrl_c.on_signal(signal.SIGINT, None)
    assert (ctrl_c.reason, ctrl_c.exit_status) == ("received SIGINT", 130)


def test_the_deadline_stops_the_check_once_passed():
    assert not Stop(timeout_s=60).requested
    stop = Stop(timeout_s=0.01)
    time.sleep(0.02)
    assert (stop.requested, stop.reason, stop.exit_status) == (True, "--timeout 0.01 s ran out", TIMED_OUT)


def test_benchmark_steps_are_stopped_with_sigterm_and_plain_tests_with_sigint():
    assert Step("writeup", "w", ("bench",)).stop_signal == signal.SIGTERM  # bench/measure/harness.py
    assert Step("tests", "t", ("tests",), benchmarks=False).stop_signal == signal.SIGINT


def test_the_summary_of_a_stopped_check_marks_the_step_shows_its_rows_and_lists_the_steps_not_run(tmp_path):
    benchmarks = [bench_entry("serial", "ort-defaults", [1.30, 1.322, 1.40], ort_defaults=True)]
    (tmp_path / "writeup.json").write_text(json.dumps({"benchmarks": benchmarks}))
    tests = read_step(Step("tests", "gpu-marked tests", ("-m", "gpu"), benchmarks=False), 0, tmp_path)
    writeup = read_step(Step("writeup", "write-up workload", ("bench",)), 2, tmp_path, interrupted="received SIGTERM")
    not_run = [Step("noise", "noise check", ("bench",)), Step("real", "real models", ("bench",))]
    text = summary([tests, writeup], "python -m bench.gpu_check", "received SIGTERM", not_run)
    assert "**Stopped early: received SIGTERM.** Every benchmark that finished is below; not run: noise, real." in text
    assert "## gpu-marked tests: passed" in text
    assert "## write-up workload: INTERRUPTED (received SIGTERM, 1 benchmark(s) finished)" in text
    assert "| serial | ort-defaults | offline | 1.322 |" in text
    assert "pytest exited with 2" not in text  # pytest's status for an interrupt is no failure
    assert "## noise check: NOT RUN (the check was stopped before it)" in text
    assert "## real models: NOT RUN" in text
    assert "Stopped early" not in summary([tests], "python -m bench.gpu_check")


def test_a_benchmark_json_left_empty_by_a_killed_step_is_reported_not_a_crash(tmp_path):
    (tmp_path / "real.json").write_text("")  # pytest-benchmark empties it at start, fills it at the end
    result = read_step(Step("real", "real models", ("bench",)), -9, tmp_path,
                       interrupted="received SIGTERM; killed, not stopped 60 s later")
    assert result.benchmarks == []
    assert result.failures == ["real.json is empty or cut short: pytest ended before writing it (see real.log)"]
    assert "INTERRUPTED (received SIGTERM; killed, not stopped 60 s later, 0 benchmark(s) finished)" in summary(
        [result], "python -m bench.gpu_check")


def fake_gpu(monkeypatch: pytest.MonkeyPatch, run) -> list[str]:
    ran: list[str] = []
    monkeypatch.setattr(gpu_check, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(gpu_check, "real_model_args", lambda *_: ([], "real models det, cls need rapidocr"))
    monkeypatch.setattr(gpu_check, "run_step", lambda step, out, stop: ran.append(step.name) or run(step, out, stop))
    return ran


def test_a_signal_during_a_step_runs_no_further_step_and_exits_as_a_shell_reports_it(tmp_path, monkeypatch):
    def signalled(step, out, budget):
        # Checked first: without main's handler the signal would end this test run.
        assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGINT) == budget.stop.on_signal
        os.kill(os.getpid(), signal.SIGTERM)  # main's handler only records it
        assert budget.requested  # the step sees the check's stop
        return read_step(step, 2, out, interrupted=budget.reason)

    ran = fake_gpu(monkeypatch, signalled)
    assert main(["--out", str(tmp_path)]) == 128 + signal.SIGTERM
    assert ran == ["tests"]
    text = (tmp_path / "summary.md").read_text()
    assert "## gpu-marked tests: INTERRUPTED (received SIGTERM)" in text
    assert "not run: writeup, noise, capacity." in text
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_a_timeout_between_steps_runs_no_further_step(tmp_path, monkeypatch):
    def slow(step, out, stop):
        time.sleep(0.3)  # past the deadline, yet the step ended by itself
        return read_step(step, 0, out)

    ran = fake_gpu(monkeypatch, slow)
    assert main(["--out", str(tmp_path), "--timeout", "0.1", "--step", "tests", "--step", "noise"]) == TIMED_OUT
    assert ran == ["tests"]
    text = (tmp_path / "summary.md").read_text()
    assert "**Stopped early: --timeout 0.1 s ran out.**" in text
    assert "## gpu-marked tests: passed" in text
    assert "## serial's run-to-run spread: onnxruntime's thread pools or the device (300 frames): NOT RUN" in text


# A test-only strategy (loaded with -p): serial whose runs block until a signal ends them, so the
# step is always mid-benchmark when it is stopped, however fast the machine.
BLOCKING_PLUGIN = '''
import time

from strategies.registry import STRATEGIES
from strategies.serial import Serial


class BlockingSerial(Serial):
    name = "serial_blocking"

    def run(self, *args, **kwargs):
        time.sleep(300)  # the stop's KeyboardInterrupt ends it
        return super().run(*args, **kwargs)


STRATEGIES[BlockingSerial.name] = BlockingSerial
'''

# gpu_check with the GPU refusal patched out and two CPU steps: `first` times serial (one
# setting), then blocks in serial_blocking; `second` would time serial again.
WRAPPER = '''
import sys

import bench.gpu_check as gpu_check

CPU = ("bench", "--frames", "2", "--model-size", "small", "--rounds", "1", "--scenario", "offline",
       "--threads", "ort", "--no-history", "-v")
gpu_check.cuda_unavailable_reason = lambda: None
gpu_check.real_model_args = lambda *_: ([], None)
gpu_check.STEP_NAMES = ("first", "second")  # what --step and --budget accept here
gpu_check.steps = lambda *_: [
    gpu_check.Step("first", "serial, then a strategy that never ends",
                   (*CPU, "-p", "blocking_strategy", "--strategy", "serial", "--strategy", "serial_blocking")),
    gpu_check.Step("second", "serial again", (*CPU, "--strategy", "serial")),
]
sys.exit(gpu_check.main(sys.argv[1:]))
'''

HANG_BOUND_S = 120  # far above a prompt stop; reaching it means the check did not stop


def start_check(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    (tmp_path / "blocking_strategy.py").write_text(BLOCKING_PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", WRAPPER, "--out", str(tmp_path / "check"), *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_first_pass(check: subprocess.Popen[bytes], log: Path) -> list[psutil.Process]:
    """Poll the step's log until its first benchmark passed; the check's processes then."""
    deadline = time.monotonic() + HANG_BOUND_S
    while not (log.is_file() and " PASSED" in log.read_text()):
        if check.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no benchmark passed (exit {check.poll()}):\n{check.communicate()[0].decode()}\n"
                        f"{log.read_text() if log.is_file() else ''}")
        time.sleep(0.1)
    started = psutil.Process(check.pid).children(recursive=True)
    assert any("pytest" in process.cmdline() for process in started), started  # the step's pytest
    return started


def finish(check: subprocess.Popen[bytes], started: list[psutil.Process]) -> tuple[int, str]:
    try:
        output, _ = check.communicate(timeout=HANG_BOUND_S)
    finally:
        for process in [*started, psutil.Process(check.pid)] if check.poll() is None else started:
            try:
                process.kill()  # only when the check hung
            except psutil.NoSuchProcess:
                pass
    return check.returncode, output.decode(errors="replace")


def assert_stopped_with_the_finished_row(out: Path, started: list[psutil.Process], reason: str, output: str) -> None:
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, f"processes left running: {alive}\n{output}"
    text = (out / "summary.md").read_text()
    assert f"**Stopped early: {reason}.** Every benchmark that finished is below; not run: second." in text, text
    assert f"## serial, then a strategy that never ends: INTERRUPTED ({reason}, 1 benchmark(s) finished)" in text
    assert "| serial | ort-defaults | offline |" in text
    assert "serial_blocking |" not in text
    assert "## serial again: NOT RUN (the check was stopped before it)" in text
    assert not (out / "second.log").exists()
    log = (out / "first.log").read_text()
    assert log.count(" PASSED") == 1, log
    # pytest-benchmark wrote its JSON at the interrupted session's end, with only the finished benchmark.
    [finished] = json.loads((out / "first.json").read_text())["benchmarks"]
    assert finished["name"] == "test_strategy[serial-ort-defaults-offline]"


@pytest.mark.slow
def test_sigterm_mid_step_keeps_the_finished_benchmark_writes_the_summary_and_runs_no_further_step(tmp_path):
    check = start_check(tmp_path)
    started = wait_for_first_pass(check, tmp_path / "check" / "first.log")
    check.send_signal(signal.SIGTERM)
    status, output = finish(check, started)
    assert status == 128 + signal.SIGTERM, output
    assert "received SIGTERM: stopping step first" in output
    assert_stopped_with_the_finished_row(tmp_path / "check", started, "received SIGTERM", output)


@pytest.mark.slow
def test_a_timeout_that_runs_out_mid_step_stops_the_check_the_same_way(tmp_path):
    # 20 s: far more than the first benchmark takes, and the step then blocks until stopped.
    check = start_check(tmp_path, "--timeout", "20")
    started = wait_for_first_pass(check, tmp_path / "check" / "first.log")
    status, output = finish(check, started)
    assert status == TIMED_OUT, output
    assert_stopped_with_the_finished_row(tmp_path / "check", started, "--timeout 20 s ran out", output)


@pytest.mark.slow
def test_a_budget_that_runs_out_mid_step_keeps_its_finished_benchmark_and_the_check_goes_on(tmp_path):
    check = start_check(tmp_path, "--budget", "first=20")
    started = wait_for_first_pass(check, tmp_path / "check" / "first.log")
    status, output = finish(check, started)
    assert status == 1, output  # a step did not finish; the others ran
    text = (tmp_path / "check" / "summary.md").read_text()
    assert "Stopped early" not in text
    assert "## serial, then a strategy that never ends: INTERRUPTED (its budget of 20 s ran out, 1 benchmark(s) finished)" \
        in text, text
    assert "## serial again: passed" in text
    [finished] = json.loads((tmp_path / "check" / "first.json").read_text())["benchmarks"]
    assert finished["name"] == "test_strategy[serial-ort-defaults-offline]"


@pytest.mark.slow
def test_the_dry_run_on_the_cpu_runs_the_benchmark_steps_and_checks_every_strategy(tmp_path):
    """What a GPU host will run, on the CPU with tiny models: the check checks itself in CI."""
    out = tmp_path / "dry"
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--provider", "cpu", "--frames", "2",
                           "--real-frames", "2", "--sample-rate", "5", "--out", str(out), "--step", "writeup",
                           "--step", "real", "--budget", "real=300"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = (out / "summary.md").read_text()
    assert "## write-up workload, every strategy, 2 frames: passed" in text
    assert "| NO |" not in text
    for strategy in ("serial", "threads", "processes_shm", "iobinding", "batched"):
        assert f"| {strategy} |" in text
    assert "cuda_graph needs the CUDA provider" in text  # skipped with its reason, not failed
    if "real models: skipped" not in text:
        assert "## real models, 2 frames: passed" in text


HANGING_TEST = '''
import os
import signal
import subprocess
import time


def test_hangs():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # deaf to the stop
    helper = subprocess.Popen(["sleep", "300"])
    print(f"hanging {os.getpid()} {helper.pid}", flush=True)
    time.sleep(300)
'''


@pytest.mark.slow
def test_a_step_that_does_not_stop_within_the_grace_is_killed_with_its_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "STOP_GRACE_S", 1.0)
    (tmp_path / "test_hang.py").write_text(HANGING_TEST)
    out = tmp_path / "out"
    out.mkdir()
    stop, hanging = Stop(), []

    def stop_once_hanging() -> None:
        deadline = time.monotonic() + HANG_BOUND_S
        while time.monotonic() < deadline:
            words = (out / "hang.log").read_text().split() if (out / "hang.log").is_file() else []
            if "hanging" in words and len(words) > words.index("hanging") + 2:
                hanging.extend(psutil.Process(int(pid)) for pid in words[words.index("hanging") + 1:][:2])
                break
            time.sleep(0.1)
        stop.on_signal(signal.SIGTERM, None)

    stopper = threading.Thread(target=stop_once_hanging)
    stopper.start()
    result = run_step(Step("hang", "a test deaf to Ctrl-C", ("-s", str(tmp_path / "test_hang.py")), benchmarks=False),
                      out, stop)
    stopper.join()
    assert len(hanging) == 2, (out / "hang.log").read_text()
    assert result.returncode == -signal.SIGKILL
    assert result.interrupted == "received SIGTERM; killed, not stopped 1 s later"
    _, alive = psutil.wait_procs(hanging, timeout=10)  # the helper, in the step's session, too
    assert not alive
