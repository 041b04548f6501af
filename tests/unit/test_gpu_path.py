"""The provider really used, CUDA options, --require-gpu, the `gpu` marker, and the writeup workload.

onnxruntime-gpu's silent fall-back is faked here by an onnxruntime whose sessions report the
CPU provider, as the real one does when the CUDA libraries cannot load; where
onnxruntime-gpu itself is installed on a machine without a GPU, the slow test at the end
checks the same path for real.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import fixtures.plugin
import strategies.runtime.sessions as sessions
from bench.measure.machine import gpu_machine_info
from fixtures.cuda import CudaOptionError, cuda_options, cuda_unavailable_reason, parse_cuda_option
from fixtures.models import SIZES, flops_per_image
from fixtures.options import OptionError, given_flags, workload_options
from strategies import ThreadSettings
from strategies.runtime import ProviderError
from tests.helpers.fakes import FakeNvml
from tests.helpers.run_bench import pytest_subprocess
from tests.helpers.runs import parse_args

ROOT = Path(__file__).resolve().parents[2]


# --- the provider really used --------------------------------------------------------------

class FellBackSession:
    """What onnxruntime-gpu returns when the CUDA provider cannot load: a CPU session."""

    def __init__(self, path: Any, options: Any, providers: list[Any]):
        self.providers_asked = providers

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]


@pytest.fixture
def gpu_package_without_cuda_libraries(monkeypatch):
    """onnxruntime as onnxruntime-gpu behaves on a host without the CUDA 13 / cuDNN 9 libraries."""
    ort = sessions.onnxruntime()
    preloads: list[int] = []

    def preload_dlls() -> None:
        preloads.append(1)
        print("Failed to load libcudnn.so.9: cannot open shared object file")

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FellBackSession)
    monkeypatch.setattr(ort, "preload_dlls", preload_dlls, raising=False)
    monkeypatch.setattr(sessions, "_preload_report", None)  # as in a fresh process
    return preloads


def test_a_session_that_fell_back_fails_with_the_cause_and_the_fix(gpu_package_without_cuda_libraries, tmp_path):
    with pytest.raises(ProviderError) as raised:
        sessions.make_session(tmp_path / "m.onnx", ThreadSettings(), "cuda", {"device_id": "0"})
    message = str(raised.value)
    for part in (f"{tmp_path / 'm.onnx'}: asked for CUDAExecutionProvider but the session fell back to "
                 "CPUExecutionProvider", "CUDA 13 / cuDNN 9", "pip install -e '.[gpu]'", "onnxruntime.preload_dlls()",
                 "reported: Failed to load libcudnn.so.9", "--provider cpu"):
        assert part in message


def test_preload_dlls_runs_once_per_process_before_cuda_sessions(gpu_package_without_cuda_libraries, tmp_path):
    for _ in range(3):
        with pytest.raises(ProviderError):
            sessions.make_session(tmp_path / "m.onnx", ThreadSettings(), "cuda")
    assert gpu_package_without_cuda_libraries == [1]


def test_a_failing_preload_is_reported_not_raised(gpu_package_without_cuda_libraries, monkeypatch):
    def broken() -> None:
        raise RuntimeError("Invalid parameter of directory")

    monkeypatch.setattr(sessions.onnxruntime(), "preload_dlls", broken)
    assert sessions.preload_cuda_libraries() == "onnxruntime.preload_dlls() raised RuntimeError: Invalid parameter of directory"


def test_the_cpu_package_asked_for_cuda_says_to_install_the_gpu_build(tmp_path, monkeypatch):
    ort = sessions.onnxruntime()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ProviderError, match=r"does not have it; it has CPUExecutionProvider\. Install the GPU build"):
        sessions.make_session(tmp_path / "m.onnx", ThreadSettings(), "cuda")


def test_the_gpu_probe_reports_the_fall_back(gpu_package_without_cuda_libraries):
    reason = cuda_unavailable_reason()
    assert reason is not None
    assert "<in-memory model>: asked for CUDAExecutionProvider but the session fell back" in reason


def test_the_gpu_probe_reports_a_cpu_only_onnxruntime(monkeypatch):
    monkeypatch.setattr(sessions.onnxruntime(), "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert "has no CUDAExecutionProvider" in cuda_unavailable_reason()


def test_the_gpu_probe_reports_an_onnxruntime_failure_but_raises_anything_else(monkeypatch):
    """A driver failure is a reason the GPU is unusable; an error of another kind is a bug, not swallowed."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    import fixtures.cuda

    monkeypatch.setattr(sessions.onnxruntime(), "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])

    def driver_failure(*args: Any) -> None:
        raise Fail("CUDA failure 100: no CUDA-capable device is detected")

    monkeypatch.setattr(fixtures.cuda, "make_session", driver_failure)
    assert cuda_unavailable_reason() == ("a session on CUDAExecutionProvider failed: Fail: CUDA failure 100: no "
                                         "CUDA-capable device is detected")

    def bug(*args: Any) -> None:
        raise KeyError("input")

    monkeypatch.setattr(fixtures.cuda, "make_session", bug)
    with pytest.raises(KeyError):
        cuda_unavailable_reason()


# --- CUDA provider options -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "error"), [
    pytest.param("cudnn_conv_algo_search", "expected KEY=VALUE", id="no-equals"),
    pytest.param("device_id=", "expected KEY=VALUE", id="empty-value"),
    pytest.param("=1", "expected KEY=VALUE", id="empty-key"),
    pytest.param("gpu_memory=1", "unknown CUDA option 'gpu_memory'; known options: arena_extend_strategy", id="unknown"),
    pytest.param("device_id=one", "device_id: expected a whole number >= 0, got 'one'", id="not-a-number"),
    pytest.param("device_id=-1", "device_id: expected a whole number >= 0, got '-1'", id="negative"),
    pytest.param("gpu_mem_limit=0", "gpu_mem_limit: expected a whole number >= 1, got '0'", id="zero-limit"),
    pytest.param("do_copy_in_default_stream=maybe", "expected 1/0 (or true/false), got 'maybe'", id="bad-bool"),
    pytest.param("cudnn_conv_algo_search=FAST", "expected one of EXHAUSTIVE, HEURISTIC, DEFAULT, got 'FAST'",
                 id="bad-choice"),
    pytest.param("arena_extend_strategy=nextpoweroftwo", "expected one of kNextPowerOfTwo, kSameAsRequested",
                 id="choice-is-case-sensitive"),
    pytest.param("enable_cuda_graph=1", "cannot be set here: the cuda_graph strategy sets it", id="cuda-graph"),
    pytest.param("user_compute_stream=140000", "cannot be set here: it is the address of a CUDA stream",
                 id="user-stream"),
])
def test_a_bad_cuda_option_says_what_is_allowed(text, error):
    with pytest.raises(CudaOptionError, match=error.replace("(", r"\(").replace(")", r"\)")):
        parse_cuda_option(text)


