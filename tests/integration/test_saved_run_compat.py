"""A run saved by main before the renovation (issue 14) still compares with a run made now.

tests/data/history_main.json was saved with exactly the command below plus --benchmark-save=main.
The run made now compares against it through pytest-benchmark (--benchmark-compare), through
`python -m bench.compare`, and renders through `python -m bench.report`: the test ids, the work
timed and the measurements the readers need are unchanged; the run made now stores them as schema 2
(one dict per part), the saved run as schema 0 (flat, as schema 1 is).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pytest_benchmark.utils import get_machine_id

from bench.measure.measurement import PARTS, V1_PLACES
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
    # The same measurements, now in schema 2's parts: every key of the flat extra_info (but per_frame, always true,
    # gone) has its place in the new one, which holds nothing more than the measurements added since, each optional
    # to every reader (a run saved before them lacks them): the load from outside the run per round and the cores
    # it was measured against (stored where the sampler ran).
    added = {("resources", "foreign_load_cores"), ("resources", "rounds_foreign_load_cores"), ("resources", "usable_cores")}
    for name, saved in old.items():
        info = new[name]["extra_info"]
        assert info["schema_version"] == 2, name
        places = {V1_PLACES.get(key, ("", key)) for key in saved["extra_info"] if key != "per_frame"}
        held = {(part, key) for part in PARTS for key in info[part]}
        held |= {("", key) for key in info if key not in PARTS and key != "schema_version"}
        assert held - places <= added, name
        assert places <= held, name
    # One machine info key more, deliberately: "ray", the Ray the run's `ray` benchmarks ran on, present in every
    # run saved since and None when none ran (as here); readers and comparisons treat it as optional (an older
    # run lacks it, a run without Ray has None: no machine difference either way).
    assert set(new_machine["fanbench"]) - set(old_machine["fanbench"]) == {"ray"}
    assert set(old_machine["fanbench"]) <= set(new_machine["fanbench"])
    assert new_machine["fanbench"]["ray"] is None

    # The flat run, as saved (schema 0) and as schema 1 saved it (the same keys and a version), against the new one.
    schema_1 = json.loads(SAVED.read_text())
    for benchmark in schema_1["benchmarks"]:
        benchmark["extra_info"]["schema_version"] = 1
    (tmp_path / "schema_1.json").write_text(json.dumps(schema_1))
    for flat in (SAVED, tmp_path / "schema_1.json"):
        compared = compare_subprocess(str(flat), str(after))
        assert compared.returncode == 0, compared.stdout + compared.stderr
        assert DIFFERENT_WORK not in compared.stdout + compared.stderr
        assert "fanbench.ray" not in compared.stdout + compared.stderr  # the new key is no machine difference
        assert all(f"{benchmark['param']}" in compared.stdout for benchmark in old.values())  # each compared

    # The saved run alone, then both as a trend: the old extra_info reads like the new.
    rendered = report_subprocess(str(SAVED), "--out", str(tmp_path / "report"))
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    report = (tmp_path / "report" / "report.md").read_text()
    assert all(benchmark["extra_info"]["strategy"] in report for benchmark in old.values())
    trend = report_subprocess(str(SAVED), str(after), "--trend", "--out", str(tmp_path / "trend"))
    assert trend.returncode == 0, trend.stdout + trend.stderr
    assert (tmp_path / "trend" / "report.md").is_file()
