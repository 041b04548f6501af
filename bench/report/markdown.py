"""The report directory, after `pytest bench` or rebuilt from saved history.

    python -m bench.report .benchmarks/Linux-CPython-3.12-64bit/0003_*.json --out reports/0003
    python -m bench.report .benchmarks/Linux-CPython-3.12-64bit/ --trend --out reports/trend

The directory holds `report.md` (tables, charts, timelines), `wall-speedup-*.png` (per scenario),
`latency-*.png` (streaming latency percentiles), `timelines/*.png` (one per benchmark) and, with
`--trend`, `trend.png`; all written whole into a hidden folder inside it, then swapped in. Given several
history files (or a directory of them), the report shows the latest run and the trend chart spans the
runs of its workload.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.compare.saved import SavedRun, history_files, load_runs, same_workload_runs
from bench.interrupts import interruption, signals_held, sigterm_as_interrupt
from bench.measure.measurement import HistoryError, Measurement
from bench.report import charts
from bench.report.capacity import CHART as CAPACITY_CHART
from bench.report.capacity import capacity_markdown
from bench.report.charts import TrendPoint, chart_names, chart_warnings
from bench.report.recommend import recommendation, streaming_recommendation
from bench.report.table import by_scenario, markdown_tables
from bench.report.timeline import render_timeline

REPORT_NAME = "report.md"
TIMELINES = "timelines"
#: What a report writes into its directory: what the new report lacks of these goes, so the directory
#: holds exactly the last report (files the report does not own are left alone).
OWNED = (REPORT_NAME, "wall-speedup-*.png", "latency-*.png", "trend.png", f"{TIMELINES}/*.png", CAPACITY_CHART)
#: The hidden folder a report is written into before it is swapped in.
STAGING_PREFIX = ".fanbench-report-"
Trend = tuple[dict[str, list[TrendPoint]], list[str]]  # each benchmark's points, and every run's label in order


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


def trend_series(runs: Sequence[SavedRun]) -> dict[str, list[TrendPoint]]:
    """Each benchmark's median round time in every run that has it."""
    series: dict[str, list[TrendPoint]] = {}
    for run in runs:
        for bench in run.benchmarks:
            series.setdefault(bench["name"], []).append(TrendPoint(run.label, float(bench["stats"]["median"])))
    return series


def recommendation_lines(measurements: Sequence[Measurement]) -> list[str]:
    """The closing answers, as the terminal prints them: offline first, then each stream."""
    offline = recommendation([m for m in measurements if m.settings.scenario == "offline"])
    return [*(offline.splitlines() if offline else []), *streaming_recommendation(measurements)]


def write_report(measurements: Sequence[Measurement], out_dir: Path, *, context: Sequence[str] = (),
                 trend: Trend | None = None) -> Path:
    """Write report.md and its charts into `out_dir`, whole (`stage_report`, then `swap_in`: an interrupt or
    a failure while writing leaves the previous report as it was); return the report's path."""
    staging = stage_report(measurements, out_dir, context=context, trend=trend)
    with signals_held(replay=True):  # a signal waits for the few renames, then acts as it would have
        return swap_in(staging, out_dir)


def stage_report(measurements: Sequence[Measurement], out_dir: Path, *, context: Sequence[str] = (),
                 trend: Trend | None = None) -> Path:
    """Write the whole report into a new hidden folder inside `out_dir` (the same file system: `swap_in`
    only renames) and return it; on any error or interrupt the folder is removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        _write(measurements, staging, context, trend)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def swap_in(staging: Path, out_dir: Path) -> Path:
    """Move a staged report into `out_dir` (each file replaces its namesake by a rename, report.md last),
    then remove the previous report's files the new one lacks: a whole report at every step. Returns report.md."""
    report = out_dir / REPORT_NAME
    files = sorted((path for path in staging.rglob("*") if path.is_file()), key=lambda path: path.name == REPORT_NAME)
    new = {path.relative_to(staging) for path in files}
    for path in files:
        target = out_dir / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    for pattern in OWNED:  # a reused directory keeps nothing from an earlier report
        for old in out_dir.glob(pattern):
            if old.relative_to(out_dir) not in new:
                old.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    return report


