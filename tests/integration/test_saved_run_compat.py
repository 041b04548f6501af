"""A run saved by main before the renovation (issue 14) still compares with a run made now.

tests/data/history_main.json was saved with exactly the command below plus --benchmark-save=main.
The run made now compares against it through pytest-benchmark (--benchmark-compare), through
`python -m bench.compare`, and renders through `python -m bench.report`: the test ids, the work
timed and the extra_info the readers need are unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pytest_benchmark.utils import get_machine_id

from tests.helpers.run_bench import bench_subprocess, compare_subprocess, report_subprocess

SAVED = Path(__file__).resolve().parents[1] / "data" / "history_main.json"
RUN = ("--frames", "2", "--model-size", "tiny", "--models", "2", "--frame-size", "32x32", "--batch", "1",
       "--rounds", "5", "--warmup", "0", "--provider", "cpu", "--strategy", "serial", "--strategy", "threads",
       "--scenario", "offline", "--no-report")
DIFFERENT_WORK = "timed different work"


def benchmark_ids(run: Path) -> list[str]:
    return sorted(benchmark["fullname"] for benchmark in json.loads(run.read_text())["benchmarks"])


@pytest.mark.slow
def test_a_run_saved_before_the_renovation_compares_with_a_run_made_now(tmp_path):
    storage = tmp_path / "history"
    machine = storage / get_machine_id()
    machine.mkdir(parents=True)
    shutil.copy(SAVED, machine / "0001_main.json")

    now = bench_subprocess(*RUN, f"--benchmark-storage=file://{storage}", "--benchmark-compare=0001",
                           "--benchmark-compare-fail=mean:10000%", "--benchmark-save=after")
    output = now.stdout + now.stderr
    assert now.returncode == 0, output[-4000:]
    assert DIFFERENT_WORK not in output
    after = machine / "0002_after.json"
    assert benchmark_ids(after) == benchmark_ids(SAVED)

    compared = compare_subprocess(str(SAVED), str(after))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert DIFFERENT_WORK not in compared.stdout + compared.stderr

    # The saved run alone, then both as a trend: the old extra_info reads like the new.
    rendered = report_subprocess(str(SAVED), "--out", str(tmp_path / "report"))
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    report = (tmp_path / "report" / "report.md").read_text()
    assert all(benchmark["extra_info"]["strategy"] in report for benchmark in json.loads(SAVED.read_text())["benchmarks"])
    trend = report_subprocess(str(SAVED), str(after), "--trend", "--out", str(tmp_path / "trend"))
    assert trend.returncode == 0, trend.stdout + trend.stderr
    assert (tmp_path / "trend" / "report.md").is_file()
