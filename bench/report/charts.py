"""Summary charts for the report: wall time and speedup, latency percentiles, and the trend
of each benchmark's time across saved runs. matplotlib's object API on the Agg canvas."""

from __future__ import annotations

import contextlib
import functools
import itertools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure.measurement import Measurement
from bench.report.table import CONFIDENCE, baseline, speedup


def new_figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure on the Agg canvas (no pyplot, no display, no global backend switch), and the matplotlib
    package (the timeline takes its colormaps and legend patches from it)."""
    # Lazy, the one import of matplotlib: its import and font cache stay off `pytest --help`,
    # collection, --no-report runs and every test that draws nothing.
    import matplotlib.patches
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, matplotlib


@functools.cache
def _glyphs(path: str) -> frozenset[int]:
    """The code points the font file at `path` draws."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file matplotlib lists but cannot read
        return frozenset()


@functools.cache
def _font_for(text: str) -> str | None:
    """The family of an installed font that draws every character of `text`: "" when matplotlib's
    default font does, None when no installed font does."""
    from matplotlib import font_manager

    needed = {ord(char) for char in text if not char.isspace()}
    missing = needed - _glyphs(font_manager.findfont(font_manager.FontProperties()))
    if not missing:
        return ""
    for entry in font_manager.fontManager.ttflist:  # e.g. Noto Sans CJK where the system has it
        # Last Resort (bundled with matplotlib) maps every code point to a box that names its block: no name.
        if entry.style == "normal" and not entry.name.startswith("Last Resort") and missing <= _glyphs(entry.fname):
            return entry.name
    return None


def chart_text(texts: Sequence[str], placeholder: str) -> tuple[list[str], list[str]]:
    """Labels for `texts` (model names, lanes) on a chart, and the font families to draw them with.

    A name in a script the default font lacks (CJK, Arabic...) gets an installed font that has its glyphs,
    after the default (matplotlib falls back glyph by glyph); with none, the chart says `<placeholder> N`
    and the report names it (`chart_names`). Never empty boxes, nor matplotlib's missing-glyph warning,
    which `filterwarnings = error` turns into a lost report."""
    from matplotlib import rcParams

    labels = [f"{placeholder} {index + 1}" if _font_for(text) is None else text for index, text in enumerate(texts)]
    fallbacks = dict.fromkeys(font for text in texts if (font := _font_for(text)))  # cached; in order, once each
    return labels, [*rcParams["font.family"], *fallbacks]


def chart_names(names: Sequence[str], placeholder: str = "model") -> dict[str, str]:
    """The names that the charts show as `<placeholder> N` (see `chart_text`), with that label."""
    labels, _ = chart_text(names, placeholder)
    return {name: label for name, label in zip(names, labels, strict=True) if name != label}


