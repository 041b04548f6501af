"""A run's timeline as a PNG: one lane per thread, process or event loop, each call a bar.

Under `serial` and `asyncio` every call sits on one lane, one after another; under `threads` or
`processes` the lanes' bars overlap in time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report.charts import chart_text, new_figure, save

# Arrival marks are drawn only while they stay readable.
MAX_ARRIVAL_MARKS = 200


def render_timeline(data: dict[str, Any], models: list[str], title: str, path: Path) -> Path:
    """Write the timeline stored by `bench.measure.metrics.timeline` to `path` (PNG)."""
    lanes: list[str] = data.get("lanes", [])
    if not lanes:
        raise ValueError(f"{title}: the timeline has no calls to draw.")
    figure, matplotlib = new_figure(11, 1.4 + 0.45 * len(lanes))
    colours = matplotlib.colormaps["tab10"]
    axes = figure.subplots()
    bars: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for model, lane, start, end in zip(data["model"], data["lane"], data["start"], data["end"], strict=True):
        bars.setdefault((lane, model), []).append((start, end - start))
    for (lane, model), spans in bars.items():
        axes.broken_barh(spans, (lane - 0.4, 0.8), facecolors=colours(model % colours.N),
                          edgecolors="white", linewidth=0.3)  # a hairline between back-to-back calls
    period = data.get("period_s") or 0.0
    frame_count = max((first + count for first, count in zip(data["first_frame"], data["frames"], strict=True)), default=0)
    if period > 0 and frame_count <= MAX_ARRIVAL_MARKS:
        axes.vlines([frame * period for frame in range(frame_count)], -0.5, len(lanes) - 0.5, colors="0.75",
                    linewidth=0.6, zorder=0)
        axes.set_xlabel("seconds since the run started (grey lines: frame arrivals)")
    else:
        axes.set_xlabel("seconds since the run started")
    lane_labels, lane_fonts = chart_text(lanes, "lane")
    axes.set_yticks(range(len(lanes)), lane_labels, fontfamily=lane_fonts)
    axes.set_ylim(len(lanes) - 0.5, -0.5)
    axes.set_xlim(0, max(data.get("wall_s") or 0.0, max(data["end"])))
    axes.set_title(title, fontsize=10)
    used = sorted({model for model in data["model"]})
    names, fonts = chart_text(models, "model")  # a name in a script no installed font draws: "model N"
    handles = [matplotlib.patches.Patch(color=colours(model % colours.N),
                                        label=names[model] if model < len(names) else f"model {model + 1}") for model in used]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                prop={"family": fonts, "size": 8})
    return save(figure, path)
