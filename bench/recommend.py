"""The closing recommendation: the fastest strategy whose outputs matched serial's."""

from __future__ import annotations

from collections.abc import Sequence

from strategies.thread_spec import settings_from_dict, spec_text

from .results import Measurement
from .table import baseline

TIE = 0.05  # runs within 5% of each other are within the noise of one benchmark run


def _label(m: Measurement) -> str:
    options = "".join(f", {key}={value}" for key, value in m.strategy_options.items())
    return f"{m.strategy} (--threads {spec_text(settings_from_dict(m.thread_settings))}{options})"


def recommendation(measurements: Sequence[Measurement]) -> str | None:
    """One line naming the fastest equivalent strategy, its settings, speedup and efficiency."""
    if not measurements:
        return None
    equivalent = [m for m in measurements if m.equivalent and m.wall_s > 0]
    if not equivalent:
        return "fanbench recommends nothing: no strategy's outputs matched the serial reference."
    best = min(equivalent, key=lambda m: m.wall_s)
    fastest = min(measurements, key=lambda m: m.wall_s)
    base = baseline(measurements)
    parts = [f"fanbench recommends {_label(best)}: wall {best.wall_s:.3f} s"]
    if base is not None:
        parts.append(f"{base.wall_s / best.wall_s:.2f}x {base.key}")
    if best.efficiency is not None:
        parts.append(f"efficiency {best.efficiency:.0%} of the packing limit")
    line = ", ".join(parts)
    ties = [m.key for m in equivalent if m is not best and m.wall_s <= best.wall_s * (1 + TIE)]
    if ties:
        line += f"; within {TIE:.0%}: {', '.join(ties)}"
    if fastest is not best:
        line += (f" (the fastest run, {fastest.key} at {fastest.wall_s:.3f} s, did not match serial"
                 + (f"; the recommendation is more than {TIE:.0%} slower)" if best.wall_s > fastest.wall_s * (1 + TIE) else ")"))
    return line
