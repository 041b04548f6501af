"""The performance bar: the packing limit (with a fake clock), efficiency, and the recommendation line."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.measure.limits import PackingLimit, measure_packing_limit
from bench.measure.measurement import Measurement
from bench.report.markdown import write_report
from bench.report.recommend import recommendation
from bench.report.table import format_table, markdown_tables
from tests.helpers.measurements import changed, flat
from tests.helpers.workloads import tiny_workload


def test_packing_limit_sums_each_models_single_thread_time_over_the_cores(tmp_path: Path):
    workload = tiny_workload(tmp_path, models=3, frames=5, batch=1, size=8)
    ticks = itertools.count()
    limit = measure_packing_limit(workload, clock=lambda: float(next(ticks)), cores=2)
    # Two clock readings per timed call, one tick apart: each frame costs exactly 1 "second".
    assert limit.per_model_s == (5.0, 5.0, 5.0)
    assert limit.limit_s == 7.5
    assert limit.efficiency(15.0) == 0.5
    assert limit.as_dict() == {"per_model_single_thread_s": [5.0, 5.0, 5.0], "units": 2, "limit_s": 7.5, "bound": True}


def test_the_packing_limit_runs_on_the_workloads_provider_with_its_cuda_options(tmp_path: Path, monkeypatch):
    from strategies.runtime import sessions

    created, real = [], sessions.make_session

    def make_session(path, settings, provider, options):
        created.append((provider, options))
        return real(path, settings)  # a real CPU session runs the frames here

    workload = replace(tiny_workload(tmp_path, models=2, frames=2, batch=1, size=8), provider="cuda",
                       cuda_options=(("cudnn_conv_algo_search", "HEURISTIC"), ("device_id", "1")))
    monkeypatch.setattr(sessions, "make_session", make_session)  # the run's session factory makes them
    limit = measure_packing_limit(workload)
    assert created == [("cuda", {"cudnn_conv_algo_search": "HEURISTIC", "device_id": "1"})] * 2
    assert limit.units == 1  # one device, whatever the core count
    assert (limit.bound, limit.efficiency(0.001)) == (False, None)  # no bound on CUDA, so no efficiency


def measurement(strategy: str, wall: float, *, settings: str = "intra1-inter1-spin0", ort_defaults: bool = False,
                equivalent: bool = True, limit: float | None = 1.0, provider: str = "cpu",
                rounds: list[float] | None = None) -> Measurement:
    """A fabricated benchmark; `rounds` are its per-round walls (the median becomes its wall)."""
    if rounds is not None:
        wall = float(np.median(rounds))
    thread_settings = ({"intra_op_num_threads": None, "inter_op_num_threads": None, "execution_mode": "sequential",
                        "allow_spinning": None, "ort_defaults": True} if ort_defaults else
                       {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "execution_mode": "sequential",
                        "allow_spinning": False, "ort_defaults": False})
    return flat(strategy=strategy, settings="ort-defaults" if ort_defaults else settings,
                ort_defaults=ort_defaults, models=["a", "b"], frames=10, batch=4, provider=provider,
                per_model_cumulative_s=[wall, wall], wall_s=wall, fps=10 / wall, overlap=1.0,
                equivalent=equivalent, mismatch=None if equivalent else "model 'a' frame 0 differs",
                thread_settings=thread_settings, limit_s=limit, rounds_wall_s=list(rounds or []),
                efficiency=None if limit is None else limit / wall)


def spread_rounds(median: float, spread: float, count: int = 5) -> list[float]:
    """`count` rounds evenly spread over median x (1 -/+ spread / 2): a known spread."""
    return list(np.linspace(median * (1 - spread / 2), median * (1 + spread / 2), count))


def test_with_tight_rounds_the_fastest_is_recommended_and_the_rest_are_slower_beyond_the_spread():
    line = recommendation([measurement("serial", 0, ort_defaults=True, rounds=spread_rounds(4.0, 0.02)),
                           measurement("threads", 0, rounds=spread_rounds(2.0, 0.02)),
                           measurement("merged", 0, rounds=spread_rounds(1.25, 0.02)),
                           measurement("run_async", 0, rounds=spread_rounds(1.4, 0.02))])
    assert line.startswith("fanbench recommends merged (--threads intra=1,inter=1,spin=0): wall 1.250 s "
                           "(rounds 1.238-1.262), 3.20x serial-ort-defaults (95% CI ")
    assert line.endswith("efficiency 80% of the packing limit; every other equivalent strategy was slower beyond "
                         "the rounds' spread.")
    assert "\n" not in line


def test_when_the_rounds_spread_covers_the_difference_the_leaders_are_named_as_indistinguishable():
    # merged's median is 3% lower, but each set of rounds varies by 40%: no run can rank them.
    noisy = [measurement("serial", 0, ort_defaults=True, rounds=spread_rounds(4.0, 0.4)),
             measurement("merged", 0, rounds=spread_rounds(1.20, 0.4)),
             measurement("asyncio", 0, rounds=spread_rounds(1.24, 0.4)),
             measurement("threads", 0, rounds=spread_rounds(2.0, 0.02))]
    first, second = recommendation(noisy).splitlines()
    assert first.startswith("fanbench recommends merged (")
    assert second.startswith("cannot be told apart from it at this run's noise (95% interval of the ratio includes 1): "
                             "asyncio-intra1-inter1-spin0 (1.240 s).")
    assert "their rounds varied by up to 40%, their medians differ by at most 3%" in second
    assert second.endswith("To separate them, run --rounds 10 on a quieter machine (no other jobs on the cores).")
    assert "threads" not in second  # 2.0 s is slower beyond any spread


def test_two_noisy_runs_that_rank_the_leaders_differently_both_name_the_same_group():
    # The same two strategies, the medians swapped by noise between two runs.
    runs = [[measurement("serial", 0, ort_defaults=True, rounds=spread_rounds(4.0, 0.3)),
             measurement("merged", 0, rounds=spread_rounds(fast, 0.3)),
             measurement("asyncio", 0, rounds=spread_rounds(slow, 0.3))]
            for fast, slow in ((1.0, 1.05), (1.05, 1.0))]
    groups = []
    for run in runs:
        first, second = recommendation(run).splitlines()
        best = first.split()[2]
        groups.append({best, second.split(": ")[1].split()[0].split("-")[0]})
    assert groups[0] == groups[1] == {"merged", "asyncio"}


def test_a_single_round_falls_back_to_a_tie_band_and_says_so():
    line = recommendation([measurement("serial", 4.0, ort_defaults=True, rounds=[4.0]),
                           measurement("merged", 1.25, rounds=[1.25]), measurement("run_async", 1.3, rounds=[1.3])])
    assert line.splitlines()[1] == ("within 5% of it, so not told apart by a single round: run_async-intra1-inter1-spin0 "
                                    "(1.300 s). Run --rounds 10 to judge by the rounds' spread.")


def test_a_faster_run_that_did_not_match_serial_is_never_recommended():
    line = recommendation([measurement("serial", 4.0, ort_defaults=True), measurement("threads", 2.0),
                           measurement("merged", 1.0, equivalent=False)])
    assert line.startswith("fanbench recommends threads (")
    assert "(the fastest run, merged-intra1-inter1-spin0 at 1.000 s, did not match serial)" in line


def test_options_are_part_of_the_recommendation():
    batched = changed(measurement("batched", 1.0), strategy_options={"k": 8})
    assert "batched (--threads intra=1,inter=1,spin=0, k=8)" in recommendation([batched])


def test_nothing_to_recommend():
    assert recommendation([]) is None
    assert recommendation([measurement("threads", 1.0, equivalent=False)]) == (
        "fanbench recommends nothing: no strategy's outputs matched the serial reference.")


def test_table_shows_the_limit_and_each_efficiency():
    table = format_table([measurement("serial", 4.0, ort_defaults=True), measurement("merged", 1.25, limit=1.0)])
    assert "packing limit 1.000 s" in table
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    header, _rule, serial_row, merged_row = lines[start:start + 4]
    assert "efficiency" in header
    assert " 25% " in serial_row
    assert " 80% " in merged_row


@pytest.mark.parametrize(("limit", "wall", "expected"), [(1.0, 2.0, 0.5), (1.0, 0.0, None)])
def test_efficiency_is_limit_over_wall_and_undefined_for_a_zero_wall(limit, wall, expected):
    assert PackingLimit((limit,), 1).efficiency(wall) == expected


def test_an_efficiency_above_the_limit_is_never_printed_and_just_above_100_is_flagged_as_noise():
    quiet = format_table([measurement("serial", 4.0, ort_defaults=True), measurement("merged", 1.25, limit=1.0)])
    noisy = format_table([measurement("serial", 4.0, ort_defaults=True), measurement("merged", 0.98, limit=1.0)])
    busy = format_table([measurement("serial", 4.0, ort_defaults=True), measurement("merged", 0.5, limit=1.0)])
    assert "(noise)" not in quiet
    assert "above limit" not in quiet
    assert " 102% (noise) " in noisy
    assert "note: efficiency above 100% marked (noise)" in noisy
    assert " above limit " in busy
    assert "200%" not in busy
    assert "note: efficiency 'above limit': more than 105% of the packing limit" in busy


def efficiencies_printed(text: str) -> list[int]:
    """Every efficiency percentage in a text: table cells under an 'efficiency' header and
    'efficiency N%' in sentences."""
    found = [int(value) for value in re.findall(r"efficiency (\d+)%", text)]
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")] if line.startswith("|") else line.split("  ")
        if "efficiency" in cells:
            column = cells.index("efficiency")
            header_at = text.splitlines().index(line)
            for row in text.splitlines()[header_at + 2:]:
                if not row.strip():
                    break
                row_cells = [cell.strip() for cell in row.strip("|").split("|")] if row.startswith("|") else None
                if row_cells and len(row_cells) > column:
                    found += [int(value) for value in re.findall(r"^(\d+)%", row_cells[column])]
    return found


@pytest.mark.parametrize("provider", ["cpu", "cuda"])
def test_no_efficiency_above_105_percent_is_printed_anywhere(provider, tmp_path: Path):
    # Efficiencies from 50% to 334% (what an H100 showed against the summed per-model time).
    runs = [measurement("serial", 4.0, ort_defaults=True, provider=provider)] + [
        measurement(name, 1.0 / efficiency, provider=provider, rounds=spread_rounds(1.0 / efficiency, 0.01))
        for name, efficiency in (("threads", 0.5), ("asyncio", 1.0), ("fanout", 1.04), ("merged", 1.07),
                                 ("batched", 3.34))]
    texts = [format_table(runs), markdown_tables(runs), recommendation(runs),
             write_report(runs, tmp_path).read_text()]
    for text in texts:
        printed = efficiencies_printed(text)
        assert all(value <= 105 for value in printed), printed
        if provider == "cuda":
            assert printed == []
            assert "no efficiency is shown" in texts[0]
    if provider == "cpu":
        assert sorted(efficiencies_printed(texts[1])) == [25, 50, 100, 104]  # the check does find the cells


def test_on_cuda_the_summed_time_is_shown_as_no_bound_and_gpu_util_instead_of_efficiency():
    table = format_table([measurement("serial", 4.0, ort_defaults=True, provider="cuda"),
                          measurement("iobinding", 0.8, limit=1.0, provider="cuda")])
    assert "each model alone on the GPU, summed: 1.000 s; not a bound on CUDA" in table
    assert "GPU util % says how busy the device was" in table
    assert "125%" not in table
