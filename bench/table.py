"""The terminal table, in the write-up's shape plus throughput and speedup."""

from __future__ import annotations

from collections.abc import Sequence

from .results import Measurement


def baseline(measurements: Sequence[Measurement]) -> Measurement | None:
    """What speedups are measured against: `serial` with onnxruntime's defaults, as the
    write-up ran it, else the first `serial` run."""
    serial = [m for m in measurements if m.strategy == "serial"]
    defaults = [m for m in serial if m.ort_defaults]
    return (defaults or serial or [None])[0]


def format_table(measurements: Sequence[Measurement]) -> str:
    if not measurements:
        return "fanbench: no strategy was measured."
    base = baseline(measurements)
    first = measurements[0]
    header = ["strategy", "settings", "cumulative per model (s)", "wall (s)", "fps", "overlap",
              f"x {base.key}" if base else "speedup", "efficiency", "equal to serial"]
    rows = []
    for m in measurements:
        speedup = f"{base.wall_s / m.wall_s:.2f}" if base and m.wall_s > 0 else "-"
        rows.append([m.strategy, m.settings, " / ".join(f"{t:.2f}" for t in m.per_model_cumulative_s),
                     f"{m.wall_s:.3f}", f"{m.fps:.1f}", f"{m.overlap:.2f}", speedup,
                     f"{m.efficiency:.0%}" if m.efficiency is not None else "-", "yes" if m.equivalent else "NO"])
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [f"fanbench: {len(first.models)} models x {first.frames} frames, batch {first.batch}, "
             f"provider {first.provider} (median of the timed rounds)",
             "models, in the order of the per-model column: " + " / ".join(
                 name if flops is None else f"{name} ({flops / 1e9:.2f} GFLOP per call)"
                 for name, flops in zip(first.models, first.model_flops or [None] * len(first.models), strict=True))]
    if first.limit_s is not None:
        lines.append(f"packing limit {first.limit_s:.3f} s (each model's single-thread time, summed, over the usable "
                     "cores); efficiency = limit / wall")
    lines.append("  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
