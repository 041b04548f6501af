"""The report directory, after `pytest bench` or rebuilt from saved history.

    python -m bench.report .benchmarks/Linux-CPython-3.12-64bit/0003_*.json --out reports/0003
    python -m bench.report .benchmarks/Linux-CPython-3.12-64bit/ --trend --out reports/trend

The directory holds `report.md` (the tables, the charts and the timelines), `wall-speedup-*.png`
(wall time and speedup per strategy, per scenario), `latency-*.png` (streaming latency
percentiles), `timelines/*.png` (one per benchmark) and, with `--trend`, `trend.png`; files
an earlier report left there are removed first. Given several history files (or a directory
of them), the report shows the latest run and the trend chart spans the runs of its workload.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.compare.comparability import workload_differences
from bench.measure.measurement import Measurement
from bench.report.charts import TrendPoint, latency_chart, trend_chart, wall_and_speedup_chart
from bench.report.recommend import recommendation, streaming_recommendation
from bench.report.table import by_scenario, markdown_tables
from bench.report.timeline import render_timeline

REPORT_NAME = "report.md"
TIMELINES = "timelines"
#: What a report writes into its directory; all of it is removed first, so the directory
#: holds exactly the last report (files the report does not own are left alone).
OWNED = (REPORT_NAME, "wall-speedup-*.png", "latency-*.png", "trend.png", f"{TIMELINES}/*.png")


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


class HistoryError(ValueError):
    """A history file that cannot be read or holds no fanbench benchmark."""


def measurement_from_info(info: dict[str, Any], name: str = "benchmark") -> Measurement:
    """A Measurement back from its `extra_info`; fields added later take their defaults."""
    known = {field.name for field in fields(Measurement)}
    try:
        return Measurement(**{key: value for key, value in info.items() if key in known})
    except TypeError as error:
        raise HistoryError(f"{name}: extra_info is not a fanbench measurement ({error}).") from None


@dataclass(frozen=True)
class SavedRun:
    """One pytest-benchmark history file."""

    path: Path
    datetime: str
    machine: str
    commit: str | None
    benchmarks: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return self.datetime[:19].replace("T", " ")

    def measurements(self) -> list[Measurement]:
        found = [measurement_from_info(bench["extra_info"], f"{self.path}: {bench.get('name')}")
                 for bench in self.benchmarks if "strategy" in bench.get("extra_info", {})]
        if not found:
            raise HistoryError(f"{self.path}: holds no fanbench benchmark (none has a 'strategy' in its extra_info).")
        return found


def load_run(path: Path) -> SavedRun:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise HistoryError(f"{path}: cannot read a history file: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise HistoryError(f"{path}: not a pytest-benchmark history file (no 'benchmarks' list).")
    machine_info = data.get("machine_info", {})
    machine = f"{machine_info.get('node', '?')} ({machine_info.get('cpu', {}).get('brand_raw', '?')})"
    commit = (data.get("commit_info") or {}).get("id")
    return SavedRun(path, str(data.get("datetime", "")), machine, commit, data["benchmarks"])


def history_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory stands for its *.json files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise HistoryError(f"{path}: a directory without history files (*.json).")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise HistoryError(f"{path}: no such file or directory.")
    return files


def same_workload_runs(runs: Sequence[SavedRun]) -> tuple[list[SavedRun], list[str]]:
    """The runs that timed the same work as the last one (every benchmark they share with it
    has the same frames, batch, models, provider and thread settings), and why each other run
    was left out: a trend joining 40-frame and 8-frame runs would show a 'fall' that is none."""
    latest = {bench["name"]: bench.get("extra_info", {}) for bench in runs[-1].benchmarks}
    kept, left_out = [], []
    for run in runs:
        shared = [bench for bench in run.benchmarks if bench["name"] in latest]
        differences = next((lines for bench in shared
                            if (lines := workload_differences(bench.get("extra_info", {}), latest[bench["name"]]))), [])
        if not shared:
            left_out.append(f"{run.path.name}: no benchmark in common with the latest run")
        elif differences:
            left_out.append(f"{run.path.name}: other workload ({'; '.join(differences)})")
        else:
            kept.append(run)
    return kept, left_out


def trend_series(runs: Sequence[SavedRun]) -> dict[str, list[TrendPoint]]:
    """Each benchmark's median round time in every run that has it."""
    series: dict[str, list[TrendPoint]] = {}
    for run in runs:
        for bench in run.benchmarks:
            series.setdefault(bench["name"], []).append(TrendPoint(run.label, float(bench["stats"]["median"])))
    return series


def recommendation_lines(measurements: Sequence[Measurement]) -> list[str]:
    """The closing answers, as the terminal prints them: offline first, then each stream."""
    offline = recommendation([m for m in measurements if m.scenario == "offline"])
    return [*(offline.splitlines() if offline else []), *streaming_recommendation(measurements)]


def write_report(measurements: Sequence[Measurement], out_dir: Path, *, context: Sequence[str] = (),
                 trend: tuple[dict[str, list[TrendPoint]], list[str]] | None = None) -> Path:
    """Write report.md and its charts into `out_dir`; return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in OWNED:  # a reused directory keeps nothing from an earlier report
        for old in out_dir.glob(pattern):
            old.unlink()
    lines = ["# fanbench report", "", *(f"- {line}" for line in context), "", "## Recommendation", "",
             *(f"- {line}" for line in recommendation_lines(measurements)), "", "## Results", "",
             markdown_tables(measurements), "", "## Charts", ""]
    for title, group in by_scenario(measurements).items():
        chart = wall_and_speedup_chart(group, f"wall time and speedup, {title}", out_dir / f"wall-speedup-{slug(title)}.png")
        lines += [f"![wall time and speedup, {title}]({chart.name})", ""]
        if group[0].target_fps is not None and any(m.latency_p50_s is not None for m in group):
            chart = latency_chart(group, f"per-frame latency, {title}", out_dir / f"latency-{slug(title)}.png")
            lines += [f"![latency, {title}]({chart.name})", ""]
    if trend is not None:
        series, labels = trend
        chart = trend_chart(series, labels, "median round time across saved runs", out_dir / "trend.png")
        lines += ["## Trend", "", f"![trend]({chart.name})", ""]
    lines += ["## Timelines", "",
              "Each bar is one `session.run` (median run of the timed rounds), one lane per thread, process or event loop.",
              ""]
    for m in measurements:
        if not m.timeline.get("lanes"):
            continue
        title = f"{m.key}, {m.scenario if m.target_fps is None else f'{m.target_fps:g} fps'}"
        path = render_timeline(m.timeline, m.models, title,
                               out_dir / TIMELINES / f"{slug(m.scenario)}-{slug(m.key)}.png")
        lines += [f"### {title}", "", f"![timeline {title}]({TIMELINES}/{path.name})", ""]
    report = out_dir / REPORT_NAME
    report.write_text("\n".join(lines))
    return report


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
        runs = sorted((load_run(path) for path in history_files(args.history)), key=lambda run: (run.datetime, run.path.name))
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
    report = write_report(measurements, args.out, context=context, trend=trend)
    print(f"report written to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
