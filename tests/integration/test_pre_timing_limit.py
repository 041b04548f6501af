"""--time-limit covers the phases before the timed rounds: the models' dry run, the serial reference, the
equivalence calibration and the packing limit. With a model taking 20 s a call and --time-limit 5, a run
took 172 s: none of them had a limit. No assertion depends on timing: a run that ignored the limit would
still end (the subprocess bound is far above it), but without the one line naming the phase."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.measure.equivalence import measure_calibration
from bench.measure.limits import measure_packing_limit
from strategies import ModelInput, RunTimeout, Workload
from tests.helpers.run_bench import bench_subprocess
from tests.helpers.workloads import slow_model


@pytest.mark.slow
def test_a_slow_users_model_stops_in_its_dry_run_with_one_line(tmp_path: Path) -> None:
    model = slow_model(tmp_path, nodes=1000, size=512)  # seconds a call
    result = bench_subprocess("--model", str(model), "--time-limit", "1", "--strategy", "serial", "--frames", "2",
                              "--rounds", "1", "--warmup", "0", "--provider", "cpu", "--no-history", "--no-report",
                              timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output[-3000:]
    assert ("fanbench: the models' dry run (--model) passed the time limit of 1 s. Raise the limit with "
            "--time-limit SECONDS if the models are just slow.") in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def slow_workload(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    path = slow_model(tmp_path_factory.mktemp("slow"), nodes=300, size=512)
    frames = np.random.default_rng(0).normal(size=(2, 1, 3, 512, 512)).astype(np.float32)
    return Workload((ModelInput("slow", path, frames),))


@pytest.mark.slow
def test_the_packing_limit_stops_within_a_call_once_its_limit_passes(slow_workload: Workload) -> None:
    with pytest.raises(RunTimeout, match=r"^the packing limit \(each model alone, single-threaded\) passed the "
                                         r"time limit of 0\.2 s\.$"):
        measure_packing_limit(slow_workload, time_limit_s=0.2)


@pytest.mark.slow
def test_the_calibration_stops_once_its_limit_passes(slow_workload: Workload) -> None:
    reference = [[(np.zeros((1, 3, 512, 512), np.float32),)] * 2]
    with pytest.raises(RunTimeout, match=r"time limit of 0\.2 s"):
        measure_calibration(slow_workload, reference, time_limit=0.2)
