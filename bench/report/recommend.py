"""The closing recommendations: the fastest strategy whose outputs matched serial's (offline), and the
one that keeps up best with a stream.

A run's medians alone flip with noise, so the line names the strategies that cannot be told apart from
the fastest by the spread of their rounds (the bootstrap interval of the ratio of medians:
a finding only when it excludes 1), and what to do to separate them. That group is a prefix of the
strategies in order of their medians, ending at the first one told apart: a strategy with wide rounds
further down stays out, or the group would leave out a faster one while naming a slower one.

Benchmarks run one after another, so another job that starts or stops during the run slows some of
them. A strategy that ran under at least LOAD_MARGIN more cores of foreign load than the pick
(resources.foreign_load_cores), whose gap that load could explain, is named, not ranked (load_could_explain).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.measure.measurement import Measurement
from bench.measure.metrics import median_ratio_interval
from bench.report.table import CONFIDENCE, NOISE_MARK, baseline, by_scenario, efficiency_text, speedup
from bench.thread_spec import thread_spec
from strategies import ThreadSettings

TIE = 0.05  # with a single round there is no spread: runs within 5% of each other count as ties
MORE_ROUNDS = 10  # what to suggest when the rounds cannot separate the leaders
# Cores of foreign load (another job's) by which two benchmarks must differ before their gap is put
# down to it: CPU counters tick in 10 ms steps, so a quiet 0.2 s round on 2 cores already reads
# +-0.1 core, and the machine's own housekeeping comes and goes by a few hundredths of one.
LOAD_MARGIN = 0.25


def _label(m: Measurement) -> str:
    options = "".join(f", {key}={value}" for key, value in m.settings.strategy_options.items())
    return f"{m.strategy} (--threads {thread_spec(ThreadSettings.from_dict(m.settings.thread_settings))}{options})"


def _judged(m: Measurement) -> bool:
    return len(m.timing.rounds_wall_s) >= 2


def distinguishably_slower(best: Measurement, other: Measurement) -> bool:
    """`other` is slower than `best` beyond the rounds' spread: the whole bootstrap interval of its median
    over `best`'s lies above 1. Without two rounds on each side, beyond TIE."""
    if not (_judged(best) and _judged(other)):
        return other.timing.wall_s > best.timing.wall_s * (1 + TIE)
    low, _ = median_ratio_interval(best.timing.rounds_wall_s, other.timing.rounds_wall_s, confidence=CONFIDENCE)
    return low > 1.0


def _spread(m: Measurement) -> float:
    """(slowest - fastest round) / median: how much the rounds varied."""
    rounds, wall = m.timing.rounds_wall_s, m.timing.wall_s
    return (max(rounds) - min(rounds)) / wall if _judged(m) and wall > 0 else 0.0


def _rounds(m: Measurement) -> str:
    return f" (rounds {min(m.timing.rounds_wall_s):.3f}-{max(m.timing.rounds_wall_s):.3f})" if _judged(m) else ""


def load_could_explain(pick: Measurement, other: Measurement) -> float | None:
    """How much slower the foreign load alone could have made `other` than `pick`, when `other` ran under
    more than LOAD_MARGIN cores more of it; None when it did not (or either was not measured).

    With F of C cores busy outside the run, a strategy using every core takes up to C / (C - F) times as
    long as on an idle machine; between two benchmarks, (C - F_pick) / (C - F_other). One using fewer
    cores is slowed less: this is what the load *could* explain, not what it did."""
    if pick.resources.foreign_load_cores is None or other.resources.foreign_load_cores is None:
        return None
    if other.resources.foreign_load_cores - pick.resources.foreign_load_cores <= LOAD_MARGIN:
        return None
    cores = other.resources.usable_cores or pick.resources.usable_cores
    if not cores:
        return None
    left = cores - other.resources.foreign_load_cores
    return math.inf if left <= 0 else (cores - pick.resources.foreign_load_cores) / left


def _confounded(pick: Measurement, other: Measurement) -> bool:
    factor = load_could_explain(pick, other)
    return factor is not None and other.timing.wall_s <= pick.timing.wall_s * factor


def _load(m: Measurement) -> str:
    return f"{m.resources.foreign_load_cores:.1f}"


def group_and_rest(equivalent: Sequence[Measurement]) -> tuple[Measurement, list[Measurement], list[Measurement]]:
    """The pick (the fastest median), those that cannot be told apart from it (module docstring), the rest."""
    ordered = sorted(equivalent, key=lambda m: m.timing.wall_s)
    best, others = ordered[0], ordered[1:]
    cut = next((index for index, m in enumerate(others) if distinguishably_slower(best, m)), len(others))
    return best, others[:cut], others[cut:]


