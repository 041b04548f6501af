"""The one reader of pytest-benchmark history files, for `python -m bench.compare` and `python -m bench.report`."""

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
    """One pytest-benchmark history file."""

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
        return f"{self.machine_info.get('node', '?')} ({self.machine_info.get('cpu', {}).get('brand_raw', '?')})"

    def measurements(self) -> list[Measurement]:
        found = [Measurement.from_extra_info(bench["extra_info"], f"{self.path}: {bench.get('name')}")
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
    commit = (data.get("commit_info") or {}).get("id")
    return SavedRun(path, str(data.get("datetime", "")), data.get("machine_info", {}), commit, data["benchmarks"])


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
