"""Is a run statistically slower than an earlier one? `python -m bench.compare OLD.json NEW.json`

Per benchmark in both saved runs, from the per-round wall times (extra_info.timing.rounds_wall_s, else
stats.data from --benchmark-save-data): the ratio of medians NEW / OLD (above 1: slower), its bootstrap
interval (scipy.stats.bootstrap, percentile) and the two-sided Mann-Whitney U p-value. A regression is
p < --alpha AND a ratio above 1 + --min-effect: significant and large enough to matter; with
--fail-on-regression the exit status is then 1. Runs that timed different work (frames, batch, models,
provider, thread settings) are refused with status 2 unless --force; a different machine or software
is reported and allowed. Given a directory of saved runs (or more files), it compares the latest two
that read, skipping a damaged or foreign file with one warning naming it.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bench.compare.comparability import machine_differences, one_unmeasured, workload_differences
from bench.compare.saved import SavedRun, history_files, load_run, load_runs
from bench.measure.limits import checked_float
from bench.measure.measurement import HistoryError, stored
from bench.measure.metrics import median_ratio_interval
from bench.report.table import text_blocks

EXIT_OK, EXIT_REGRESSION, EXIT_REFUSED = 0, 1, 2


@dataclass(frozen=True)
class Comparison:
    name: str
    old_median: float
    new_median: float
    ratio: float  # new / old median wall time
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    min_p: float  # smallest p-value reachable with these round counts
    verdict: str  # 'slower', 'faster', 'no significant change', 'too few rounds'

    @property
    def regressed(self) -> bool:
        return self.verdict == "slower"


def rounds_of(benchmark: Mapping[str, Any]) -> list[float]:
    rounds = stored(benchmark.get("extra_info", {}), "timing", "rounds_wall_s") or benchmark.get("stats", {}).get("data")
    if not rounds:
        raise ValueError(f"benchmark {benchmark.get('fullname')!r} has no per-round times: it needs "
                         "extra_info.timing.rounds_wall_s (fanbench benchmarks) or stats.data (--benchmark-save-data).")
    return [float(value) for value in rounds]


def minimum_p(old_count: int, new_count: int) -> float:
    """The smallest two-sided exact Mann-Whitney p-value for samples of these sizes."""
    return min(1.0, 2.0 / math.comb(old_count + new_count, old_count))


def compare_rounds(name: str, old: Sequence[float], new: Sequence[float], *, alpha: float = 0.05,
                   min_effect: float = 0.05, confidence: float = 0.95, resamples: int = 9999,
                   seed: int = 0) -> Comparison:
    old_a, new_a = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    old_median, new_median = float(np.median(old_a)), float(np.median(new_a))
    ratio = new_median / old_median
    min_p = minimum_p(len(old_a), len(new_a))
    if len(old_a) < 2 or len(new_a) < 2:
        return Comparison(name, old_median, new_median, ratio, None, None, None, min_p, "too few rounds")
    p_value = float(stats.mannwhitneyu(new_a, old_a, alternative="two-sided").pvalue)
    ci_low, ci_high = median_ratio_interval(old_a, new_a, confidence=confidence, resamples=resamples, seed=seed)
    if p_value < alpha and ratio > 1 + min_effect:
        verdict = "slower"
    elif p_value < alpha and ratio < 1 / (1 + min_effect):
        verdict = "faster"
    elif min_p >= alpha:
        verdict = "too few rounds"
    else:
        verdict = "no significant change"
    return Comparison(name, old_median, new_median, ratio, ci_low, ci_high, p_value, min_p, verdict)


def significance(name: str, old: Mapping[str, Any], new: Mapping[str, Any], alpha: float = 0.05) -> tuple[bool | None, str]:
    """Whether the rounds of two saved benchmarks differ significantly (Mann-Whitney U, bootstrap CI), and
    that in words. None: it cannot be told (no per-round times, or too few rounds to reach `alpha`)."""
    try:
        old_rounds, new_rounds = rounds_of(old), rounds_of(new)
    except ValueError:
        return None, "significance unknown: a run has no per-round times"
    comparison = compare_rounds(name, old_rounds, new_rounds, alpha=alpha)
    if comparison.p_value is None or comparison.min_p >= alpha:
        return None, (f"cannot be significant with {len(old_rounds)} and {len(new_rounds)} rounds (smallest possible "
                      f"p {comparison.min_p:.2g}); run with --rounds 10 or more to tell")
    if comparison.p_value < alpha:
        return True, (f"significant: Mann-Whitney U p = {comparison.p_value:.2g}, 95% CI of new/old median "
                      f"{comparison.ci_low:.2f} .. {comparison.ci_high:.2f}")
    return False, f"not significant: Mann-Whitney U p = {comparison.p_value:.2g}, within the rounds' noise"


@dataclass(frozen=True)
class HistoryVerdict:
    """--benchmark-compare-fail, noise-aware: what failed, and what passed the threshold only by noise."""

    failed: list[str]  # beyond the threshold and significant, or beyond it where significance cannot be told
    within_noise: list[str]  # beyond the threshold, but the rounds say the difference is noise: not failed


def history_regressions(checks: Sequence[Any], current: Mapping[str, Mapping[str, Any]],
                        compared: Mapping[str, Mapping[str, Mapping[str, Any]]], alpha: float = 0.05) -> HistoryVerdict:
    """One line per benchmark and --benchmark-compare-fail check it exceeds against a saved run.

    A check fails only when its threshold is exceeded *and* the rounds differ significantly (Mann-Whitney
    U, p < `alpha`); a difference within the rounds' noise is reported apart. Where significance cannot be
    told (no per-round times, or too few rounds: with 3 and 3 no p falls below 0.1), the threshold decides.
    `checks`: pytest-benchmark's parsed checks (`field`, `threshold`, `fails(current_stats, saved_stats)`);
    `current`: full name -> this run's benchmark as saved; `compared`: saved run's path -> {full name: benchmark}.
    """
    failed, within_noise = [], []
    for path, saved_run in compared.items():
        for fullname, now in current.items():
            saved = saved_run.get(fullname)
            if saved is None or one_unmeasured(saved.get("extra_info", {}), now.get("extra_info", {})):
                continue
            for check in checks:
                if not check.fails(now["stats"], saved["stats"]):
                    continue
                old_value, new_value = saved["stats"][check.field], now["stats"][check.field]
                percentage = type(check).__name__.startswith("Percentage")
                change = f"{new_value / old_value - 1:+.1%}" if percentage and old_value else f"{new_value - old_value:+.4g} s"
                limit = f"+{check.threshold}%" if percentage else f"+{check.threshold:g} s"
                significant, words = significance(fullname, saved, now, alpha)
                line = (f"{now.get('param') or fullname} against {Path(path).stem}: {check.field} {old_value:.4g} s "
                        f"-> {new_value:.4g} s, {change} (limit {limit}); {words}")
                (within_noise if significant is False else failed).append(line)
    return HistoryVerdict(failed, within_noise)


def format_report(comparisons: Sequence[Comparison], confidence: float) -> str:
    header = ["benchmark", "old median (s)", "new median (s)", "new/old", f"{confidence:.0%} CI", "p (MWU)", "verdict"]
    rows = [[c.name, f"{c.old_median:.4g}", f"{c.new_median:.4g}", f"{c.ratio:.3f}",
             "-" if c.ci_low is None else f"{c.ci_low:.3f} .. {c.ci_high:.3f}",
             "-" if c.p_value is None else f"{c.p_value:.3g}", c.verdict] for c in comparisons]
    [lines] = text_blocks(("", header, rows), width=None)  # the terminal table's layout, on one line per row
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                        help="OLD NEW: the saved run to compare against and the run under test (e.g. "
                             ".benchmarks/<machine>/0001_*.json .benchmarks/<machine>/0002_*.json); or a directory of "
                             "saved runs (or more files): its latest two that read, a damaged file skipped with a warning")
    parser.add_argument("--alpha", type=_fraction, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--min-effect", type=_percent, default=0.05, metavar="PERCENT",
                        help="smallest slowdown that counts, e.g. 5%% (default 5%%)")
    parser.add_argument("--confidence", type=_fraction, default=0.95, help="confidence level of the interval (default 0.95)")
    parser.add_argument("--resamples", type=int, default=9999, help="bootstrap resamples (default 9999)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0: reproducible)")
    parser.add_argument("--fail-on-regression", action="store_true", help="exit with status 1 when a benchmark is slower")
    parser.add_argument("--force", action="store_true", help="compare even when the runs timed different work")
    args = parser.parse_args(argv)
    try:
        old, new = saved_pair(args.runs)
    except HistoryError as error:
        parser.error(str(error))
    for line in machine_differences(old.machine_info, new.machine_info):
        print(f"note: different machine or software: {line}")

    old_by_name = {bench["fullname"]: bench for bench in old.benchmarks}
    new_by_name = {bench["fullname"]: bench for bench in new.benchmarks}
    infos = {name: (old_by_name[name].get("extra_info", {}), new_by_name[name].get("extra_info", {}))
             for name in new_by_name if name in old_by_name}  # (OLD, NEW) of each benchmark in both
    unmeasured = [name for name, pair in infos.items() if one_unmeasured(*pair)]
    for name in unmeasured:
        print(f"note: {name} is not compared: a run saved it without fanbench's measurements "
              "(interrupted, and saved by an older fanbench)")
    common = [name for name in infos if name not in unmeasured]
    different = {name: lines for name in common if (lines := workload_differences(*infos[name]))}
    for name, lines in different.items():
        print(f"{'warning' if args.force else 'error'}: {name} timed different work: {'; '.join(lines)}")
    if different and not args.force:
        print("Refusing to compare runs of different workloads (pass --force to compare anyway).", file=sys.stderr)
        return EXIT_REFUSED
    for name in sorted(set(old_by_name) ^ set(new_by_name)):
        print(f"note: {name} is only in {'OLD' if name in old_by_name else 'NEW'}")
    if not common:
        print("No benchmark is in both runs: nothing to compare.", file=sys.stderr)
        return EXIT_REFUSED
    try:
        comparisons = [compare_rounds(name, rounds_of(old_by_name[name]), rounds_of(new_by_name[name]), alpha=args.alpha,
                                      min_effect=args.min_effect, confidence=args.confidence, resamples=args.resamples,
                                      seed=args.seed) for name in common]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    print(format_report(comparisons, args.confidence))
    if any(c.verdict == "too few rounds" for c in comparisons):
        print(f"note: with these round counts no p-value can fall below alpha={args.alpha:g}; "
              "run `pytest bench --rounds 10` or more for a meaningful test.")
    regressed = [c.name for c in comparisons if c.regressed]
    if regressed:
        print(f"Slower (p < {args.alpha:g}, more than {args.min_effect:.0%} slower): {', '.join(regressed)}")
    return EXIT_REGRESSION if regressed and args.fail_on_regression else EXIT_OK


def saved_pair(paths: Sequence[Path]) -> tuple[SavedRun, SavedRun]:
    """OLD and NEW: the two files given, or the latest two runs that read among a directory's (or more files)."""
    if len(paths) == 2 and all(path.is_file() for path in paths):
        return load_run(paths[0]), load_run(paths[1])
    runs, skipped = load_runs(history_files(paths))
    for line in skipped:
        print(f"warning: {line}", file=sys.stderr)
    if len(runs) < 2:
        raise HistoryError(f"{' '.join(map(str, paths))}: {len(runs)} saved run(s) that read; two are needed to compare.")
    print(f"comparing {runs[-2].path.name} (OLD) with {runs[-1].path.name} (NEW)")
    return runs[-2], runs[-1]


def _fraction(text: str) -> float:
    return checked_float(text, lambda value: 0 < value < 1, "a number between 0 and 1", "must be between 0 and 1 (exclusive)")


def _percent(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    value = checked_float(text.removesuffix("%"), lambda value: value >= 0, "a percentage such as 5%",
                          "must not be negative", shown=text)
    return value / 100 if text.endswith("%") else value
