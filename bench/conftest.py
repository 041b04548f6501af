"""Benchmark-only setup: refuse xdist, save every run to the history, compare with the last
run of this machine, parametrise over strategies, and print the table at the end."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from strategies import CLASSIC, STRATEGIES, Strategy, ThreadSettings, usable_cores

from .results import Measurement
from .table import format_table

MEASUREMENTS = pytest.StashKey[list[Measurement]]()


@dataclass(frozen=True)
class Case:
    """One benchmark: a strategy and the thread settings it runs with."""

    strategy: type[Strategy]
    settings: ThreadSettings

    @property
    def id(self) -> str:
        return f"{self.strategy.name}-{self.settings.label}"


def cases(config: pytest.Config) -> list[Case]:
    names = config.getoption("strategy") or list(STRATEGIES)
    model_count = config.getoption("models")
    selected = []
    for name in names:
        cls = STRATEGIES[name]
        selected.append(Case(cls, cls.default_settings(model_count, usable_cores())))
        if name in CLASSIC:
            # The write-up ran its four with onnxruntime's defaults; so do we, side by side.
            selected.append(Case(cls, ThreadSettings()))
    return selected


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        selected = cases(metafunc.config)
        metafunc.parametrize("case", selected, ids=[case.id for case in selected])


def _previous_runs_exist(config: pytest.Config) -> bool:
    from pytest_benchmark.logger import Logger
    from pytest_benchmark.utils import get_machine_id, load_storage

    storage = load_storage(config.getoption("benchmark_storage"), logger=Logger(Logger.QUIET, config=config),
                           default_machine_id=get_machine_id(), netrc=config.getoption("benchmark_netrc"))
    return any(True for _ in storage.load())


def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-benchmark reads its options (its pytest_configure is trylast).
    if getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError(
            "fanbench refuses to benchmark under pytest-xdist (-n/--dist): parallel benchmarks share the cores "
            "and their timings cannot be trusted. Run `pytest bench` without -n.")
    config.stash[MEASUREMENTS] = []
    if config.getoption("benchmark_disable") or config.getoption("benchmark_skip"):
        return
    if not config.getoption("no_history") and not config.getoption("benchmark_save") \
            and not config.getoption("benchmark_autosave"):
        from pytest_benchmark.utils import get_tag

        config.option.benchmark_autosave = get_tag()
    if config.getoption("benchmark_compare") == [] and not config.getoption("no_history") \
            and _previous_runs_exist(config):
        config.option.benchmark_compare = True  # the latest saved run of this machine


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import cv2
    import numpy
    import onnxruntime

    machine_info["fanbench"] = {
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_device": onnxruntime.get_device(),
        "available_providers": onnxruntime.get_available_providers(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "usable_cores": usable_cores(),
    }
    # GPU and CUDA provider options (issue 7): what makes a GPU run comparable with another.
    from fixtures.gpu import configured_cuda_options
    from strategies.cuda import device_id

    from .gpu_info import gpu_machine_info

    cuda_options = dict(configured_cuda_options(config))
    machine_info["fanbench"].update(gpu_machine_info(device_id(cuda_options)), cuda_options=cuda_options)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    measurements = config.stash.get(MEASUREMENTS, [])
    if measurements:
        terminalreporter.write_sep("=", "fanbench")
        terminalreporter.write_line(format_table(measurements))


@pytest.fixture
def record(request: pytest.FixtureRequest):
    """Append a measurement to the end-of-run table."""
    return request.config.stash[MEASUREMENTS].append
