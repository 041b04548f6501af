"""The report rendered from saved history (checked-in files made by a real small run, trimmed)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from bench.report import HistoryError, load_run, main, measurement_from_info, trend_series, write_report

DATA = Path(__file__).parent / "data"
FIRST, SECOND = DATA / "history_small_1.json", DATA / "history_small_2.json"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's signature and IHDR chunk; fails on anything else."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_a_saved_run_gives_back_its_measurements():
    run = load_run(FIRST)
    measurements = run.measurements()
    saved = json.loads(FIRST.read_text())["benchmarks"]
    assert [m.key for m in measurements] == ["serial-ort-defaults", "serial-ort-defaults",
                                            "threads-intra1-inter1-spin0", "threads-intra1-inter1-spin0"]
    assert [m.scenario for m in measurements] == ["offline", "streaming"] * 2
    assert [m.wall_s for m in measurements] == [bench["extra_info"]["wall_s"] for bench in saved]
    assert run.machine == "vm (AMD EPYC)"
    assert run.label == json.loads(FIRST.read_text())["datetime"][:19].replace("T", " ")


def test_the_report_from_history_has_the_tables_charts_and_a_timeline_per_benchmark(tmp_path):
    measurements = load_run(FIRST).measurements()
    report = write_report(measurements, tmp_path, context=["from a test"])
    text = report.read_text()
    serial = measurements[0]
    assert "### Offline" in text
    assert "### Streaming at 25 fps" in text
    assert "| serial   | ort-defaults" in text
    assert f"| {serial.wall_s:.3f}" in text
    assert "latency p50/p90/p99 (ms)" in text
    assert "deadline misses" in text
    assert "GPU metrics absent: the workload runs on the 'cpu' provider, not on a GPU." in text
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len([image for image in images if image.startswith("timelines/")]) == 4
    assert {"wall-speedup-offline.png", "wall-speedup-streaming_at_25_fps.png", "latency-streaming_at_25_fps.png"} <= set(images)
    for image in images:
        width, height = png_size(tmp_path / image)
        assert 800 <= width <= 1600, f"{image}: {width}x{height}"
        assert 100 <= height <= 1200, f"{image}: {width}x{height}"


def test_a_reused_report_directory_keeps_no_stale_timelines(tmp_path):
    stale = tmp_path / "timelines" / "offline-gone-strategy.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    write_report(load_run(FIRST).measurements()[:1], tmp_path)
    assert [path.name for path in (tmp_path / "timelines").iterdir()] == ["offline-serial-ort-defaults.png"]


def test_trend_series_follow_each_benchmark_across_runs():
    runs = [load_run(FIRST), load_run(SECOND)]
    series = trend_series(runs)
    name = "test_strategy[threads-intra1-inter1-spin0-offline]"
    assert [point.seconds for point in series[name]] == \
        [next(b["stats"]["median"] for b in json.loads(path.read_text())["benchmarks"] if b["name"] == name)
         for path in (FIRST, SECOND)]
    assert len(series) == 4


def test_the_command_renders_the_latest_run_and_the_trend(tmp_path, capsys):
    assert main([str(SECOND), str(FIRST), "--trend", "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "rebuilt from `history_small_2.json`" in text
    assert "trend over 2 saved runs" in text
    assert "![trend](trend.png)" in text
    png_size(tmp_path / "out" / "trend.png")
    assert capsys.readouterr().out == f"report written to {tmp_path / 'out' / 'report.md'}\n"


def test_a_directory_stands_for_its_history_files(tmp_path):
    for path in (FIRST, SECOND):
        (tmp_path / path.name).write_text(path.read_text())
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / "trend.png").exists()


def run_failing(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_missing_files_are_named(tmp_path, capsys):
    error = run_failing([str(tmp_path / "nowhere.json"), "--out", str(tmp_path)], capsys)
    assert "nowhere.json: no such file or directory" in error


def test_a_file_without_fanbench_benchmarks_is_refused(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"datetime": "2026-01-01T00:00:00", "benchmarks": [{"name": "x", "extra_info": {}}]}))
    assert "holds no fanbench benchmark" in run_failing([str(other), "--out", str(tmp_path / "out")], capsys)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert "cannot read a history file" in run_failing([str(broken), "--out", str(tmp_path / "out")], capsys)


def test_a_trend_across_machines_is_refused(tmp_path, capsys):
    data = json.loads(SECOND.read_text())
    data["machine_info"]["node"] = "elsewhere"
    moved = tmp_path / "0002_elsewhere.json"
    moved.write_text(json.dumps(data))
    error = run_failing([str(FIRST), str(moved), "--trend", "--out", str(tmp_path / "out")], capsys)
    assert "these files come from 2 machines: elsewhere (AMD EPYC); vm (AMD EPYC)" in error


def test_older_history_without_the_new_fields_still_loads():
    info = json.loads(FIRST.read_text())["benchmarks"][0]["extra_info"]
    old = {key: value for key, value in info.items() if key in ("strategy", "settings", "ort_defaults", "models", "frames",
                                                                 "batch", "provider", "per_model_cumulative_s", "wall_s",
                                                                 "fps", "overlap", "equivalent")}
    measurement = measurement_from_info({**old, "added_by_a_later_version": 1})
    assert (measurement.scenario, measurement.latency_p50_s, measurement.timeline) == ("offline", None, {})


def test_extra_info_that_is_not_a_measurement_is_an_error():
    with pytest.raises(HistoryError, match="bench-x: extra_info is not a fanbench measurement"):
        measurement_from_info({"strategy": "serial"}, "bench-x")


def test_a_report_that_cannot_be_written_at_the_end_is_one_line_and_the_summary_goes_on(tmp_path, monkeypatch):
    """The disk filled during the run (--report-dir itself is checked before it): one line, no traceback
    that would cut off the recommendation and gate lines printed after the report."""
    from bench import plugin

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    class Reporter:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def write_line(self, line: str, **markup) -> None:
            self.lines.append(line)

    class Config:
        def __init__(self) -> None:
            self.stash: dict = {}
            self.options = {"no_report": False, "benchmark_disable": False, "benchmark_skip": False,
                            "report_dir": str(tmp_path / "report")}

        def getoption(self, name: str):
            return self.options[name]

    monkeypatch.setattr(plugin, "write_report", disk_full)
    reporter = Reporter()
    plugin.finish(reporter, Config(), load_run(FIRST).measurements())
    assert reporter.lines == [f"fanbench: could not write the report to {tmp_path / 'report'}: "
                              "[Errno 28] No space left on device"]
