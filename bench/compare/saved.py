"""The one reader of pytest-benchmark history files (and of --benchmark-json files, the same format), for
`python -m bench.compare`, `python -m bench.report` and `python -m bench.gpu_check`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.compare.comparability import workload_differences
from bench.measure.measurement import HistoryError, Measurement


@dataclass(frozen=True)
class SavedRun:
    path: Path
    datetime: str
    machine_info: dict[str, Any]
    commit: str | None
    benchmarks: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return self.datetime[:19].replace("T", " ")

    @property
    def machine(self) -> str:
        cpu = self.machine_info.get("cpu")
        return f"{self.machine_info.get('node', '?')} ({cpu.get('brand_raw', '?') if isinstance(cpu, dict) else '?'})"

    def fanbench_measurements(self) -> list[Measurement]:
        """Every fanbench benchmark of the run (those with a 'strategy' in their extra_info), read back by
        Measurement.from_extra_info (HistoryError for a newer schema or a record that is no measurement)."""
        return [Measurement.from_extra_info(bench["extra_info"], f"{self.path}: {bench.get('name')}")
                for bench in self.benchmarks if "strategy" in bench.get("extra_info", {})]

    def measurements(self) -> list[Measurement]:
        """fanbench_measurements, at least one (HistoryError: the file holds none)."""
        found = self.fanbench_measurements()
        if not found:
            raise HistoryError(f"{self.path}: holds no fanbench benchmark (none has a 'strategy' in its extra_info).")
        return found


#: The statistics fanbench's readers (the trend) take from a saved benchmark, and those pytest-benchmark's
#: comparison takes (`ops` it derives from `mean` when absent; `outliers` is text).
READER_STATS = ("median",)
COMPARED_STATS = ("min", "max", "mean", "stddev", "median", "iqr", "rounds", "iterations")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def history_problem(data: Any, compared: bool = False) -> str | None:
    """Why a parsed history file cannot be read (None: it can): checks all that pytest-benchmark's comparison
    and fanbench's readers index without asking, in a file another tool wrote or one edited by hand.
    `compared`: also what pytest-benchmark's comparison reads, more of the statistics."""
    stats = COMPARED_STATS if compared else READER_STATS
    if not isinstance(data, dict):
        return "not a pytest-benchmark history file (not a JSON object)"
    if not isinstance(data.get("benchmarks"), list):
        return "not a pytest-benchmark history file (no 'benchmarks' list)"
    if "machine_info" in data and not isinstance(data["machine_info"], dict):
        return f"'machine_info' is {type(data['machine_info']).__name__}, not an object"
    for key, kind in (("commit_info", dict), ("datetime", str)):  # null is as good as absent
        if data.get(key) is not None and not isinstance(data[key], kind):
            return f"{key!r} is {type(data[key]).__name__}, not {'an object' if kind is dict else 'a string'}"
    for index, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            return f"benchmark {index} is not an object"
        for key in ("name", "fullname"):
            if not isinstance(bench.get(key), str):
                return f"benchmark {index} has no {key!r}"
        if "extra_info" in bench and not isinstance(bench["extra_info"], dict):
            return f"benchmark {bench['name']!r}: 'extra_info' is {type(bench['extra_info']).__name__}, not an object"
        saved = bench.get("stats")
        if not isinstance(saved, dict) or not all(_number(saved.get(key)) for key in stats):
            return f"benchmark {bench['name']!r}: 'stats' lacks a number among {', '.join(stats)}"
        if compared and (("ops" not in saved and not saved["mean"]) or not isinstance(saved.get("outliers"), str)):
            return f"benchmark {bench['name']!r}: 'stats' lacks 'outliers', or 'ops' with a mean of 0"
    return None


class CutShort(HistoryError):
    """A history file that is empty or not whole JSON: its writer ended before it finished (pytest-benchmark
    empties its --benchmark-json file at the start and fills it at the session's end)."""


def read_history(path: Path, compared: bool = False) -> dict[str, Any]:
    """A history file's content, checked (HistoryError, naming the file and what is wrong; CutShort when it
    is no whole JSON); `compared` as history_problem's."""
    try:
        data = json.loads(path.read_text(encoding="utf8"))
    except json.JSONDecodeError as error:
        raise CutShort(f"{path}: cannot read a history file: {'empty' if not error.doc.strip() else error}.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise HistoryError(f"{path}: cannot read a history file: {error}.") from None
    problem = history_problem(data, compared)
    if problem is not None:
        raise HistoryError(f"{path}: {problem}.")
    return data


def load_run(path: Path) -> SavedRun:
    data = read_history(path)
    commit = (data.get("commit_info") or {}).get("id")
    return SavedRun(path, str(data.get("datetime") or ""), data.get("machine_info") or {}, commit, data["benchmarks"])


def load_runs(files: Sequence[Path]) -> tuple[list[SavedRun], list[str]]:
    """The files that read, oldest first (by saved date), and one line for each that does not."""
    runs, skipped = [], []
    for path in files:
        try:
            runs.append(load_run(path))
        except HistoryError as error:
            skipped.append(f"{error} Skipped.")
    return sorted(runs, key=lambda run: (run.datetime, run.path.name)), skipped


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
    """The runs that timed the same work as the last one in every benchmark they share (workload_differences),
    and why each other run was left out: a trend joining 40-frame and 8-frame runs would show a false fall."""
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
