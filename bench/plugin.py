"""Benchmark-side glue for scenarios, sampling, progress and the report directory.

bench/conftest.py imports the fixtures from here and calls the two helpers from its hooks,
so the shared conftest stays small.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.measure.machine import GpuProbe, open_gpu
from bench.measure.rounds import Progress, RoundHooks
from bench.measure.sampler import SamplerProcess
from bench.measure.scenarios import Scenario, selected_scenarios
from strategies import usable_cores

GPU_ABSENT = pytest.StashKey[str | None]()


def scenarios(config: pytest.Config) -> list[Scenario]:
    try:
        return selected_scenarios(config.getoption("scenario"), config.getoption("fps"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def parametrize_scenarios(metafunc: pytest.Metafunc) -> None:
    if "scenario" in metafunc.fixturenames:
        selected = scenarios(metafunc.config)
        metafunc.parametrize("scenario", selected, ids=[scenario.id for scenario in selected])


@pytest.fixture(scope="session")
def gpu_probe(workload, pytestconfig: pytest.Config) -> Iterator[GpuProbe]:
    """NVML opened once per session (only for a CUDA workload), shut down at the end."""
    probe = open_gpu(workload.provider)
    pytestconfig.stash[GPU_ABSENT] = probe.reason
    try:
        yield probe
    finally:
        probe.shutdown()


@pytest.fixture(scope="session")
def sampler_process(workload, pytestconfig: pytest.Config) -> Iterator[SamplerProcess | None]:
    """The resource sampler's own process (none with --no-sampler), started once per run, ended at its end.

    A separate process, so its readings cannot take the benchmark's GIL in the middle of a timed round."""
    if pytestconfig.getoption("no_sampler"):
        yield None
        return
    process = SamplerProcess(workload.provider, rate_hz=pytestconfig.getoption("sample_rate"), cores=usable_cores())
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def round_hooks(request: pytest.FixtureRequest, workload, gpu_probe: GpuProbe,
                sampler_process: SamplerProcess | None) -> Iterator[RoundHooks]:
    """Sampler and progress bar around each round of this benchmark; stopped in every outcome."""
    config = request.config
    sampler = sampler_process.new() if sampler_process is not None else None
    progress = None
    if not config.getoption("no_progress"):
        capture = config.pluginmanager.getplugin("capturemanager")
        label = request.node.callspec.id if hasattr(request.node, "callspec") else request.node.name
        progress = Progress(workload.frame_count * (config.getoption("warmup") + config.getoption("rounds")), label,
                            capture.global_and_fixture_disabled if capture is not None else contextlib.nullcontext)
    hooks = RoundHooks(config.getoption("warmup"), workload.frame_count, sampler, progress)
    try:
        yield hooks
    finally:
        hooks.close()


def report_dir(config: pytest.Config) -> Path | None:
    if config.getoption("no_report") or config.getoption("benchmark_disable") or config.getoption("benchmark_skip"):
        return None
    return Path(config.getoption("report_dir"))


def check_report_dir(config: pytest.Config) -> None:
    """Refuse, before anything runs, a --report-dir the report could not be written to (it was
    found only after the whole run, which then ended in a traceback before the summary lines)."""
    directory = report_dir(config)
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
