"""Which saved run a `pytest bench` run is compared with, chosen before the run starts.

pytest-benchmark compares with the last saved run, whatever it timed (after a run of one's own models,
the next default run printed 'timed different work' per benchmark). fanbench picks the latest saved
run that timed the same work (frames, batch, models, requested provider, a benchmark in common) and
says which in one line, or that none did. `--benchmark-compare=NAME` is taken as asked (`named`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure.measurement import stored

SavedFile = tuple[Path, Mapping[str, Any]]  # (path, the run's JSON), as pytest-benchmark's storage loads them


@dataclass(frozen=True)
class Work:
    """What this run will time, known before it runs."""

    frames: int
    batch: int
    models: tuple[str, ...]  # names as stored in each benchmark's extra_info
    provider: str  # as asked (auto, cpu, cuda): what the saved run's machine_info.fanbench.workload holds
    names: frozenset[str]  # benchmark names, 'test_strategy[serial-ort-defaults-offline]'
    # Frames a benchmark runs where they are not `frames` (a stream of several cameras runs each its frames)
    run_frames: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    path: Path | None  # None: compare with nothing
    line: str  # which run, or why none, in words

    @property
    def header(self) -> str:
        """The one line printed before the run."""
        return f"fanbench: {self.line}" if self.path else f"fanbench: not compared: {self.line}"


def _models(names: Sequence[str]) -> str:
    return textwrap.shorten(f"{len(names)} ({', '.join(names)})", 60, placeholder=" ...)")


def differences(saved: Mapping[str, Any], work: Work) -> list[str]:
    """Why a saved run did not time this run's work; empty when it did."""
    benchmarks = [bench for bench in saved.get("benchmarks", []) if bench.get("name") in work.names]
    if not benchmarks:
        return ["no benchmark in common"]
    found = []
    asked = ((saved.get("machine_info") or {}).get("fanbench") or {}).get("workload") or {}
    if "provider" in asked and asked["provider"] != work.provider:
        found.append(f"provider: {asked['provider']} -> {work.provider}")
    name, measured = next(((bench["name"], bench["extra_info"]) for bench in benchmarks
                           if stored(bench.get("extra_info") or {}, "timing", "rounds_wall_s") is not None), (None, None))
    if measured is None:
        return found  # saved without fanbench's measurements (interrupted, older fanbench): names only
    frames = work.run_frames.get(name, work.frames)
    found += [f"{key}: {stored(measured, 'settings', key)} -> {value}" for key, value in (("frames", frames),
              ("batch", work.batch)) if stored(measured, "settings", key) != value]
    models = stored(measured, "settings", "models") or []
    if tuple(models) != work.models:
        found.append(f"models: {_models(models)} -> {_models(work.models)}")
    return found


def _when(saved: Mapping[str, Any]) -> str:
    return str(saved.get("datetime", "?"))[:19].replace("T", " ")


def latest_comparable(runs: Sequence[SavedFile], work: Work) -> Choice:
    """The latest of `runs` (oldest first) that timed `work`, with the line that says so."""
    skipped: list[str] = []  # why each later run is not comparable, the latest first
    for path, saved in reversed(runs):
        if found := differences(saved, work):
            skipped.append(f"{path.name}: {'; '.join(found)}")
            continue
        later = f"; {len(skipped)} later run(s) timed other work (the latest, {skipped[0]})" if skipped else ""
        return Choice(path, f"comparing with {path.name} (saved {_when(saved)}), the latest saved run of this "
                            f"machine that timed this work{later}")
    if not skipped:
        return Choice(None, "no saved run of this machine yet")
    return Choice(None, f"none of the {len(skipped)} saved run(s) of this machine timed this work (the latest, {skipped[0]})")


def named(asked: str, load: Callable[[str], Iterable[SavedFile]]) -> Choice:
    """The run `--benchmark-compare=asked` names: the latest match of pytest-benchmark's own reading
    (NUM, a glob, a file), else of a run saved as `--benchmark-save=asked` (NNNN_asked.json)."""
    matches = list(load(asked)) or ([] if "*" in asked or "/" in asked else list(load(f"*_{asked}")))
    if not matches:
        return Choice(None, f"no saved run of this machine matches --benchmark-compare={asked}; save one with "
                            f"--benchmark-save={asked}, or name a number (0001) or a file")
    path, saved = matches[-1]
    of = f", the latest of {len(matches)} matching runs" if len(matches) > 1 else ""
    return Choice(path, f"comparing with {path.name} (saved {_when(saved)}), as --benchmark-compare={asked} "
                        f"asks{of}")
