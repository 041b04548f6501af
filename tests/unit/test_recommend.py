"""The answer's group rule and load rule, on fabricated rounds like those of the runs that showed them wrong."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bench.report.recommend import LOAD_MARGIN, group_and_rest, load_could_explain, recommendation
from tests.helpers.measurements import changed
from tests.unit.test_performance_bar import measurement, spread_rounds


def run_async_case():
    """The run that recommended run_async: its group named serial (2.566 s) and asyncio-ort-defaults
    (3.242 s), whose rounds were wide, and left out processes_shm, asyncio_threads and threads, which
    were faster than both but had tight rounds (so each was told apart from the pick on its own)."""
    return [measurement("run_async", 0, rounds=spread_rounds(2.180, 0.04)),
            measurement("processes_shm", 0, rounds=spread_rounds(2.252, 0.04)),
            measurement("asyncio_threads", 0, rounds=spread_rounds(2.440, 0.04)),
            measurement("threads", 0, rounds=spread_rounds(2.518, 0.04)),
            measurement("serial", 0, rounds=[1.95, 2.10, 2.566, 3.40, 3.90]),
            measurement("asyncio", 0, ort_defaults=True, rounds=[1.90, 2.05, 3.242, 4.20, 4.90])]


def test_the_run_async_case_names_no_slower_strategy_beside_the_pick_while_leaving_out_faster_ones():
    runs = run_async_case()
    best, ties, rest = group_and_rest(runs)
    assert best.strategy == "run_async"
    assert ties == []  # processes_shm, next by median, is told apart: the group ends before it
    assert [m.strategy for m in rest] == ["processes_shm", "asyncio_threads", "threads", "serial", "asyncio"]
    line = recommendation(runs)
    assert "\n" not in line  # no "cannot be told apart" line at all
    assert line.endswith("; the others were slower than processes_shm-intra1-inter1-spin0 (2.252 s), which the "
                         "rounds already tell apart from it.")


def group_keys(runs) -> list[str]:
    lines = recommendation(runs).splitlines()
    told = [line for line in lines if line.startswith("cannot be told apart")]
    if not told:
        return []
    names = told[0].split("includes 1): ")[1].split(". Any of")[0]
    return [name.split(" (")[0] for name in names.split(", ")]


@pytest.mark.parametrize("seed", range(20))
def test_the_group_is_a_prefix_of_the_strategies_by_median_and_the_pick_is_the_fastest_median(seed):
    rng = np.random.default_rng(seed)
    names = ["serial", "threads", "processes", "asyncio", "merged", "fanout", "run_async"]
    runs = [measurement(name, 0, rounds=list(rng.uniform(1.0, 1.3) * (1 + rng.uniform(0, rng.uniform(0.01, 0.8), 5))))
            for name in names]
    ordered = sorted(runs, key=lambda m: m.timing.wall_s)
    best, ties, _ = group_and_rest(runs)
    assert best is ordered[0]
    assert recommendation(runs).startswith(f"fanbench recommends {ordered[0].strategy} (")
    assert group_keys(runs) == [m.key for m in ordered[1:1 + len(ties)]]


def test_a_wide_strategy_beyond_a_tight_one_is_not_called_as_good():
    # The real-models run: a 6.019 s median called as good as 3.243 s, for one fast round.
    runs = [measurement("threads", 0, rounds=[3.20, 3.243, 3.30]),
            measurement("merged", 0, rounds=spread_rounds(4.0, 0.02, 3)),
            measurement("processes", 0, rounds=[3.0, 6.019, 6.10])]
    assert group_keys(runs) == []
    assert "6.019" not in recommendation(runs).splitlines()[0].split("; ")[0]


def loaded(m, foreign: float, cores: int = 2):
    return changed(m, foreign_load_cores=foreign, rounds_foreign_load_cores=[foreign] * len(m.timing.rounds_wall_s),
                   usable_cores=cores)


def test_load_could_explain_is_the_ratio_of_the_cores_left_and_needs_a_margin():
    quiet, busy = measurement("a", 1.0), measurement("b", 2.0)
    assert load_could_explain(loaded(quiet, 0.0), loaded(busy, 1.0)) == 2.0  # 2 cores left against 1
    assert load_could_explain(loaded(quiet, 0.5), loaded(busy, 1.0, cores=4)) == 3.5 / 3.0
    assert load_could_explain(loaded(quiet, 0.0), loaded(busy, 2.0)) == math.inf
    assert load_could_explain(loaded(quiet, 0.0), loaded(busy, LOAD_MARGIN)) is None  # within the margin
    assert load_could_explain(loaded(quiet, 1.0), loaded(busy, 0.0)) is None  # the pick had the heavier load
    assert load_could_explain(quiet, loaded(busy, 1.0)) is None  # not measured


def hog_halfway(quiet_runs, hogged: set[str], factor: float = 1.6, foreign: float = 0.9):
    """The same run with a CPU hog from halfway: the later benchmarks ran slower, under foreign load."""
    return [loaded(changed(m, rounds_wall_s=[w * factor for w in m.timing.rounds_wall_s], wall_s=m.timing.wall_s * factor),
                   foreign)
            if m.strategy in hogged else loaded(m, 0.02) for m in quiet_runs]


def test_a_hog_halfway_never_silently_crowns_another_winner():
    quiet = [measurement("serial", 0, ort_defaults=True, rounds=spread_rounds(4.0, 0.03)),
             measurement("threads", 0, rounds=spread_rounds(1.30, 0.03)),
             measurement("asyncio_threads", 0, rounds=spread_rounds(1.10, 0.03)),
             measurement("merged", 0, rounds=spread_rounds(1.00, 0.03))]
    assert recommendation(quiet).startswith("fanbench recommends merged (")
    busy = hog_halfway(quiet, {"asyncio_threads", "merged"})
    answer = recommendation(busy)
    first, *others = answer.splitlines()
    assert first.startswith("fanbench recommends threads (")  # the fastest of what it can rank ...
    assert "every other equivalent strategy was slower beyond the rounds' spread (but those the load could " \
           "explain, below)." in first
    (load_line,) = [line for line in others if line.startswith("not ranked against it")]
    # ... and it says that the load made the quiet winner incomparable, naming it with its load
    assert "during threads-intra1-inter1-spin0's rounds (0.0)" in load_line
    assert ("merged-intra1-inter1-spin0 (1.600 s, 0.9 cores busy outside the run), asyncio_threads-intra1-inter1-spin0 "
            "(1.760 s, 0.9 cores busy outside the run)") in load_line
    assert "rerun them on a quiet machine" in load_line
    assert "serial" not in load_line  # quiet like the pick: ranked


def test_a_gap_larger_than_the_load_can_explain_is_still_ranked():
    quiet = [measurement("threads", 0, rounds=spread_rounds(1.0, 0.02)),
             measurement("serial", 0, rounds=spread_rounds(3.0, 0.02))]
    busy = [loaded(quiet[0], 0.0), loaded(quiet[1], 0.5)]  # 0.5 core explains at most 2 / 1.5 = 1.33x, not 3x
    answer = recommendation(busy)
    assert "not ranked" not in answer
    assert answer.endswith("every other equivalent strategy was slower beyond the rounds' spread.")


@pytest.mark.parametrize(("pick_load", "other_load"), list(itertools.product([0.0, 0.1], [0.0, 0.3])))
def test_load_within_the_margin_changes_nothing(pick_load, other_load):
    runs = [measurement("merged", 0, rounds=spread_rounds(1.0, 0.02)),
            measurement("threads", 0, rounds=spread_rounds(1.1, 0.02))]  # 0.3 core explains 2 / 1.7 = 1.18x
    plain = recommendation(runs)
    with_load = recommendation([loaded(runs[0], pick_load), loaded(runs[1], other_load)])
    assert (with_load == plain) == (other_load - pick_load <= LOAD_MARGIN)
