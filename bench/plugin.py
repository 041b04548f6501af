"""fanbench's pytest plugin: the options, built once into a frozen RunOptions (`options_of(config)`, fixture
`run_options`), the user's models and video loaded before the run, the GPU checks, the benchmark-side fixtures
(measured tolerance, resource sampling, progress) and the report directory check. What the run finds and
collects is RunState (`state_of(config)`, fixture `run_state`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.compare.gates import GateResult
from bench.measure.equivalence import Calibration, measure_calibration
from bench.measure.limits import time_limit
from bench.measure.machine import GpuProbe, open_gpu
from bench.measure.measurement import Measurement
from bench.measure.rounds import Progress, RoundHooks, frames_per_benchmark, warmup_frames
from bench.measure.sampler import SamplerProcess
from bench.options import RunOptions, add_options, build_run_options
from fixtures.cuda import cuda_unavailable_reason
from fixtures.options import OptionError, given_flags, out_of_time
from fixtures.user import UserInput, UserInputError, largest_frame_shape, load_user_input
from fixtures.workloads import MemoryRefused, check_memory, synthetic_memory
from strategies import RunTimeout
from strategies.runtime import onnxruntime, usable_cores


@dataclass
class RunState:
    """What hooks and fixtures share, each field set in the one place named beside it (conftest: bench/conftest.py);
    what one benchmark collects while it runs stays in its BenchmarkRun (bench/measure/run.py)."""

    user_input: UserInput | None = None  # pytest_sessionstart: loaded at session start
    dry_run_timeout: RunTimeout | None = None  # pytest_sessionstart: the dry run passed --time-limit (ends the run)
    gpu_probed: bool = False
    gpu_reason: str | None = None  # None: a session really runs on CUDA here

    measurements: list[Measurement] = field(default_factory=list)  # conftest's fixture record, one per benchmark
    gate_results: list[GateResult] = field(default_factory=list)  # conftest's pytest_sessionfinish (and the next 3)
    workload_differences: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)  # --benchmark-compare-fail checks that failed
    within_noise: list[str] = field(default_factory=list)  # ... exceeded, but within the rounds' noise: not failed
    compared_with: str | None = None  # conftest's history_defaults: which saved run this one is compared with, or why none
    complete: set[str] = field(default_factory=set)  # conftest's pytest_runtest_makereport: passed, teardown too
    left_out: list[str] = field(default_factory=list)  # conftest's pytest_runtestloop: left out of the saved history
    gpu_absent: str | None = None  # fixture gpu_probe: why GPU metrics are absent
    overhead_lines: list[str] = field(default_factory=list)  # conftest's fixture record: serial's harness overhead


RUN_OPTIONS = pytest.StashKey[RunOptions]()  # frozen
RUN_STATE = pytest.StashKey[RunState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("fanbench", "fanbench: the workload and the strategies to benchmark").addoption)


@pytest.hookimpl(tryfirst=True)  # before every other pytest_configure reads the options
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts worker processes or runs many frames; deselect with -m 'not slow'.")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU that onnxruntime really runs on; skipped without "
                                       "one, and the run fails instead under --require-gpu.")
    given = given_flags(config.invocation_params.args, os.environ.get("PYTEST_ADDOPTS", ""), config.getini("addopts"))
    try:
        config.stash[RUN_OPTIONS] = build_run_options(vars(config.option), given)
        onnxruntime()
    except (OptionError, ImportError) as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[RUN_STATE] = RunState()


def options_of(config: pytest.Config) -> RunOptions:
    return config.stash[RUN_OPTIONS]


def state_of(config: pytest.Config) -> RunState:
    return config.stash[RUN_STATE]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Load and check --model/--video before anything is collected or timed: a bad file ends
    the run here with one line naming it (exit status 4), with nothing started."""
    options = options_of(session.config)
    workload = options.workload
    try:
        if not workload.model_requests:  # the synthetic models: refused before any video is written or decoded
            check_memory(synthetic_memory(workload.model_specs(), workload.total_frames, workload.batch,
                                          largest_frame_shape(workload.videos)))
        state_of(session.config).user_input = load_user_input(
            workload.model_requests, workload.videos, frames=workload.frames, loop=workload.loop_video,
            frame_size=workload.frame_size, batch=workload.batch,
            time_limit_s=time_limit(options.time_limit, workload.frames, len(workload.model_requests)))
    except (UserInputError, MemoryRefused) as error:
        raise pytest.UsageError(str(error)) from None
    except RunTimeout as error:  # pytest.exit here would print the line twice: the first test ends the run
        state_of(session.config).dry_run_timeout = error


def gpu_unavailable_reason(config: pytest.Config) -> str | None:
    """Why no session really runs on CUDA here (None when one does): probed once per session with the run's
    CUDA options; every later question (--provider cuda or auto, a `gpu` marker) reads that answer."""
    state = state_of(config)
    if not state.gpu_probed:
        state.gpu_reason = cuda_unavailable_reason(dict(options_of(config).workload.cuda_options))
        state.gpu_probed = True
    return state.gpu_reason


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Under --require-gpu or --provider cuda, stop the run as failed, in one line, when no session really runs
    on CUDA. Not in pytest_sessionstart: pytest prints an exit raised there twice (stderr and the summary)."""
    workload = options_of(session.config).workload
    if workload.provider == "cuda" and (reason := gpu_unavailable_reason(session.config)) is not None:
        option = "--require-gpu" if workload.require_gpu else "--provider cuda"
        pytest.exit(f"{option}: no session really runs on CUDA here: {reason}", returncode=pytest.ExitCode.TESTS_FAILED)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A `gpu`-marked test skips with the reason where no session really runs on CUDA."""
    if item.get_closest_marker("gpu") is not None and (reason := gpu_unavailable_reason(item.config)) is not None:
        pytest.skip(f"needs a CUDA GPU: {reason}")