def _write(measurements: Sequence[Measurement], out_dir: Path, context: Sequence[str], trend: Trend | None) -> None:
    """Write report.md and its charts into the empty folder `out_dir`."""
    lines = ["# fanbench report", "", *(f"- {line}" for line in context), "", "## Recommendation", "",
             *(f"- {line}" for line in recommendation_lines(measurements)), "", "## Results", "",
             markdown_tables(measurements), ""]
    with chart_warnings() as notes:
        lines += [*capacity_markdown(measurements, out_dir), "## Charts", ""]
        for title, group in by_scenario(measurements).items():
            chart = charts.save(charts.wall_and_speedup_figure(group, f"wall time and speedup, {title}"),
                                out_dir / f"wall-speedup-{slug(title)}.png")
            lines += [f"![wall time and speedup, {title}]({chart.name})", ""]
            if group[0].settings.target_fps is not None and any(m.latency.p50_s is not None for m in group):
                chart = charts.save(charts.latency_figure(group, f"per-frame latency, {title}"),
                                    out_dir / f"latency-{slug(title)}.png")
                lines += [f"![latency, {title}]({chart.name})", ""]
        if trend is not None:
            series, labels = trend
            chart = charts.save(charts.trend_figure(series, labels, "median round time across saved runs"), out_dir / "trend.png")
            lines += ["## Trend", "", f"![trend]({chart.name})", ""]
        lines += ["## Timelines", "",
                  "Each bar is one `session.run` (median run of the timed rounds), one lane per thread, process or "
                  "event loop.", ""]
        for m in measurements:
            if not m.timing.timeline.get("lanes"):
                continue
            title = f"{m.key}, {m.settings.scenario if m.settings.target_fps is None else f'{m.settings.target_fps:g} fps'}"
            path = render_timeline(m.timing.timeline, m.settings.models, title,
                                   out_dir / TIMELINES / f"{slug(m.settings.scenario)}-{slug(m.key)}.png")
            lines += [f"### {title}", "", f"![timeline {title}]({TIMELINES}/{path.name})", ""]
    renamed = chart_names(sorted({name for m in measurements for name in m.settings.models}))
    if renamed or notes:
        lines += ["## Notes on the charts", ""]
        lines += [f"- the charts call {label} `{name}`: no installed font draws that name" for name, label in renamed.items()]
        lines += [f"- matplotlib: {note}" for note in notes]
        lines.append("")
    (out_dir / REPORT_NAME).write_text("\n".join(lines), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report",
                                     description="Render the fanbench report from saved pytest-benchmark history files.")
    parser.add_argument("history", nargs="+", type=Path,
                        help="history files (.benchmarks/<machine>/NNNN_*.json) or directories of them")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write the report into")
    parser.add_argument("--trend", action="store_true",
                        help="also chart each benchmark's median time across all the given runs (one machine's)")
    args = parser.parse_args(argv)
    try:
        runs, skipped = load_runs(history_files(args.history))
        for line in skipped:
            print(f"warning: {line}", file=sys.stderr)
        if not runs:
            raise HistoryError("no history file given reads; nothing to report.")
        latest = runs[-1]
        measurements = latest.measurements()
        trend = None
        if args.trend:
            machines = sorted({run.machine for run in runs})
            if len(machines) > 1:
                raise HistoryError(f"--trend compares one machine's runs; these files come from {len(machines)} machines: "
                                   f"{'; '.join(machines)}. Give the files of one machine.")
            trend_runs, left_out = same_workload_runs(runs)
            trend = (trend_series(trend_runs), [run.label for run in trend_runs])
    except HistoryError as error:
        parser.exit(2, f"error: {error}\n")
    context = [f"rebuilt from `{latest.path.name}`, saved {latest.label}", f"machine: {latest.machine}"]
    if latest.commit:
        context.append(f"commit: {latest.commit}")
    if trend is not None:
        context.append(f"trend over {len(trend_runs)} saved runs of the latest run's workload")
        context += [f"left out of the trend: {line}" for line in left_out]
        for line in left_out:
            print(f"note: left out of the trend: {line}")
    try:
        with sigterm_as_interrupt():
            report = write_report(measurements, args.out, context=context, trend=trend)
    except KeyboardInterrupt as interrupt:
        parser.exit(2, f"{interruption(interrupt)}: no report written; {args.out} keeps what it held.\n")
    print(f"report written to {report}")
    return 0
