"""Timeline PNGs from fabricated call records."""

from __future__ import annotations

import struct

import matplotlib
import numpy as np
import pytest

from bench.measure.metrics import timeline
from bench.report.charts import chart_names, chart_text
from bench.report.timeline import render_timeline
from strategies import RunResult
from strategies.records import CallRecord


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def run_with(lanes: int, frames: int = 5) -> RunResult:
    calls = [CallRecord(model, frame, 1, 10.0 + frame * 0.125, 10.0 + frame * 0.125 + 0.0625, f"thread-{model % lanes}")
             for frame in range(frames) for model in range(4)]
    return RunResult([[(np.zeros(1),)] * frames for _ in range(4)], calls, 10.0, frames * 0.125)


@pytest.mark.parametrize(("lanes", "height"), [(1, 185), (4, 320)])
def test_a_timeline_is_a_png_with_one_band_per_lane(tmp_path, lanes, height):
    path = render_timeline(timeline(run_with(lanes), period=0.125), ["a", "b", "c", "d"], "threads", tmp_path / "t" / "x.png")
    data = path.read_bytes()
    assert png_size(data) == (1100, height)  # 11 x (1.4 + 0.45 per lane) inches at 100 dpi
    assert len(data) > 5000  # bars, labels and legend drawn, not an empty canvas


def test_a_timeline_without_calls_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty: the timeline has no calls to draw"):
        render_timeline({"lanes": []}, [], "empty", tmp_path / "x.png")


def test_a_model_named_in_a_script_the_default_font_lacks_is_drawn_without_a_warning(tmp_path):
    # matplotlib warns of each missing glyph; under filterwarnings = error that ended the whole report.
    path = render_timeline(timeline(run_with(2), period=0.125), ["模型", "b", "检测器", "d"], "threads", tmp_path / "x.png")
    assert png_size(path.read_bytes()) == (1100, 230)


def test_a_name_no_installed_font_draws_is_labelled_by_its_position_and_named_in_the_report():
    unknown = "\U000e0080\U000e0081"  # unassigned code points: no font draws them
    labels, families = chart_text(["det", unknown], "model")
    assert labels == ["det", "model 2"]
    assert families == list(matplotlib.rcParams["font.family"])  # no fallback font needed for the rest
    assert chart_names(["det", unknown]) == {unknown: "model 2"}
    assert chart_names(["det", "cls"]) == {}