@pytest.mark.parametrize(("text", "parsed"), [
    ("device_id=1", ("device_id", "1")),
    ("gpu_mem_limit=2147483648", ("gpu_mem_limit", "2147483648")),
    ("do_copy_in_default_stream=false", ("do_copy_in_default_stream", "0")),
    ("use_tf32=True", ("use_tf32", "1")),
    (" cudnn_conv_algo_search = HEURISTIC ", ("cudnn_conv_algo_search", "HEURISTIC")),
])
def test_cuda_options_are_normalised_for_onnxruntime(text, parsed):
    assert parse_cuda_option(text) == parsed


def test_cuda_options_given_twice_are_refused_and_the_rest_sorted():
    assert cuda_options([("device_id", "1"), ("arena_extend_strategy", "kSameAsRequested")]) == (
        ("arena_extend_strategy", "kSameAsRequested"), ("device_id", "1"))
    with pytest.raises(CudaOptionError, match=r"device_id given twice \('1' and '2'\)"):
        cuda_options([("device_id", "1"), ("device_id", "2")])


def test_a_workload_passes_cuda_options_only_to_cuda_sessions(tiny_workload):
    from dataclasses import replace

    with_options = replace(tiny_workload, cuda_options=(("device_id", "1"),))
    assert with_options.provider_options == {}  # provider cpu
    assert replace(with_options, provider="cuda").provider_options == {"device_id": "1"}


# --- the GPU in the saved machine info -----------------------------------------------------