@pytest.fixture(scope="session")
def run_options(pytestconfig: pytest.Config) -> RunOptions:
    return options_of(pytestconfig)


@pytest.fixture(scope="session")
def cuda_unavailable(pytestconfig: pytest.Config) -> str | None:
    """Why no session really runs on CUDA here, None when one does (gpu_unavailable_reason: probed once)."""
    return gpu_unavailable_reason(pytestconfig)


@pytest.fixture(scope="session")
def phase_time_limit(run_options: RunOptions, workload) -> float:
    """The time limit of each phase before the timed rounds (the reference, the calibration, the packing
    limit): --time-limit, else the per-workload default, as for one run (bench/measure/limits.py)."""
    return time_limit(run_options.time_limit, workload.frame_count, len(workload.models))


@pytest.fixture(scope="session")
def calibration(workload, reference, phase_time_limit: float) -> Calibration:
    """Each model's measured tolerance: noise floor and discrimination (bench/measure/equivalence.py),
    measured once per run with the serial reference, outside every timed region, within the run's time limit."""
    try:
        return measure_calibration(workload, reference, time_limit=phase_time_limit)
    except RunTimeout:
        out_of_time(RunTimeout(f"the equivalence calibration passed the time limit of {phase_time_limit:g} s."))


@pytest.fixture(scope="session")
def run_state(pytestconfig: pytest.Config) -> RunState:
    return state_of(pytestconfig)


@pytest.fixture(scope="session")
def user_input(pytestconfig: pytest.Config) -> UserInput | None:
    """The user's --model/--video, loaded at session start (None: the synthetic ones)."""
    state = state_of(pytestconfig)
    if state.dry_run_timeout is not None:
        out_of_time(state.dry_run_timeout)
    return state.user_input


@pytest.fixture(scope="session")
def gpu_probe(workload, run_state: RunState) -> Iterator[GpuProbe]:
    """NVML opened once per session (only for a CUDA workload), shut down at the end."""
    probe = open_gpu(workload.provider)
    run_state.gpu_absent = probe.reason
    try:
        yield probe
    finally:
        probe.shutdown()


@pytest.fixture(scope="session")
def sampler_process(workload, run_options: RunOptions) -> Iterator[SamplerProcess | None]:
    """The resource sampler's own process (none with --no-sampler), started once per run: a separate process,
    so its readings cannot take the benchmark's GIL in the middle of a timed round."""
    if not run_options.sampler:
        yield None
        return
    process = SamplerProcess(workload.provider, rate_hz=run_options.sample_rate, cores=usable_cores())
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def round_hooks(request: pytest.FixtureRequest, workload, run_options: RunOptions, gpu_probe: GpuProbe,
                sampler_process: SamplerProcess | None) -> Iterator[RoundHooks]:
    """Sampler and progress bar around each round of this benchmark; stopped in every outcome."""
    sampler = sampler_process.new() if sampler_process is not None else None
    label = request.node.callspec.id if hasattr(request.node, "callspec") else request.node.name
    hooks = RoundHooks(run_options.warmup, workload.frame_count, sampler,
                       progress_bar(request.config, run_options, workload.frame_count, label),
                       frames_per_warmup=warmup_frames(workload.frame_count))
    try:
        yield hooks
    finally:
        hooks.close()


def progress_bar(config: pytest.Config, run_options: RunOptions, frame_count: int, label: str,
                 benchmarks: int = 1) -> Progress | None:
    """The bar of `benchmarks` benchmarks' rounds (None with --no-progress), drawn with pytest's capture suspended."""
    if not run_options.progress:
        return None
    capture = config.pluginmanager.getplugin("capturemanager")
    return Progress(benchmarks * frames_per_benchmark(frame_count, run_options.warmup, run_options.rounds), label,
                    capture.global_and_fixture_disabled if capture is not None else contextlib.nullcontext)


def check_report_dir(directory: Path | None) -> None:
    """Refuse, before anything runs, a --report-dir the report could not be written to (it was
    found only after the whole run, which then ended in a traceback before the summary lines)."""
    if directory is None:
        return
    if directory.exists() and not directory.is_dir():
        raise pytest.UsageError(f"--report-dir {directory}: exists and is not a directory; give a directory "
                                "(or --no-report).")
    existing = next(folder for folder in (directory, *directory.parents) if folder.exists())
    if not existing.is_dir():
        raise pytest.UsageError(f"--report-dir {directory}: {existing} is a file, so no directory can be made "
                                "under it; give another directory (or --no-report).")
    try:  # really try: os.access says yes to root on a read-only file system or in /sys
        os.rmdir(tempfile.mkdtemp(prefix=".fanbench-write-check-", dir=existing))
    except OSError as error:
        raise pytest.UsageError(f"--report-dir {directory}: cannot create anything in {existing} "
                                f"({error.strerror or error}); give a writable directory (or --no-report).") from None
