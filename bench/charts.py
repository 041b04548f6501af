"""Summary charts for the report: wall time and speedup, latency percentiles, and the trend
of each benchmark's time across saved runs. matplotlib's object API on the Agg canvas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .results import Measurement
from .table import baseline


def _figure(width: float, height: float, columns: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, columns, sharey=True, squeeze=False)[0]


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def wall_and_speedup_chart(measurements: Sequence[Measurement], title: str, path: Path) -> Path:
    """Horizontal bars: median wall time, and speedup over the `serial` baseline of the same runs."""
    if not measurements:
        raise ValueError(f"{title}: no measurements to chart.")
    base = baseline(measurements)
    labels = [m.key for m in measurements]
    figure, (wall_axes, speed_axes) = _figure(11, 1.2 + 0.35 * len(labels), 2)
    positions = range(len(labels))
    wall_axes.barh(positions, [m.wall_s for m in measurements], color="tab:blue")
    wall_axes.set_yticks(positions, labels)
    wall_axes.invert_yaxis()
    wall_axes.set_xlabel("wall time (s), median of the timed rounds")
    if base is not None:
        speed_axes.barh(positions, [base.wall_s / m.wall_s if m.wall_s > 0 else 0.0 for m in measurements],
                        color="tab:green")
        speed_axes.axvline(1.0, color="0.4", linewidth=0.8)
        speed_axes.set_xlabel(f"speedup over {base.key}")
    else:
        speed_axes.set_xlabel("speedup: no serial run to compare with")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def latency_chart(measurements: Sequence[Measurement], title: str, path: Path) -> Path:
    """Grouped bars of latency p50/p90/p99 per strategy, with the deadline as a line."""
    rows = [m for m in measurements if m.latency_p50_s is not None]
    if not rows:
        raise ValueError(f"{title}: no measurement has per-frame latency.")
    figure, (axes,) = _figure(11, 1.2 + 0.5 * len(rows))
    height = 0.27
    for offset, (name, attribute, colour) in enumerate((("p50", "latency_p50_s", "tab:blue"),
                                                        ("p90", "latency_p90_s", "tab:orange"),
                                                        ("p99", "latency_p99_s", "tab:red"))):
        axes.barh([index + (offset - 1) * height for index in range(len(rows))],
                  [getattr(m, attribute) * 1000 for m in rows], height=height, color=colour, label=name)
    deadline = rows[0].deadline_s
    if deadline is not None:
        axes.axvline(deadline * 1000, color="black", linestyle="--", linewidth=0.8, label="deadline (one period)")
    axes.set_yticks(range(len(rows)), [m.key for m in rows])
    axes.invert_yaxis()
    axes.set_xlabel("latency (ms) from frame arrival to every model done")
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=10)
    return _save(figure, path)


@dataclass(frozen=True)
class TrendPoint:
    run: str  # label of the saved run (its date and time)
    seconds: float  # the benchmark's median round time in that run


def trend_chart(series: dict[str, list[TrendPoint]], runs: Sequence[str], title: str, path: Path) -> Path:
    """One line per benchmark across the saved runs, in the order given."""
    if not series:
        raise ValueError(f"{title}: no benchmark to chart.")
    figure, (axes,) = _figure(11, 5)
    position = {run: index for index, run in enumerate(runs)}
    for name, points in series.items():
        axes.plot([position[point.run] for point in points], [point.seconds for point in points], marker="o", label=name)
    axes.set_xticks(range(len(runs)), runs, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("median round time (s)")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes.set_title(title, fontsize=10)
    return _save(figure, path)