def test_machine_info_records_the_gpu_name_driver_and_memory(monkeypatch):
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    info = gpu_machine_info(1)
    assert info == {"gpu": {"index": 1, "name": "NVIDIA H100 80GB HBM3", "driver": "580.65.06", "cuda_driver": "13.0",
                            "memory_total_mb": 80 * 1024, "cuda_visible_devices": "1"}}
    assert nvml.shutdowns == 1


def test_machine_info_says_why_there_is_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init=True))
    assert gpu_machine_info() == {"gpu": None, "gpu_unavailable": "NVML could not start: Driver Not Loaded"}


# --- the writeup workload ------------------------------------------------------------------

def test_writeup_is_four_resnet18_sized_models_at_256_batch_4_and_1000_frames():
    workload = parse_args(["--workload", "writeup"]).workload
    assert workload.named == "writeup"
    assert (workload.frames, workload.batch, workload.frame_size, workload.model_count) == (1000, 4, (256, 256), 4)
    specs = workload.model_specs()
    base = SIZES["resnet18"]
    assert [(s.width, s.stages, s.blocks, s.classes, s.height, s.width_px) for s in specs] == [
        (base.width, base.stages, base.blocks, base.classes, 256, 256)] * 4
    assert len({spec.seed for spec in specs}) == 4  # four similar models, not one model four times
    assert 4.0e9 < flops_per_image(specs[0]) < 4.7e9  # a ResNet-18 at 256x256 is ~4.7 GFLOP


@pytest.mark.parametrize("given", [("--frames", "12"), ("--frames=12",)])
def test_writeup_frames_can_be_overridden(given):
    workload = parse_args(["--workload", "writeup", *given]).workload
    assert (workload.frames, workload.model_size) == (12, "resnet18")


def test_flags_given_through_pytest_addopts_or_the_ini_count_as_given():
    assert "--frames" in given_flags([], "--frames 7", ())
    assert "--frames" in given_flags([], "", ["--frames=7"])
    assert "--frames" not in given_flags(["--frame-size", "8x8"], "", ())
    values = {**vars(parse_args([]).workload), "workload": "writeup", "cuda_option": [], "model": [], "video": [],
              "frames": 7}
    assert workload_options(values, given_flags([], "--frames 7", ())).frames == 7


def test_writeup_refuses_another_model_count_but_accepts_its_own():
    with pytest.raises(OptionError, match=r"--workload writeup fixes --models to 4; drop --models"):
        parse_args(["--workload", "writeup", "--models", "3"])
    with pytest.raises(OptionError, match=r"fixes --frame-size to 256x256"):
        parse_args(["--workload", "writeup", "--frame-size", "128x128"])
    assert parse_args(["--workload", "writeup", "--models", "4"]).workload.models == 4


def test_without_workload_nothing_changes():
    workload = parse_args([]).workload
    assert (workload.named, workload.frames, workload.model_size) == (None, 32, "medium")


def test_require_gpu_makes_the_provider_cuda_and_machine_info_says_so():
    workload = parse_args(["--require-gpu", "--workload", "writeup", "--frames", "9"]).workload
    assert workload.machine_info() == {"frames": 9, "batch": 4, "frame_size": (256, 256), "models": 4,
                                       "model_size": "resnet18", "provider": "cuda"}
    with pytest.raises(OptionError, match=r"--require-gpu contradicts --provider cpu"):
        parse_args(["--require-gpu", "--provider", "cpu"])


@pytest.mark.parametrize(("resolved", "warmup", "stops"), [("cuda", 0, True), ("cuda", 1, False), ("cpu", 0, False)])
def test_auto_resolving_to_cuda_refuses_an_untimed_cudnn_search(resolved, warmup, stops):
    """--provider auto only learns it runs on CUDA when the workload is built: a cold start ends the run there."""
    def cuda_unavailable() -> str | None:  # the run's one answer (bench/plugin.py cuda_unavailable)
        return None if resolved == "cuda" else "no CUDA here"

    if stops:
        with pytest.raises(pytest.exit.Exception, match=r"--provider auto resolved to cuda: --warmup 0 on the CUDA "
                                                        r"provider would time cuDNN's") as stopped:
            fixtures.plugin.checked_provider("auto", cuda_unavailable, warmup)
        assert stopped.value.returncode == pytest.ExitCode.USAGE_ERROR
    else:
        assert fixtures.plugin.checked_provider("auto", cuda_unavailable, warmup) == resolved


