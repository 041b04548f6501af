"""How many cameras this host serves: the capacity table, the answer line and the latency-against-cameras chart.

Capacity efficiency: the aggregate fps served at capacity over the run's best offline throughput (the
ceiling of any capacity), shown as the efficiency column is (limit_share_text).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.measure.capacity import capacity_efficiency
from bench.measure.measurement import Measurement
from bench.report.charts import _figure, save, series_style, spans_decades
from bench.report.table import Table, fill, limit_share_text, markdown_lines, table_lines

CHART = "capacity-latency.png"


def searched(measurements: Sequence[Measurement]) -> list[Measurement]:
    return [m for m in measurements if m.capacity]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.1f}"


def capacity_table(measurements: Sequence[Measurement]) -> Table | None:
    rows_of = searched(measurements)
    if not rows_of:
        return None
    best = max((m.timing.fps for m in measurements if m.settings.scenario == "offline" and m.equivalence.equivalent),
               default=None)  # the offline throughput: the ceiling of any capacity
    first = rows_of[0].capacity
    title = (f"capacity: cameras at {first['fps']:g} fps served with p99 <= {first['deadline_s'] * 1e3:.1f} ms and "
             f"<= 1% missed ({first['phase']} arrival)")
    header = ["strategy", "settings", "cameras", "aggregate fps", "p50/p99 at capacity (ms)", "capacity efficiency",
              "probes (cameras: pass/fail)"]
    rows = []
    for m in rows_of:
        c = m.capacity
        probes = ", ".join(f"{p['cameras']}{'+' if p['passed'] else '-'}" for p in c["probes"]) or "rounds only"
        rows.append([m.strategy, m.settings.label, str(c["cameras"]), f"{c['aggregate_fps']:.0f}",
                     f"{_ms(c['p50_s'])} / {_ms(c['p99_s'])}", limit_share_text(capacity_efficiency(c, best)), probes])
    return title, header, rows


def answer_line(measurements: Sequence[Measurement]) -> str | None:
    """'this host serves N cameras at 25 fps with X (p99 .. ms); Y serves M'."""
    rows = sorted(searched(measurements), key=lambda m: (-m.capacity["cameras"], m.capacity["p99_s"] or 0.0))
    if not rows:
        return None
    top = rows[0]
    c = top.capacity
    p99 = f" (p99 {_ms(c['p99_s'])} ms)" if c["p99_s"] is not None else ""
    line = f"this host serves {c['cameras']} cameras at {c['fps']:g} fps with {top.key}{p99}"
    runner = next((m for m in rows[1:] if m.strategy != top.strategy), None)
    if runner is not None:
        line += f"; {runner.key} serves {runner.capacity['cameras']}"
    return line


def capacity_lines(measurements: Sequence[Measurement], width: int | None = None) -> list[str]:
    """The terminal's capacity table and answer, fitted to `width` (nothing when no capacity was searched)."""
    table = capacity_table(measurements)
    if table is None:
        return []
    return [*table_lines(table, width), fill(f"fanbench: {answer_line(measurements)}", width)]


def capacity_figure(measurements: Sequence[Measurement], title: str):
    """p99 latency against cameras, one line per strategy from its probes, with the deadline."""
    rows = searched(measurements)
    if not rows:
        raise ValueError(f"{title}: no measurement has a capacity.")
    figure, (axes,) = _figure(9, 5)
    values: list[float] = []
    for index, m in enumerate(rows):
        points = sorted((p["cameras"], p["p99_s"] * 1e3) for p in m.capacity["probes"] if p["p99_s"] is not None)
        if not points:
            continue
        values += [ms for _, ms in points]
        axes.plot([n for n, _ in points], [ms for _, ms in points], label=m.key, **series_style(index))
    deadline = rows[0].capacity["deadline_s"] * 1e3
    values.append(deadline)
    axes.axhline(deadline, color="black", linestyle="--", linewidth=1.2, label=f"deadline {deadline:.0f} ms")
    if spans_decades(values):
        axes.set_yscale("log")
    axes.set_xlabel("cameras")
    axes.set_ylabel("p99 latency (ms)" + (", log scale" if axes.get_yscale() == "log" else ""))
    axes.set_title(title, fontsize=10)
    figure.legend(loc="outside right center", fontsize=8, frameon=False)
    return figure


def capacity_markdown(measurements: Sequence[Measurement], out_dir: Path) -> list[str]:
    """The report's capacity section: the answer, the table and the chart (nothing when not searched)."""
    table = capacity_table(measurements)
    if table is None:
        return []
    chart = save(capacity_figure(measurements, "p99 latency against cameras (capacity probes)"), out_dir / CHART)
    return ["## How many cameras", "", f"- {answer_line(measurements)}", "", f"{table[0].capitalize()}.", "",
            *markdown_lines(table), "", f"![p99 latency against cameras]({chart.name})", ""]
