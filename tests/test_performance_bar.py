"""The performance bar: the packing limit (with a fake clock), efficiency, and the recommendation line."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from tiny_workloads import tiny_workload

from bench.limit import PackingLimit, measure_packing_limit
from bench.recommend import recommendation
from bench.results import Measurement
from bench.table import format_table


def test_packing_limit_sums_each_models_single_thread_time_over_the_cores(tmp_path: Path):
    workload = tiny_workload(tmp_path, models=3, frames=5, batch=1, size=8)
    ticks = itertools.count()
    limit = measure_packing_limit(workload, clock=lambda: float(next(ticks)), cores=2)
    # Two clock readings per timed call, one tick apart: each frame costs exactly 1 "second".
    assert limit.per_model_s == (5.0, 5.0, 5.0)
    assert limit.limit_s == 7.5
    assert limit.efficiency(15.0) == 0.5
    assert limit.as_dict() == {"per_model_single_thread_s": [5.0, 5.0, 5.0], "units": 2, "limit_s": 7.5}


def test_the_packing_limit_runs_on_the_workloads_provider_with_its_cuda_options(tmp_path: Path, monkeypatch):
    from bench import limit as limit_module

    created, real = [], limit_module.make_session

    def make_session(path, settings, provider, options):
        created.append((provider, options))
        return real(path, settings)  # a real CPU session runs the frames here

    workload = replace(tiny_workload(tmp_path, models=2, frames=2, batch=1, size=8), provider="cuda",
                       cuda_options=(("cudnn_conv_algo_search", "HEURISTIC"), ("device_id", "1")))
    monkeypatch.setattr(limit_module, "make_session", make_session)
    limit = measure_packing_limit(workload)
    assert created == [("cuda", {"cudnn_conv_algo_search": "HEURISTIC", "device_id": "1"})] * 2
    assert limit.units == 1  # one device, whatever the core count


def measurement(strategy: str, wall: float, *, settings: str = "intra1-inter1-spin0", ort_defaults: bool = False,
                equivalent: bool = True, limit: float | None = 1.0, provider: str = "cpu") -> Measurement:
    thread_settings = ({"intra_op_num_threads": None, "inter_op_num_threads": None, "execution_mode": "sequential",
                        "allow_spinning": None, "ort_defaults": True} if ort_defaults else
                       {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "execution_mode": "sequential",
                        "allow_spinning": False, "ort_defaults": False})
    return Measurement(strategy=strategy, settings="ort-defaults" if ort_defaults else settings,
                       ort_defaults=ort_defaults, models=["a", "b"], frames=10, batch=4, provider=provider,
                       per_model_cumulative_s=[wall, wall], wall_s=wall, fps=10 / wall, overlap=1.0,
                       equivalent=equivalent, mismatch=None if equivalent else "model 'a' frame 0 differs",
                       thread_settings=thread_settings, limit_s=limit,
                       efficiency=None if limit is None else limit / wall)


def test_recommends_the_fastest_equivalent_with_settings_speedup_and_efficiency():
    line = recommendation([measurement("serial", 4.0, ort_defaults=True), measurement("threads", 2.0),
                           measurement("merged", 1.25), measurement("run_async", 1.3)])
    assert line == ("fanbench recommends merged (--threads intra=1,inter=1,spin=0): wall 1.250 s, "
                    "3.20x serial-ort-defaults, efficiency 80% of the packing limit; "
                    "within 5%: run_async-intra1-inter1-spin0")


def test_a_faster_run_that_did_not_match_serial_is_never_recommended():
    line = recommendation([measurement("serial", 4.0, ort_defaults=True), measurement("threads", 2.0),
                           measurement("merged", 1.0, equivalent=False)])
    assert line.startswith("fanbench recommends threads (")
    assert line.endswith("(the fastest run, merged-intra1-inter1-spin0 at 1.000 s, did not match serial; "
                         "the recommendation is more than 5% slower)")


def test_options_are_part_of_the_recommendation():
    batched = measurement("batched", 1.0)
    batched.strategy_options = {"k": 8}
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


def test_an_efficiency_above_the_limit_is_flagged_as_a_busy_machine():
    quiet = format_table([measurement("serial", 4.0, ort_defaults=True), measurement("merged", 1.25, limit=1.0)])
    busy = format_table([measurement("serial", 4.0, ort_defaults=True), measurement("merged", 0.5, limit=1.0)])
    assert "efficiency above 100%" not in quiet
    assert "note: efficiency above 100%: the machine was busier while the packing limit was measured" in busy


def test_on_cuda_the_limit_is_per_device_and_beating_it_is_explained_as_overlap():
    table = format_table([measurement("serial", 4.0, ort_defaults=True, provider="cuda"),
                          measurement("iobinding", 0.8, limit=1.0, provider="cuda")])
    assert "packing limit 1.000 s (each model's time alone on the GPU, summed)" in table
    assert "note: efficiency above 100% on CUDA: the models' CPU-side work (copies, kernel launches) overlapped" in table
    assert "the machine was busier" not in table