def test_only_auto_asks_whether_a_session_runs_on_cuda():
    def asked() -> str | None:
        raise AssertionError("the GPU probe was asked for a provider given outright")

    assert fixtures.plugin.checked_provider("cpu", asked, 0) == "cpu"
    assert fixtures.plugin.checked_provider("cuda", asked, 1) == "cuda"


# --- end to end: --require-gpu, the gpu marker, usage errors --------------------------------

def no_gpu_here() -> str | None:
    return cuda_unavailable_reason()


@pytest.mark.slow
@pytest.mark.parametrize("option", [["--require-gpu"], ["--provider", "cuda"]], ids=["require-gpu", "provider-cuda"])
def test_require_gpu_fails_the_run_without_a_gpu(option):
    """--provider cuda too: one line at the start, not a ProviderError traceback in every benchmark."""
    if no_gpu_here() is None:
        pytest.skip("a session really runs on CUDA here; this test is for machines without one")
    for target in ("bench", "tests/unit/test_gpu_strategies.py"):
        result = pytest_subprocess(target, *option, "--no-history", "--frames", "2", "--model-size", "tiny")
        assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
        assert f"{option[0]}{' cuda' if len(option) > 1 else ''}: no session really runs on CUDA here:" in result.stdout
        said = f"{option[0]}{' cuda' if len(option) > 1 else ''}: no session"
        assert (result.stdout + result.stderr).count(said) == 1  # said once
        assert " passed" not in result.stdout  # stopped before anything ran on the CPU
        assert "Traceback" not in result.stdout + result.stderr
        assert "ProviderError" not in result.stdout


@pytest.mark.slow
def test_gpu_marked_tests_skip_with_the_reason_without_a_gpu():
    reason = no_gpu_here()
    if reason is None:
        pytest.skip("a session really runs on CUDA here; this test is for machines without one")
    result = pytest_subprocess("tests/unit/test_gpu_strategies.py", "-m", "gpu", "-rs")
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert re.search(r"^=+ \d+ skipped, \d+ deselected in ", result.stdout, re.MULTILINE), result.stdout
    assert f"needs a CUDA GPU: {reason}"[:80] in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("args", "error"), [
    (["--cuda-option", "cudnn_conv_algo_search=FAST"], "argument --cuda-option: CUDA option cudnn_conv_algo_search: "
                                                       "expected one of EXHAUSTIVE, HEURISTIC, DEFAULT, got 'FAST'"),
    (["--provider", "cpu", "--require-gpu"], "--require-gpu contradicts --provider cpu"),
    (["--workload", "writeup", "--batch", "8"], "--workload writeup fixes --batch to 4"),
    (["--provider", "cuda", "--warmup", "0"], "--warmup 0 on the CUDA provider would time cuDNN's"),
    (["--require-gpu", "--warmup", "0"], "--warmup 0 on the CUDA provider would time cuDNN's"),
], ids=["bad-cuda-option", "cpu-and-require-gpu", "writeup-conflict", "cuda-cold-start", "require-gpu-cold-start"])
def test_usage_errors_on_the_command_line(args, error):
    result = pytest_subprocess("bench", "--no-history", *args)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert error in result.stderr


def onnxruntime_gpu_installed() -> bool:
    try:
        importlib.metadata.distribution("onnxruntime-gpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not onnxruntime_gpu_installed(), reason="onnxruntime-gpu is not installed in this environment "
                    "(install `.[gpu]` into a separate virtual environment to run this check)")
def test_real_onnxruntime_gpu_without_a_usable_gpu_fails_with_the_fall_back_message(tiny_workload):
    if no_gpu_here() is None:
        pytest.skip("a session really runs on CUDA here; this test is for machines without one")
    with pytest.raises(ProviderError, match=r"asked for CUDAExecutionProvider but the session fell back to "
                                            r"CPUExecutionProvider.*CUDA 13 / cuDNN 9"):
        sessions.make_session(tiny_workload.models[0].path, ThreadSettings(), "cuda")
    result = pytest_subprocess("bench", "--provider", "cuda", "--strategy", "serial", "--no-history", "--frames", "2",
                        "--model-size", "tiny", "--frame-size", "32x32", "--rounds", "1", "--warmup", "1")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "--provider cuda: no session really runs on CUDA here:" in result.stdout  # one line, before any benchmark
    assert "fell back to CPUExecutionProvider" in result.stdout
