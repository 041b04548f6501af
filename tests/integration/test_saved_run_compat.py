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


def saved_run(path: Path) -> tuple[dict, dict[str, dict]]:
    """A saved run's machine info, and its benchmarks by test id."""
    run = json.loads(path.read_text())
    return run["machine_info"], {benchmark["fullname"]: benchmark for benchmark in run["benchmarks"]}


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
    (old_machine, old), (new_machine, new) = saved_run(SAVED), saved_run(after)
    assert sorted(new) == sorted(old)
    # The same extra_info keys, plus the schema version the renovation adds and the measurements added since,
    # each optional to every reader (a run saved before them lacks them): the load from outside the run per
    # round and the cores it was measured against (stored where the sampler ran).
    added = {"schema_version", "foreign_load_cores", "rounds_foreign_load_cores", "usable_cores"}
    for name, saved in old.items():
        assert set(new[name]["extra_info"]) - set(saved["extra_info"]) <= added, name
        assert set(saved["extra_info"]) <= set(new[name]["extra_info"]), name
    # One machine info key more, deliberately: "ray", the Ray the run's `ray` benchmarks ran on, present in every
    # run saved since and None when none ran (as here); readers and comparisons treat it as optional (an older
    # run lacks it, a run without Ray has None: no machine difference either way).
    assert set(new_machine["fanbench"]) - set(old_machine["fanbench"]) == {"ray"}
    assert set(old_machine["fanbench"]) <= set(new_machine["fanbench"])
    assert new_machine["fanbench"]["ray"] is None

    compared = compare_subprocess(str(SAVED), str(after))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert DIFFERENT_WORK not in compared.stdout + compared.stderr
    assert "fanbench.ray" not in compared.stdout + compared.stderr  # the new key is no machine difference

    # The saved run alone, then both as a trend: the old extra_info reads like the new.
    rendered = report_subprocess(str(SAVED), "--out", str(tmp_path / "report"))
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    report = (tmp_path / "report" / "report.md").read_text()
    assert all(benchmark["extra_info"]["strategy"] in report for benchmark in old.values())
    trend = report_subprocess(str(SAVED), str(after), "--trend", "--out", str(tmp_path / "trend"))
    assert trend.returncode == 0, trend.stdout + trend.stderr
    assert (tmp_path / "trend" / "report.md").is_file()
