"""The results tables, in the write-up's shape plus throughput, speedup, latency and resources.

One timing table per scenario (speedups are against `serial` of the same scenario), then one
resources table. The same cells render as plain text (terminal) or Markdown (report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from strategies.equivalence import ModelCheck

from .results import Measurement

MB = 1024 * 1024
Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def baseline(measurements: Sequence[Measurement]) -> Measurement | None:
    """What speedups are measured against: `serial` with onnxruntime's defaults, as the
    write-up ran it, else the first `serial` run."""
    serial = [m for m in measurements if m.strategy == "serial"]
    defaults = [m for m in serial if m.ort_defaults]
    return (defaults or serial or [None])[0]


def scenario_title(m: Measurement) -> str:
    return "offline" if m.target_fps is None else f"streaming at {m.target_fps:g} fps"


def by_scenario(measurements: Sequence[Measurement]) -> dict[str, list[Measurement]]:
    """Measurements grouped by scenario, in order of first appearance."""
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(scenario_title(m), []).append(m)
    return groups


def _number(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _latency(m: Measurement) -> str:
    if not m.per_frame:
        return "n/a (no per-frame completion)"
    if m.latency_p50_s is None:
        return "-"
    return " / ".join(_number(value, 1000) for value in (m.latency_p50_s, m.latency_p90_s, m.latency_p99_s))


def _misses(m: Measurement) -> str:
    if not m.per_frame:
        return "n/a"
    return "-" if m.deadline_misses is None else f"{m.deadline_misses}/{m.latency_frames}"


def _gpu_util(m: Measurement) -> str:
    return "-" if m.gpu_util_mean is None else f"{m.gpu_util_mean:.0f} / {m.gpu_util_max:.0f}"


def _sampler(m: Measurement) -> str:
    if not m.sampler_rate_hz:
        return "off"
    return f"{m.sampler_samples}" + ("" if m.sampler_cpu_s is None else f" ({m.sampler_cpu_s * 1000:.0f} ms)")


def timing_table(title: str, measurements: Sequence[Measurement]) -> Table:
    base = baseline(measurements)
    streaming = measurements[0].target_fps is not None
    header = ["strategy", "settings", "cumulative per model (s)", "wall (s)", "GPU MB", "GPU util % mean/max",
              "fps", "overlap", f"x {base.key}" if base else "speedup",
              "latency p50/p90/p99 (ms)" if streaming else "frame done p50/p90/p99 (ms)"]
    header += ["deadline misses"] if streaming else []
    header += ["efficiency", "equal to serial"]
    rows = []
    for m in measurements:
        row = [m.strategy, m.settings, " / ".join(f"{t:.2f}" for t in m.per_model_cumulative_s), f"{m.wall_s:.3f}",
               _number(m.gpu_memory_peak_bytes, 1 / MB, 0), _gpu_util(m), f"{m.fps:.1f}", f"{m.overlap:.2f}",
               f"{base.wall_s / m.wall_s:.2f}" if base and m.wall_s > 0 else "-", _latency(m)]
        row += [_misses(m)] if streaming else []
        row += [f"{m.efficiency:.0%}" if m.efficiency is not None else "-", "yes" if m.equivalent else "NO"]
        rows.append(row)
    return title, header, rows


def resources_table(measurements: Sequence[Measurement]) -> Table:
    header = ["strategy", "settings", "scenario", "CPU % mean/max", "peak PSS MB", "peak USS MB", "GPU MB (device)",
              "samples (sampler CPU)"]
    rows = [[m.strategy, m.settings, scenario_title(m),
             "-" if m.cpu_util_mean is None else f"{m.cpu_util_mean * 100:.0f} / {m.cpu_util_max * 100:.0f}",
             _number(m.peak_pss_bytes, 1 / MB, 0), _number(m.peak_uss_bytes, 1 / MB, 0),
             _number(m.gpu_device_memory_peak_bytes, 1 / MB, 0), _sampler(m)]
            for m in measurements]
    return "resources during the timed rounds (process tree)", header, rows


def tables(measurements: Sequence[Measurement]) -> list[Table]:
    return [timing_table(title, group) for title, group in by_scenario(measurements).items()] + \
        [resources_table(measurements)]


def caption(measurements: Sequence[Measurement]) -> str:
    first = measurements[0]
    return (f"{len(first.models)} models x {first.frames} frames, batch {first.batch}, provider {first.provider} "
            f"(median of the timed rounds; latency over every timed round's frames)")


def preamble(measurements: Sequence[Measurement]) -> list[str]:
    """The models (in the per-model column's order, with FLOPs where known) and the packing limit."""
    first = measurements[0]
    flops = first.model_flops or [None] * len(first.models)
    lines = ["models, in the order of the per-model column: " + " / ".join(
        name if count is None else f"{name} ({count / 1e9:.2f} GFLOP per call)"
        for name, count in zip(first.models, flops, strict=True))]
    if first.limit_s is not None:
        basis = ("each model's time alone on the GPU, summed" if first.provider == "cuda" else
                 "each model's single-thread time, summed, over the usable cores")
        lines.append(f"packing limit {first.limit_s:.3f} s ({basis}); efficiency = limit / wall (offline)")
    if first.tolerance:
        lines.append(f"equal to serial: every frame's outputs within {first.tolerance}")
    # The measured check of each model: noise floor, how far apart frames are, the tolerance between.
    lines += [f"equivalence {ModelCheck.from_dict(name, check).line()}"
              for name, check in first.equivalence.get("models", {}).items()]
    return lines


OVER_LIMIT = 1.05  # efficiency beyond this cannot be real; below it, timer noise


def notes(measurements: Sequence[Measurement]) -> list[str]:
    """Why some cells are empty or suspect: each distinct reason once."""
    lines = []
    over = [m for m in measurements if m.efficiency is not None and m.efficiency > OVER_LIMIT]
    if any(m.provider == "cuda" for m in over):
        # On one GPU a model's call alone leaves the device idle during its copies and launches;
        # concurrent models fill those gaps, so beating the limit is real there.
        lines.append("efficiency above 100% on CUDA: the models' CPU-side work (copies, kernel launches) overlapped "
                     "the GPU's work, which the limit (each model's whole call, run alone) cannot.")
    if any(m.provider != "cuda" for m in over):
        # No run can beat perfect packing on CPU cores: the limit was measured while the machine was busier.
        lines.append("efficiency above 100%: the machine was busier while the packing limit was measured than "
                     "during those runs (another job on the cores?); rerun on a quiet machine to trust it.")
    for reason in dict.fromkeys(m.gpu_absent for m in measurements if m.gpu_absent):
        lines.append(f"GPU metrics absent: {reason}.")
    if any(not m.sampler_rate_hz for m in measurements):
        lines.append("resource sampling was off (--no-sampler) for some rows.")
    return lines


def _render(table: Table, line: Callable[[list[str], list[int]], str], rule: Callable[[list[int]], str]) -> list[str]:
    _, header, rows = table
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [line(header, widths), rule(widths), *(line(row, widths) for row in rows)]


def format_table(measurements: Sequence[Measurement]) -> str:
    """Plain-text tables for the terminal."""
    if not measurements:
        return "fanbench: no strategy was measured."
    lines = [f"fanbench: {caption(measurements)}", *preamble(measurements)]
    for table in tables(measurements):
        lines += ["", f"{table[0]}:"]
        lines += _render(table, lambda cells, widths: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)),
                         lambda widths: "  ".join("-" * w for w in widths))
    lines += [f"note: {note}" for note in notes(measurements)]
    return "\n".join(lines)


def _markdown_row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"


def markdown_tables(measurements: Sequence[Measurement]) -> str:
    """The same tables in Markdown, each under a heading."""
    if not measurements:
        return "No strategy was measured."
    lines = [caption(measurements).capitalize() + ".", "", *(f"- {line}" for line in preamble(measurements))]
    for table in tables(measurements):
        lines += ["", f"### {table[0].capitalize()}", ""]
        lines += _render(table, _markdown_row, lambda widths: "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if notes(measurements):
        lines += ["", *(f"- {note}" for note in notes(measurements))]
    return "\n".join(lines)
