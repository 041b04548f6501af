"""The results tables, in the write-up's shape plus throughput, speedup, latency and resources.

One timing table per scenario (speedups against `serial` of the same scenario), then one resources
table, as plain text or Markdown. The terminal's fits its width, as pytest's own output does: it leaves
out the columns no row fills (the GPU columns on a CPU), wraps long headers, and splits a table still
too wide into blocks that repeat the strategy and settings. Markdown keeps every column.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from bench.measure.equivalence import ModelCheck
from bench.measure.measurement import Measurement
from bench.measure.metrics import median_ratio_interval

MB = 1024 * 1024
Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def baseline(measurements: Sequence[Measurement]) -> Measurement | None:
    """Speedups are against `serial` with onnxruntime's defaults (as the write-up ran it), else the first `serial` run."""
    serial = [m for m in measurements if m.strategy == "serial"]
    defaults = [m for m in serial if m.settings.ort_defaults]
    return (defaults or serial or [None])[0]


CONFIDENCE = 0.95  # of the speedup intervals (bootstrap over the rounds, median_ratio_interval)
NOISE_MARK = "~"  # before a ratio whose interval covers 1: within the rounds' noise, not a finding


@dataclass(frozen=True)
class Speedup:
    """How many times faster than the baseline: ratio of medians, with the bootstrap interval over both
    benchmarks' rounds (None with fewer than two rounds on either side)."""

    value: float
    low: float | None = None
    high: float | None = None

    @property
    def judged(self) -> bool:
        return self.low is not None

    @property
    def within_noise(self) -> bool:
        """The rounds' spread covers the difference: the interval includes 1."""
        return self.judged and self.low <= 1.0 <= self.high

    def text(self) -> str:
        if not self.judged:
            return f"{self.value:.2f}"
        mark = NOISE_MARK if self.within_noise else ""
        return f"{mark}{self.value:.2f} ({self.low:.2f}-{self.high:.2f})"


def speedup(base: Measurement, m: Measurement) -> Speedup:
    if m.timing.wall_s <= 0:
        return Speedup(0.0)
    value = base.timing.wall_s / m.timing.wall_s
    if m is base or len(base.timing.rounds_wall_s) < 2 or len(m.timing.rounds_wall_s) < 2:
        return Speedup(value)
    low, high = median_ratio_interval(base.timing.rounds_wall_s, m.timing.rounds_wall_s, confidence=CONFIDENCE)  # m / base
    return Speedup(value, 1 / high, 1 / low)


OVER_LIMIT = 1.05  # no efficiency beyond this is printed: it cannot be real


def limit_share_text(value: float | None) -> str:
    """A share of a limit as printed everywhere: never above 105%, and above 100% flagged as noise."""
    if value is None:
        return "-"
    if value > OVER_LIMIT:
        return "above limit"
    return f"{value:.0%}" + (" (noise)" if value > 1.0 else "")


def efficiency_text(m: Measurement) -> str:
    """None on CUDA: the packing limit is no bound there."""
    return "-" if "cuda" in m.settings.provider else limit_share_text(m.timing.efficiency)


def scenario_title(m: Measurement) -> str:
    return "offline" if m.settings.target_fps is None else f"streaming at {m.settings.target_fps:g} fps"


def by_scenario(measurements: Sequence[Measurement]) -> dict[str, list[Measurement]]:
    """Measurements grouped by scenario, in order of first appearance."""
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(scenario_title(m), []).append(m)
    return groups


