"""`pytest bench --interleave` end to end: the rounds of the benchmarks really alternate, each saved
record keeps its own rounds, walls, latencies, resources and equivalence check, and the saved run
works with `--benchmark-compare` and `python -m bench.compare` like any other."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers.run_bench import bench_subprocess, compare_subprocess

RUN = ("--frames", "3", "--model-size", "tiny", "--frame-size", "32x32", "--models", "2", "--rounds", "3",
       "--warmup", "1", "--provider", "cpu", "--scenario", "offline", "--no-report", "--interleave",
       "--strategy", "serial", "--strategy", "threads", "--strategy", "asyncio_threads")


@pytest.mark.slow
def test_an_interleaved_run_alternates_rounds_and_saves_each_benchmark_whole(tmp_path):
    storage = ("--benchmark-storage", f"file://{tmp_path / 'history'}")
    first = bench_subprocess(*RUN, *storage)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "fanbench recommends " in first.stdout
    assert ("fanbench: --interleave: the rounds of 5 benchmarks ran in turns, every strategy open at once: the memory "
            "columns (PSS, USS, GPU MB) are of all of them together") in first.stdout

    (saved,) = tmp_path.glob("history/*/0001_*.json")
    benchmarks = json.loads(saved.read_text())["benchmarks"]
    names = [bench["param"] for bench in benchmarks]
    assert len(names) == 5  # serial and threads with their own and onnxruntime's default settings, asyncio_threads
    for bench in benchmarks:
        info = bench["extra_info"]
        assert bench["options"]["timer"] == "interleaved_replay"  # pytest-benchmark's walls: the rounds run in turns
        assert bench["stats"]["rounds"] == 3
        assert len(info["timing"]["rounds_wall_s"]) == 3
        assert len(info["interleaved_round_starts_s"]) == 3
        assert info["equivalence"]["equivalent"] is True
        assert info["latency"]["frames"] == 3 * 3  # every timed round's frames, this benchmark's own
        assert info["settings"]["frames"] == 3
        assert len(info["resources"]["rounds_foreign_load_cores"]) == 3  # one per round, from its own sampler
        assert info["resources"]["samples"] >= 6
    # Every round of every benchmark, by the time it started: A1 B1 C1 D1 E1 A2 B2 ... in collection order.
    starts = sorted((start, bench["param"]) for bench in benchmarks
                    for start in bench["extra_info"]["interleaved_round_starts_s"])
    assert [name for _, name in starts] == names * 3
    serial = next(bench for bench in benchmarks if bench["param"].startswith("serial-intra"))
    assert "harness_overhead" in serial["extra_info"]["timing"]  # bare loops paired with serial's own rounds

    second = bench_subprocess(*RUN, *storage, "--benchmark-compare=0001", "--benchmark-compare-fail=median:100000%")
    assert second.returncode == 0, second.stdout + second.stderr
    assert re.search(r"Comparing against benchmarks from: \S+/0001_", second.stdout + second.stderr)
    assert "timed different work" not in second.stdout
    files = sorted(tmp_path.glob("history/*/*.json"))
    compared = compare_subprocess(*map(str, files))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    for name in names:
        assert name in compared.stdout


@pytest.mark.slow
def test_interleave_with_benchmark_disable_is_refused_in_one_line():
    result = bench_subprocess(*RUN, "--no-history", "--benchmark-disable")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "ERROR: --interleave: --benchmark-disable times no rounds to take in turns; drop one of the two.\n" \
        in result.stderr