@contextlib.contextmanager
def chart_warnings() -> Iterator[list[str]]:
    """Collect warnings (matplotlib's about fonts, layouts...) instead of raising them: under `filterwarnings =
    error` one would end the report, and the chart is still worth having. Yields their distinct messages."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield notes
        finally:
            notes += dict.fromkeys(str(warning.message) for warning in caught)


def _figure(width: float, height: float, columns: int = 1):
    figure, _ = new_figure(width, height)
    return figure, figure.subplots(1, columns, sharey=True, squeeze=False)[0]


def spans_decades(values: Sequence[float]) -> bool:
    """Whether positive values range over a factor of 10 or more: a linear axis would flatten the small
    ones against zero (a 33 ms deadline next to a 27 s bar)."""
    positive = [value for value in values if value > 0]
    return bool(positive) and max(positive) >= 10 * min(positive)


def save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def wall_and_speedup_figure(measurements: Sequence[Measurement], title: str):
    """Horizontal bars: median wall time, and speedup over the `serial` baseline of the same runs."""
    if not measurements:
        raise ValueError(f"{title}: no measurements to chart.")
    base = baseline(measurements)
    labels = [m.key for m in measurements]
    figure, (wall_axes, speed_axes) = _figure(11, 1.2 + 0.35 * len(labels), 2)
    positions = range(len(labels))
    # Whiskers: the fastest and slowest round; on the speedups, their bootstrap interval.
    wall_axes.barh(positions, [m.timing.wall_s for m in measurements], color="tab:blue", ecolor="0.3", capsize=2,
                   xerr=[[m.timing.wall_s - min(m.timing.rounds_wall_s or [m.timing.wall_s]) for m in measurements],
                         [max(m.timing.rounds_wall_s or [m.timing.wall_s]) - m.timing.wall_s for m in measurements]])
    wall_axes.set_yticks(positions, labels)
    wall_axes.invert_yaxis()
    wall_axes.set_xlabel("wall time (s), median of the timed rounds\nwhiskers: fastest and slowest round")
    if base is not None:
        ratios = [speedup(base, m) for m in measurements]
        speed_axes.barh(positions, [ratio.value for ratio in ratios], ecolor="0.3", capsize=2,
                        color=["tab:gray" if ratio.within_noise else "tab:green" for ratio in ratios],
                        xerr=[[ratio.value - ratio.low if ratio.judged else 0.0 for ratio in ratios],
                              [ratio.high - ratio.value if ratio.judged else 0.0 for ratio in ratios]])
        speed_axes.axvline(1.0, color="0.4", linewidth=0.8)
        speed_axes.set_xlabel(f"speedup over {base.key}\nwhiskers: {CONFIDENCE:.0%} CI; grey: within noise")
    else:
        speed_axes.set_xlabel("speedup: no serial run to compare with")
    figure.suptitle(title, fontsize=10)
    return figure


def latency_figure(measurements: Sequence[Measurement], title: str):
    """Grouped bars of latency p50/p90/p99 per strategy, with the deadline as a line; a log axis where the
    values span decades, so both a deadline of a few ms and a late strategy's seconds stay visible."""
    rows = [m for m in measurements if m.latency.p50_s is not None]
    if not rows:
        raise ValueError(f"{title}: no measurement has per-frame latency.")
    figure, (axes,) = _figure(11, 1.6 + 0.5 * len(rows))
    height = 0.27
    values = []
    for offset, (name, colour) in enumerate((("p50", "tab:blue"), ("p90", "tab:orange"), ("p99", "tab:red"))):
        milliseconds = [getattr(m.latency, f"{name}_s") * 1000 for m in rows]
        values += milliseconds
        axes.barh([index + (offset - 1) * height for index in range(len(rows))], milliseconds, height=height,
                  color=colour, label=name)
    deadline = rows[0].latency.deadline_s
    if deadline is not None:
        values.append(deadline * 1000)
        axes.axvline(deadline * 1000, color="black", linestyle="--", linewidth=1.2,
                     label=f"deadline {deadline * 1000:.0f} ms (one period)")
    if spans_decades(values):
        axes.set_xscale("log")
        axes.set_xlim(min(value for value in values if value > 0) / 2, max(values) * 2)
    axes.set_yticks(range(len(rows)), [m.key for m in rows])
    axes.invert_yaxis()
    axes.set_xlabel("latency (ms) from frame arrival to every model done" +
                    (", log scale" if axes.get_xscale() == "log" else ""))
    figure.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)  # never over a bar
    axes.set_title(title, fontsize=10)
    return figure


@dataclass(frozen=True)
class TrendPoint:
    run: str  # label of the saved run (its date and time)
    seconds: float  # the benchmark's median round time in that run


#: Every marker, line style and colour, the colour changing fastest: 280 distinct styles for the series of a chart.
STYLES = [{"marker": marker, "linestyle": line, "color": f"tab:{colour}"} for marker, line, colour in itertools.product(
    "os^DvPX", ("-", "--", ":", "-."), ("blue", "orange", "green", "red", "purple", "brown", "pink", "gray", "olive", "cyan"))]


def series_style(index: int) -> dict[str, str]:
    return STYLES[index % len(STYLES)]


def trend_figure(series: dict[str, list[TrendPoint]], runs: Sequence[str], title: str):
    """One line per benchmark across the saved runs, in the order given; the legend below the plot."""
    if not series:
        raise ValueError(f"{title}: no benchmark to chart.")
    columns = 3 if len(series) > 12 else 2
    legend_rows = -(-len(series) // columns)
    figure, (axes,) = _figure(12, 4.5 + 0.2 * legend_rows)
    position = {run: index for index, run in enumerate(runs)}
    values = []
    for index, (name, points) in enumerate(series.items()):
        values += [point.seconds for point in points]
        label = name.removeprefix("test_strategy[").removesuffix("]")  # the benchmark id is what tells them apart
        axes.plot([position[point.run] for point in points], [point.seconds for point in points], label=label,
                  markersize=4, **series_style(index))
    axes.set_xticks(range(len(runs)), runs, rotation=30, ha="right", fontsize=8)
    if spans_decades(values):
        axes.set_yscale("log")
        axes.set_ylabel("median round time (s), log scale")
    else:
        axes.set_ylim(bottom=0)
        axes.set_ylabel("median round time (s)")
    figure.legend(loc="outside lower center", ncols=columns, fontsize=7, frameon=False)
    axes.set_title(title, fontsize=10)
    return figure
