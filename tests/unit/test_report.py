"""The report rendered from saved history (checked-in files made by a real small run, trimmed)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from bench.compare.saved import load_run, same_workload_runs
from bench.interrupts import Terminated, sigterm_as_interrupt
from bench.measure.measurement import PARTS, SCHEMA_VERSION, V1_PLACES, HistoryError, Measurement, stored
from bench.report import markdown, summary
from bench.report.charts import TrendPoint, latency_figure, trend_figure, wall_and_speedup_figure
from bench.report.markdown import main, trend_series, write_report
from bench.report.table import format_table
from tests.helpers.measurements import changed

DATA = Path(__file__).parents[1] / "data"
FIRST, SECOND = DATA / "history_small_1.json", DATA / "history_small_2.json"
MAIN = DATA / "history_main.json"  # saved by main just before the renovation (schema 0)


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
    assert [m.settings.scenario for m in measurements] == ["offline", "streaming"] * 2
    assert [m.timing.wall_s for m in measurements] == [bench["extra_info"]["wall_s"] for bench in saved]
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
    assert f"| {serial.timing.wall_s:.3f}" in text
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


def test_a_reused_report_directory_holds_exactly_the_last_report(tmp_path):
    write_report(load_run(FIRST).measurements(), tmp_path)  # both scenarios: a latency chart, 4 timelines
    (tmp_path / "trend.png").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("the user's own file")
    write_report(load_run(FIRST).measurements()[:1], tmp_path)  # offline serial only
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file()) == [
        "notes.txt", "report.md", "timelines/offline-serial-ort-defaults.png", "wall-speedup-offline.png"]


def test_the_report_carries_the_recommendation_lines(tmp_path):
    measurements = load_run(FIRST).measurements()
    text = write_report(measurements, tmp_path).read_text()
    section = text.split("## Recommendation\n\n")[1].split("\n\n")[0].splitlines()
    assert section[0].startswith("- fanbench recommends ")
    assert section[-1].startswith("- for a 25 fps stream fanbench recommends ")


def test_the_latency_chart_uses_a_log_axis_where_latencies_span_decades_so_the_deadline_shows():
    fast, late = load_run(FIRST).measurements()[1], load_run(FIRST).measurements()[3]
    assert fast.latency.deadline_s == 0.04
    fast, late = replace_latency(fast, 0.030, 0.035, 0.104), replace_latency(late, 5.0, 20.0, 27.0)
    axes = latency_figure([fast, late], "t").axes[0]
    assert axes.get_xscale() == "log"
    low, high = axes.get_xlim()
    assert low < 30  # the 30 ms bar, the 40 ms deadline and the 27 s bar all lie inside the axis
    assert high > 27000
    assert legend_inside_figure(latency_figure([fast, late], "t"))
    close = [replace_latency(fast, 0.030, 0.035, 0.038), replace_latency(late, 0.031, 0.036, 0.039)]
    assert latency_figure(close, "t").axes[0].get_xscale() == "linear"  # within one decade: linear reads best


def test_the_speedup_bars_carry_their_interval_and_grey_out_a_speedup_within_noise():
    serial = load_run(FIRST).measurements()[0]
    rows = [changed(serial, rounds_wall_s=[1.98, 2.0, 2.02], wall_s=2.0),
            changed(serial, strategy="threads", rounds_wall_s=[0.99, 1.0, 1.01], wall_s=1.0),
            changed(serial, strategy="asyncio", rounds_wall_s=[1.5, 1.9, 2.4], wall_s=1.9)]
    wall_axes, speed_axes = wall_and_speedup_figure(rows, "t").axes
    bars = list(speed_axes.patches)
    assert [round(bar.get_width(), 2) for bar in bars] == [1.0, 2.0, 1.05]
    assert [bar.get_facecolor() for bar in bars][2] != bars[1].get_facecolor()  # asyncio's 1.05x is within noise
    assert len(whiskers(speed_axes)) == 3  # an interval per bar
    assert [round(x, 2) for (x, _), _ in whiskers(wall_axes)] == [1.98, 0.99, 1.5]  # from each fastest round


def whiskers(axes) -> list:
    from matplotlib.container import ErrorbarContainer

    (errorbars,) = [container for container in axes.containers if isinstance(container, ErrorbarContainer)]
    return errorbars.lines[2][0].get_segments()


def replace_latency(m, p50, p90, p99):
    return replace(m, latency=replace(m.latency, p50_s=p50, p90_s=p90, p99_s=p99))


def legend_inside_figure(figure) -> bool:
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    legend = (figure.legends or [axes.get_legend() for axes in figure.axes if axes.get_legend()])[0]
    box, page = legend.get_window_extent(renderer), figure.bbox
    return page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1


def test_a_trend_with_many_series_stays_readable():
    runs = [f"2026-11-{day:02d} 10:00:00" for day in range(1, 6)]
    series = {f"test_strategy[strategy{index}-intra1-inter1-spin0-offline]":
              [TrendPoint(run, 0.5 + index * 0.1 + day * 0.01) for day, run in enumerate(runs)] for index in range(34)}
    figure = trend_figure(series, runs, "t")
    lines = figure.axes[0].get_lines()
    assert len(lines) == 34
    assert len({(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}) == 34
    assert len(figure.legends[0].get_texts()) == 34
    assert legend_inside_figure(figure)
    assert figure.axes[0].get_yscale() == "linear"  # 0.5 .. 3.9 s: within one decade


def test_a_trend_joins_only_runs_of_the_latest_runs_workload(tmp_path):
    data = json.loads(FIRST.read_text())
    for bench in data["benchmarks"]:
        bench["extra_info"]["frames"] = 40
    other = tmp_path / "0000_forty_frames.json"
    other.write_text(json.dumps(data))
    kept, left_out = same_workload_runs([load_run(other), load_run(FIRST), load_run(SECOND)])
    assert [run.path for run in kept] == [FIRST, SECOND]
    assert left_out == ["0000_forty_frames.json: other workload (frames: 40 -> 3)"]


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
    other.write_text(json.dumps({"datetime": "2026-01-01T00:00:00", "benchmarks": [
        {"name": "x", "fullname": "x", "stats": {"median": 1.0}, "extra_info": {}}]}))
    assert "holds no fanbench benchmark" in run_failing([str(other), "--out", str(tmp_path / "out")], capsys)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    error = run_failing([str(broken), "--out", str(tmp_path / "out")], capsys)
    assert f"warning: {broken}: cannot read a history file" in error
    assert "error: no history file given reads; nothing to report." in error


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
    measurement = Measurement.from_extra_info({**old, "added_by_a_later_version": 1})
    assert (measurement.settings.scenario, measurement.latency.p50_s, measurement.timing.timeline) == ("offline", None, {})


def test_extra_info_that_is_not_a_measurement_is_an_error():
    with pytest.raises(HistoryError, match="bench-x: extra_info is not a fanbench measurement"):
        Measurement.from_extra_info({"strategy": "serial"}, "bench-x")


def test_a_run_saved_before_the_schema_version_loads_and_keeps_its_keys():
    benchmarks = json.loads(MAIN.read_text())["benchmarks"]
    for bench in benchmarks:
        saved = bench["extra_info"]
        assert "schema_version" not in saved  # schema 0
        again = Measurement.from_extra_info(saved, bench["name"]).extra_info()
        assert again["schema_version"] == SCHEMA_VERSION
        # Saved again as schema 2, every flat key but per_frame (always true, dropped) is in its part, unchanged.
        for key, value in saved.items():
            if key in V1_PLACES:
                part, name = V1_PLACES[key]
                assert again[part][name] == value == stored(again, part, name) == stored(saved, part, name), key
            elif key != "per_frame":
                assert again[key] == value, key
    assert {"harness_overhead", "bare_loop_s"} <= set(benchmarks[0]["extra_info"])  # serial, offline


@pytest.mark.parametrize("path", sorted(DATA.glob("history_*.json")), ids=lambda path: path.name)
def test_every_committed_flat_history_loads_into_the_parts_with_its_values(path):
    for bench in json.loads(path.read_text())["benchmarks"]:
        saved, m = bench["extra_info"], Measurement.from_extra_info(bench["extra_info"], bench["name"])
        assert saved.get("schema_version", 0) < 2  # flat: schema 0 or 1
        # A few fields of each part, named, against the flat JSON ...
        assert (m.strategy, m.settings.label, m.settings.frames, m.settings.models, m.settings.thread_settings) == \
            (saved["strategy"], saved["settings"], saved["frames"], saved["models"], saved["thread_settings"])
        assert (m.timing.wall_s, m.timing.rounds_wall_s, m.timing.per_model_cumulative_s, m.timing.timeline) == \
            (saved["wall_s"], saved["rounds_wall_s"], saved["per_model_cumulative_s"], saved["timeline"])
        assert (m.latency.frames, m.latency.p50_s, m.latency.p99_s, m.latency.deadline_s, m.latency.misses) == \
            (saved["latency_frames"], saved["latency_p50_s"], saved["latency_p99_s"], saved["deadline_s"],
             saved["deadline_misses"])
        assert (m.resources.samples, m.resources.peak_uss_bytes, m.resources.cpu_util_mean, m.resources.gpu_absent) == \
            (saved["sampler_samples"], saved["peak_uss_bytes"], saved["cpu_util_mean"], saved["gpu_absent"])
        assert (m.equivalence.equivalent, m.equivalence.mismatch, m.equivalence.calibration) == \
            (saved["equivalent"], saved["mismatch"], saved.get("equivalence", {}))
        # ... and every flat key the file has, through the one table.
        for key, (part, name) in V1_PLACES.items():
            if key in saved:
                assert getattr(getattr(m, part), name) == saved[key], key
        assert set(saved) - set(V1_PLACES) <= {"strategy", "per_frame"}


GPU_RUNS = sorted((DATA.parents[1] / "docs" / "gpu-runs").glob("*/*.json.gz"))  # saved with schema 1 on H100 / H200


@pytest.mark.parametrize("path", GPU_RUNS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_the_documented_gpu_runs_still_load_and_tabulate(path):
    benchmarks = json.loads(gzip.decompress(path.read_bytes()))["benchmarks"]
    measured = [bench for bench in benchmarks if "strategy" in bench.get("extra_info", {})]
    assert measured
    rows = []
    for bench in measured:
        saved, m = bench["extra_info"], Measurement.from_extra_info(bench["extra_info"], bench["name"])
        assert saved["schema_version"] == 1
        for key, (part, name) in V1_PLACES.items():
            if key in saved:
                assert getattr(getattr(m, part), name) == saved[key], key
        assert (m.strategy, m.capacity, m.strategy_info) == (saved["strategy"], saved.get("capacity", {}),
                                                             saved.get("strategy_info", {}))
        assert (m.settings.label, m.timing.wall_s, m.latency.p99_s, m.resources.gpu_util_mean, m.equivalence.tolerance) \
            == (saved["settings"], saved["wall_s"], saved["latency_p99_s"], saved["gpu_util_mean"], saved["tolerance"])
        rows.append(m)
    assert "cuda" in format_table(rows)  # every reader of the parts runs on them


def test_a_measurement_goes_through_schema_2_json_and_back_unchanged():
    for m in [*load_run(MAIN).measurements(), *load_run(FIRST).measurements()]:
        info = json.loads(json.dumps(m.extra_info()))
        assert info["schema_version"] == 2
        assert all(isinstance(info.get(part), dict) for part in PARTS)
        assert not set(V1_PLACES) - set(PARTS) & set(info)  # no flat key left at the top
        assert Measurement.from_extra_info(info) == m


def test_a_schema_2_record_with_a_part_that_is_no_object_is_no_measurement():
    info = load_run(MAIN).measurements()[0].extra_info()
    with pytest.raises(HistoryError, match=r"bench-x: extra_info is not a fanbench measurement \(latency is list"):
        Measurement.from_extra_info({**info, "latency": [1, 2]}, "bench-x")
    with pytest.raises(HistoryError, match="bench-x: extra_info is not a fanbench measurement"):
        Measurement.from_extra_info({key: value for key, value in info.items() if key != "timing"}, "bench-x")


def test_a_measurement_of_a_newer_schema_is_refused_in_one_line():
    assert SCHEMA_VERSION + 1 == 3
    flat = {**json.loads(MAIN.read_text())["benchmarks"][0]["extra_info"], "schema_version": SCHEMA_VERSION + 1}
    nested = {**load_run(MAIN).measurements()[0].extra_info(), "schema_version": SCHEMA_VERSION + 1}
    for info in (flat, nested):
        with pytest.raises(HistoryError, match=f"bench-x: saved with measurement schema {SCHEMA_VERSION + 1}, newer"):
            Measurement.from_extra_info(info, "bench-x")


def test_a_report_that_cannot_be_written_at_the_end_is_one_line_and_the_summary_goes_on(tmp_path, monkeypatch):
    """The disk filled during the run (--report-dir itself is checked before it): one line, no traceback
    that would cut off the recommendation and gate lines printed after the report."""

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    class Reporter:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def write_line(self, line: str, **markup) -> None:
            self.lines.append(line)

    monkeypatch.setattr(summary, "stage_report", disk_full)
    reporter = Reporter()
    summary.report_line(reporter, load_run(FIRST).measurements(), tmp_path / "report")
    assert reporter.lines == [f"fanbench: could not write the report to {tmp_path / 'report'}: "
                              "[Errno 28] No space left on device"]


def report_files(directory: Path) -> dict[str, bytes]:
    return {path.relative_to(directory).as_posix(): path.read_bytes() for path in directory.rglob("*") if path.is_file()}


@pytest.mark.parametrize("error", [Terminated("received SIGTERM"), KeyboardInterrupt(), OSError(28, "No space left")],
                         ids=["SIGTERM", "Ctrl-C", "disk-full"])
def test_a_report_cut_short_leaves_the_previous_report_whole(tmp_path, monkeypatch, error):
    write_report(load_run(FIRST).measurements(), tmp_path)
    (tmp_path / "notes.txt").write_text("the user's own file")
    before = report_files(tmp_path)
    drawn = []

    def timeline_then_stop(*args, **kwargs):  # the second timeline never comes: the report is half written
        if drawn:
            raise error
        drawn.append(markdown.render_timeline.__wrapped__(*args, **kwargs))
        return drawn[-1]

    timeline_then_stop.__wrapped__ = markdown.render_timeline
    monkeypatch.setattr(markdown, "render_timeline", timeline_then_stop)
    with pytest.raises(type(error)):
        write_report(load_run(SECOND).measurements(), tmp_path)
    assert report_files(tmp_path) == before  # nothing of the new report, not a file of the old one lost
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no staging folder


def test_a_report_is_swapped_in_whole_and_a_signal_then_waits_for_it(tmp_path, monkeypatch):
    write_report(load_run(FIRST).measurements(), tmp_path)
    replace = os.replace

    def replace_and_signal(source, target):  # SIGTERM in the middle of the renames
        replace(source, target)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(markdown.os, "replace", replace_and_signal)
    with sigterm_as_interrupt(), pytest.raises(Terminated):  # acted on once the new report is in place
        write_report(load_run(FIRST).measurements()[:1], tmp_path)
    assert sorted(report_files(tmp_path)) == ["report.md", "timelines/offline-serial-ort-defaults.png",
                                              "wall-speedup-offline.png"]


def test_a_signal_while_the_report_is_written_is_one_line_and_said_to_the_summary(tmp_path, monkeypatch):
    class Reporter:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def write_line(self, line: str, **markup) -> None:
            self.lines.append(line)

    def terminated(*args, **kwargs):
        raise Terminated("received SIGTERM")

    monkeypatch.setattr(summary, "stage_report", terminated)
    reporter = Reporter()
    assert summary.report_line(reporter, load_run(FIRST).measurements(), tmp_path) == "received SIGTERM"
    assert reporter.lines == [f"fanbench: received SIGTERM while the report was written: none written, {tmp_path} "
                              "keeps what it held; python -m bench.report on the saved run writes it."]
