"""Within-run gates: "strategy A is at least F times as fast as strategy B, in this run".

Both sides are timed in the same session on the same machine, so the gate is immune to the drift
between CI machines that makes absolute thresholds noisy. One `--gate` (repeatable) reads

    FAST >= FACTORx SLOW        e.g.  "threads >= 1.3x serial-ort-defaults"

FAST and SLOW name a benchmark: a strategy name (`threads`: with its own default thread settings) or
a full benchmark id (`threads-intra1-inter1-spin0`). It holds when the median wall time of SLOW over
that of FAST is at least FACTOR; FACTOR below 1 bounds a slowdown instead: "asyncio >= 0.9x serial"
allows asyncio to be at most about 11% slower than serial.
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure.measurement import Measurement

SYNTAX = ("FAST >= FACTORx SLOW, e.g. 'threads >= 1.3x serial-ort-defaults', or NAME cameras >= N, "
          "e.g. 'threads cameras >= 6'")
# A capacity gate: the streaming benchmark of NAME served at least N cameras (bench/measure/capacity.py).
_CAPACITY = re.compile(r"^\s*(?P<name>[\w.-]+?)\s+cameras\s*>=\s*(?P<cameras>\d+)\s*$")
_GATE = re.compile(r"^\s*(?P<fast>[\w.-]+?)\s*>=\s*(?P<factor>\d+(?:\.\d*)?|\.\d+)\s*x\s*(?P<slow>[\w.-]+)\s*$")


@dataclass(frozen=True)
class Gate:
    fast: str
    factor: float
    slow: str

    def __str__(self) -> str:
        return f"{self.fast} >= {self.factor:g}x {self.slow}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate | CapacityGate
    passed: bool
    speedup: float | None  # median wall of SLOW / median wall of FAST; None when not measured
    reason: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.gate}: {self.reason}"


@dataclass(frozen=True)
class CapacityGate:
    """NAME cameras >= N: the capacity search of NAME's streaming benchmark found at least N cameras."""

    name: str
    cameras: int

    def __str__(self) -> str:
        return f"{self.name} cameras >= {self.cameras}"


def parse_gate(text: str) -> Gate | CapacityGate:
    """Parse one --gate value; the error says what the syntax is."""
    capacity = _CAPACITY.match(text)
    if capacity is not None:
        return CapacityGate(capacity["name"], int(capacity["cameras"]))
    match = _GATE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected {SYNTAX}; got {text!r}.")
    factor = float(match["factor"])
    if factor <= 0:
        raise argparse.ArgumentTypeError(f"the factor must be positive, got {match['factor']!r} in {text!r}.")
    if match["fast"] == match["slow"]:
        raise argparse.ArgumentTypeError(f"a gate compares two different benchmarks, got {text!r}.")
    return Gate(match["fast"], factor, match["slow"])


def strategy_of(reference: str, strategies: Sequence[str]) -> str | None:
    """The strategy a benchmark reference belongs to ('threads-ort-defaults' -> 'threads')."""
    if reference in strategies:
        return reference
    # Longest first: 'processes_shm-...' must not resolve to 'processes'.
    return next((name for name in sorted(strategies, key=len, reverse=True) if reference.startswith(f"{name}-")), None)


def check_references(gates: Sequence[Gate | CapacityGate], strategies: Sequence[str], selected: Sequence[str]) -> None:
    """Raise ValueError for a gate naming an unknown strategy, or one not selected to run."""
    for gate in gates:
        for reference in (gate.name,) if isinstance(gate, CapacityGate) else (gate.fast, gate.slow):
            name = strategy_of(reference, strategies)
            if name is None:
                raise ValueError(f"--gate {str(gate)!r}: {reference!r} names no strategy; use a strategy name "
                                 f"({', '.join(strategies)}) or a benchmark id such as '{strategies[0]}-ort-defaults'.")
            if name not in selected:
                raise ValueError(f"--gate {str(gate)!r}: {name!r} is not benchmarked in this run "
                                 f"(--strategy selects {', '.join(selected)}).")


def evaluate(gates: Sequence[Gate | CapacityGate], measurements: Sequence[Measurement],
             default_labels: Mapping[str, str]) -> list[GateResult]:
    """Evaluate every gate on this run's measurements. `default_labels` maps a strategy name to the settings
    label of its default-settings benchmark, which a bare strategy name in a gate refers to."""
    # Speed gates compare throughput: the offline scenario (streaming walls are set by the frame rate).
    by_key = {measurement.key: measurement for measurement in measurements if measurement.settings.scenario == "offline"}
    streamed = {measurement.key: measurement for measurement in measurements if measurement.capacity}

    def find(reference: str, among: Mapping[str, Measurement] = by_key) -> Measurement | None:
        key = f"{reference}-{default_labels[reference]}" if reference in default_labels else reference
        return among.get(key)

    results = []
    for gate in gates:
        if isinstance(gate, CapacityGate):
            results.append(capacity_result(gate, find(gate.name, streamed)))
            continue
        fast, slow = find(gate.fast), find(gate.slow)
        if fast is None or slow is None:
            missing = [ref for ref, found in ((gate.fast, fast), (gate.slow, slow)) if found is None]
            results.append(GateResult(gate, False, None, f"no measurement of {', '.join(map(repr, missing))} "
                                      "(its benchmark failed before timing, or was deselected)."))
            continue
        fast_s, slow_s = median_wall(fast), median_wall(slow)
        speedup = slow_s / fast_s if fast_s > 0 else float("inf")
        passed = speedup >= gate.factor
        results.append(GateResult(gate, passed, speedup,
                                  f"{fast.key} {fast_s:.4g} s vs {slow.key} {slow_s:.4g} s (median wall per run): "
                                  f"{speedup:.2f}x, {'at least' if passed else 'below'} {gate.factor:g}x."))
    return results


def capacity_result(gate: CapacityGate, measurement: Measurement | None) -> GateResult:
    if measurement is None:
        return GateResult(gate, False, None, f"no capacity of {gate.name!r} (its streaming benchmark failed, was "
                                             "deselected, or ran with --no-capacity).")
    cameras = measurement.capacity["cameras"]
    passed = cameras >= gate.cameras
    return GateResult(gate, passed, None, f"{measurement.key} serves {cameras} cameras at "
                                          f"{measurement.capacity['fps']:g} fps, {'at least' if passed else 'below'} "
                                          f"{gate.cameras}.")


def capacity_drops(current: Mapping[str, Mapping[str, Any]], saved: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per benchmark whose capacity (cameras served) fell against a saved run: a regression.
    Both map a benchmark's full name to its extra_info; benchmarks without a capacity on either side are skipped."""
    lines = []
    for name, now in current.items():
        before = (saved.get(name) or {}).get("capacity") or {}
        after = now.get("capacity") or {}
        if before and after and after["cameras"] < before["cameras"]:
            lines.append(f"{name} against the saved run: capacity {before['cameras']} -> {after['cameras']} cameras at "
                         f"{after['fps']:g} fps (a capacity drop)")
    return lines


def median_wall(measurement: Measurement) -> float:
    """Median wall time of the timed rounds (the measurement's own wall time when none are listed)."""
    return statistics.median(measurement.timing.rounds_wall_s) if measurement.timing.rounds_wall_s else measurement.timing.wall_s