def recommendation(measurements: Sequence[Measurement]) -> str | None:
    """The fastest equivalent strategy with its settings, speedup and efficiency, the others that cannot be
    told apart from it, and those the load that changed during the run made incomparable (1-3 lines)."""
    if not measurements:
        return None
    equivalent = [m for m in measurements if m.equivalence.equivalent and m.timing.wall_s > 0]
    if not equivalent:
        return "fanbench recommends nothing: no strategy's outputs matched the serial reference."
    best, ties, rest = group_and_rest(equivalent)
    fastest = min(measurements, key=lambda m: m.timing.wall_s)
    base = baseline(measurements)
    parts = [f"fanbench recommends {_label(best)}: wall {best.timing.wall_s:.3f} s{_rounds(best)}"]
    if base is not None and base is not best:
        ratio = speedup(base, best)
        mark = NOISE_MARK if ratio.within_noise else ""
        parts.append(f"{mark}{ratio.value:.2f}x {base.key}" +
                     (f" ({CONFIDENCE:.0%} CI {ratio.low:.2f}-{ratio.high:.2f})" if ratio.judged else ""))
    if efficiency_text(best) == "above limit":
        parts.append("beyond the packing limit (not an efficiency to act on: see the note under the table)")
    elif efficiency_text(best) != "-":
        parts.append(f"efficiency {efficiency_text(best)} of the packing limit")
    line = ", ".join(parts)
    if fastest is not best:
        line += f" (the fastest run, {fastest.key} at {fastest.timing.wall_s:.3f} s, did not match serial)"
    loaded = [m for m in rest if _confounded(best, m)]
    ranked = [m for m in rest if m not in loaded]
    if ranked and not ties:
        if all(distinguishably_slower(best, m) for m in ranked):
            line += ("; every other equivalent strategy was slower beyond the rounds' spread" if _judged(best) else
                     f"; every other equivalent strategy was more than {TIE:.0%} slower (one round: no spread to "
                     "judge noise by)")
            line += " (but those the load could explain, below)." if loaded else "."
        else:
            line += (f"; the others were slower than {rest[0].key} ({rest[0].timing.wall_s:.3f} s), which the rounds "
                     "already tell apart from it.")
    lines = [line]
    if ties:
        names = ", ".join(f"{m.key} ({m.timing.wall_s:.3f} s)" for m in ties)
        if not _judged(best):
            lines.append(f"within {TIE:.0%} of it, so not told apart by a single round: {names}. Run --rounds "
                         f"{MORE_ROUNDS} to judge by the rounds' spread.")
        else:
            group = [best, *ties]
            difference = max(m.timing.wall_s for m in group) / best.timing.wall_s - 1
            lines.append(
                f"cannot be told apart from it at this run's noise ({CONFIDENCE:.0%} interval of the ratio includes 1): "
                f"{names}. Any of these is as good on this evidence: their rounds varied by up to "
                f"{max(_spread(m) for m in group):.0%}, their medians differ by at most {difference:.0%}. To separate "
                f"them, run --rounds {MORE_ROUNDS} on a quieter machine (no other jobs on the cores).")
    if loaded:
        names = ", ".join(f"{m.key} ({m.timing.wall_s:.3f} s, {_load(m)} cores busy outside the run)" for m in loaded)
        lines.append(
            f"not ranked against it: other work on the machine changed during the run, and these ran while more cores "
            f"were busy outside it than during {best.key}'s rounds ({_load(best)}), enough to explain their gap: "
            f"{names}. To compare them fairly, rerun them on a quiet machine or with --interleave (rounds in turns; each "
            "benchmark's foreign load is in the saved run: resources.foreign_load_cores).")
    return "\n".join(lines)


def streaming_recommendation(measurements: Sequence[Measurement]) -> list[str]:
    """Per stream rate: the equivalent strategy that missed the fewest deadlines, at the lowest p99
    latency; others with as few misses and a p99 within TIE follow."""
    lines = []
    for group in by_scenario(measurements).values():
        served = [m for m in group if m.equivalence.equivalent and m.latency.misses is not None and m.latency.p99_s is not None]
        if group[0].settings.target_fps is None or not served:
            continue
        best = min(served, key=lambda m: (m.latency.misses, m.latency.p99_s))
        line = (f"for a {best.settings.target_fps:g} fps stream fanbench recommends {_label(best)}: "
                f"{best.latency.misses}/{best.latency.frames} frames missed the "
                f"{best.latency.deadline_s * 1000:.0f} ms deadline, latency p50 {best.latency.p50_s * 1000:.1f} ms, "
                f"p99 {best.latency.p99_s * 1000:.1f} ms")
        if best.latency.misses == best.latency.frames:
            line += " (no strategy kept up: every frame was late; lower --fps or use a faster machine)"
        ties = [m.key for m in served if m is not best and m.latency.misses == best.latency.misses
                and m.latency.p99_s <= best.latency.p99_s * (1 + TIE)]
        if ties:
            line += f"; as few misses and p99 within {TIE:.0%}: {', '.join(ties)}"
        lines.append(line)
    return lines