def _number(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _latency(m: Measurement) -> str:
    if m.latency.p50_s is None:
        return "-"
    return " / ".join(_number(value, 1000) for value in (m.latency.p50_s, m.latency.p90_s, m.latency.p99_s))


def _mean_max(mean: float | None, peak: float | None, scale: float = 1.0) -> str:
    return "-" if mean is None else f"{mean * scale:.0f} / {peak * scale:.0f}"


def _sampler(m: Measurement) -> str:
    used = m.resources
    if not used.sampler_rate_hz:
        return "off"
    return f"{used.samples}" + ("" if used.sampler_cpu_s is None else f" ({used.sampler_cpu_s * 1000:.0f} ms)")


def timing_table(title: str, measurements: Sequence[Measurement]) -> Table:
    base = baseline(measurements)
    streaming = measurements[0].settings.target_fps is not None
    header = ["strategy", "settings", "cumulative per model (s)", "wall (s)", "GPU MB", "GPU util % mean/max",
              "fps", "overlap", f"x {base.key} ({CONFIDENCE:.0%} CI)" if base else "speedup",
              "latency p50/p90/p99 (ms)" if streaming else "frame done p50/p90/p99 (ms)"]
    header += ["deadline misses"] if streaming else []
    header += ["efficiency", "equal to serial"]
    rows = []
    for m in measurements:
        timed = m.timing
        row = [m.strategy, m.settings.label, " / ".join(f"{t:.2f}" for t in timed.per_model_cumulative_s),
               f"{timed.wall_s:.3f}", _number(m.resources.gpu_memory_peak_bytes, 1 / MB, 0),
               _mean_max(m.resources.gpu_util_mean, m.resources.gpu_util_max), f"{timed.fps:.1f}", f"{timed.overlap:.2f}",
               speedup(base, m).text() if base and timed.wall_s > 0 else "-", _latency(m)]
        row += ["-" if m.latency.misses is None else f"{m.latency.misses}/{m.latency.frames}"] if streaming else []
        row += [efficiency_text(m), "yes" if m.equivalence.equivalent else "NO"]
        rows.append(row)
    return title, header, rows


def resources_table(measurements: Sequence[Measurement]) -> Table:
    header = ["strategy", "settings", "scenario", "CPU % mean/max", "peak PSS MB", "peak USS MB", "GPU MB (device)",
              "samples (sampler CPU)"]
    rows = [[m.strategy, m.settings.label, scenario_title(m),
             _mean_max(m.resources.cpu_util_mean, m.resources.cpu_util_max, 100),
             _number(m.resources.peak_pss_bytes, 1 / MB, 0), _number(m.resources.peak_uss_bytes, 1 / MB, 0),
             _number(m.resources.gpu_device_memory_peak_bytes, 1 / MB, 0), _sampler(m)]
            for m in measurements]
    return "resources during the timed rounds (process tree)", header, rows


def tables(measurements: Sequence[Measurement]) -> list[Table]:
    return [timing_table(title, group) for title, group in by_scenario(measurements).items()] + \
        [resources_table(measurements)]


def caption(measurements: Sequence[Measurement]) -> str:
    first = measurements[0].settings
    return (f"{len(first.models)} models x {first.frames} frames, batch {first.batch}, provider {first.provider} "
            f"(median of the timed rounds; latency over every timed round's frames)")


def preamble(measurements: Sequence[Measurement]) -> list[str]:
    """The models (in the per-model column's order, with FLOPs where known) and the packing limit."""
    first = measurements[0]
    flops = first.settings.model_flops or [None] * len(first.settings.models)
    lines = ["models, in the order of the per-model column: " + " / ".join(
        name if count is None else f"{name} ({count / 1e9:.2f} GFLOP per call)"
        for name, count in zip(first.settings.models, flops, strict=True))]
    if first.timing.limit_s is not None and "cuda" in first.settings.provider:
        lines.append(f"each model alone on the GPU, summed: {first.timing.limit_s:.3f} s; not a bound on CUDA (concurrent "
                     "models overlap their copies and launches with other models' kernels), so no efficiency is "
                     "shown: GPU util % says how busy the device was")
    elif first.timing.limit_s is not None:
        lines.append(f"packing limit {first.timing.limit_s:.3f} s (each model's single-thread time, summed, over the usable "
                     "cores); efficiency = limit / wall (offline)")
    if first.equivalence.tolerance:
        lines.append(f"equal to serial: every frame's outputs within {first.equivalence.tolerance}")
    # The measured check of each model: noise floor, how far apart frames are, the tolerance between.
    lines += [f"equivalence {ModelCheck.from_dict(name, check).line()}"
              for name, check in first.equivalence.calibration.get("models", {}).items()]
    return lines


def notes(measurements: Sequence[Measurement]) -> list[str]:
    """Why some cells are empty or suspect: each distinct reason once."""
    lines = []
    if any(efficiency_text(m) == "above limit" for m in measurements):
        lines.append(f"efficiency 'above limit': more than {OVER_LIMIT:.0%} of the packing limit, which no schedule of "
                     "single-thread calls can reach: batching or merging cut the per-call cost the limit is built "
                     "from, or the machine was busier while the limit was measured; not an efficiency to act on.")
    if any(efficiency_text(m).endswith("(noise)") for m in measurements):
        lines.append("efficiency above 100% marked (noise): within timer and load noise of the limit, read as 100%.")
    if any(speedup(base, m).within_noise for group in by_scenario(measurements).values()
           if (base := baseline(group)) is not None for m in group):
        lines.append(f"{NOISE_MARK} before a speedup: its {CONFIDENCE:.0%} interval over the rounds includes 1.00, so "
                     "the rounds' spread covers the difference: within noise, not a finding.")
    for reason in dict.fromkeys(m.resources.gpu_absent for m in measurements if m.resources.gpu_absent):
        lines.append(f"GPU metrics absent: {reason}.")
    if any(not m.resources.sampler_rate_hz for m in measurements):
        lines.append("resource sampling was off (--no-sampler) for some rows.")
    return lines


EMPTY = ("-", "")  # a cell with no value
KEY_COLUMNS = 2  # strategy, settings: repeated in every block of a table split to fit
GAP = "  "


def fill(text: str, width: int | None, indent: str = "  ") -> str:
    """`text` wrapped to `width` (None: as it is); words are never broken, so a token longer than the
    width (a benchmark id, a path) stays whole on its own line."""
    if width is None:
        return text
    return textwrap.fill(text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def drop_empty_columns(table: Table) -> tuple[Table, list[str]]:
    """The table without the columns that no row fills, and their headers."""
    title, header, rows = table
    keep = [i for i in range(len(header)) if i < KEY_COLUMNS or any(row[i] not in EMPTY for row in rows)]
    dropped = [name for i, name in enumerate(header) if i not in keep]
    return (title, [header[i] for i in keep], [[row[i] for i in keep] for row in rows]), dropped


def text_blocks(table: Table, width: int | None) -> list[list[str]]:
    """The table's lines, as one block or, when wider than `width`, as several blocks of columns."""
    _, header, rows = table
    # To fit `width`, a header wraps at its spaces, down to its longest word or its widest cell.
    widths = [max(len(name) if width is None else max(map(len, name.split()), default=0), *(len(row[i]) for row in rows))
              for i, name in enumerate(header)]
    keys = list(range(min(KEY_COLUMNS, len(header))))
    blocks, current = [], list(keys)
    for i in range(len(keys), len(header)):
        if width is not None and len(current) > len(keys) and \
                sum(widths[j] for j in current) + widths[i] + len(GAP) * len(current) > width:
            blocks.append(current)
            current = [*keys]
        current.append(i)
    blocks.append(current)
    rendered = []
    for columns in blocks:
        if width is not None:  # room left in the block: headers wrap less
            room = width - sum(widths[i] for i in columns) - len(GAP) * (len(columns) - 1)
            for i in columns:
                grow = max(0, min(room, len(header[i]) - widths[i]))
                widths[i] += grow
                room -= grow
        heads = [textwrap.wrap(header[i], widths[i], break_long_words=False) or [""] for i in columns]
        lines = [GAP.join(head[line].ljust(widths[i]) if line < len(head) else " " * widths[i]
                          for head, i in zip(heads, columns, strict=True)).rstrip()
                 for line in range(max(map(len, heads)))]
        lines.append(GAP.join("-" * widths[i] for i in columns))
        lines += [GAP.join(row[i].ljust(widths[i]) for i in columns).rstrip() for row in rows]
        rendered.append(lines)
    return rendered


def table_lines(table: Table, width: int | None) -> list[str]:
    """One table for the terminal under its title, in blocks that fit `width` (None: one line per row)."""
    lines: list[str] = []
    for number, block in enumerate(text_blocks(table, width)):
        lines += ["", f"{table[0]}{' (continued)' if number else ''}:", *block]
    return lines


def format_table(measurements: Sequence[Measurement], width: int | None = None) -> str:
    """Plain-text tables for the terminal, fitted to `width` columns (None: one line per row), without
    the columns no row fills in this run (named once; the report keeps them)."""
    if not measurements:
        return "fanbench: no strategy was measured."
    lines = [fill(line, width) for line in (f"fanbench: {caption(measurements)}", *preamble(measurements))]
    left_out: dict[str, None] = {}
    for table in tables(measurements):
        table, dropped = drop_empty_columns(table)
        left_out.update(dict.fromkeys(dropped))
        lines += table_lines(table, width)
    notes_ = notes(measurements)
    if left_out:
        notes_.append(f"no value in this run, so not shown (the report keeps them): {', '.join(left_out)}.")
    lines += [fill(f"note: {note}", width) for note in notes_]
    return "\n".join(lines)


def markdown_lines(table: Table) -> list[str]:
    """The table's header, rule and rows in Markdown, without its title."""
    _, header, rows = table
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, rows)]


def markdown_tables(measurements: Sequence[Measurement]) -> str:
    """The same tables in Markdown, each under a heading."""
    if not measurements:
        return "No strategy was measured."
    lines = [caption(measurements).capitalize() + ".", "", *(f"- {line}" for line in preamble(measurements))]
    for table in tables(measurements):
        lines += ["", f"### {table[0].capitalize()}", "", *markdown_lines(table)]
    if notes_ := notes(measurements):  # once: each speedup's interval is a bootstrap
        lines += ["", *(f"- {note}" for note in notes_)]
    return "\n".join(lines)
