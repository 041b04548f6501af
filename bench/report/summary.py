"""The end of a `pytest bench` run in the terminal: the table, the harness overhead, the GPU note,
the report, the recommendation, what was not saved, and the comparison and gate verdicts."""

from __future__ import annotations

import datetime
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.compare.gates import GateResult
from bench.measure.measurement import Measurement
from bench.report.capacity import capacity_lines
from bench.report.markdown import recommendation_lines, write_report
from bench.report.table import format_table
from strategies import onnxruntime, usable_cores


def write_summary(reporter: pytest.TerminalReporter, measurements: Sequence[Measurement], *, overhead_lines: Sequence[str] = (),
                  gpu_absent: str | None = None, report_dir: Path | None = None, saved: int | None = None,
                  left_out: Sequence[str] = (), workload_differences: Sequence[str] = (),
                  regressions: Sequence[str] = (), compare_fail: Sequence[Any] = (),
                  gate_results: Sequence[GateResult] = ()) -> None:
    """Everything fanbench prints after pytest's own summary.

    `saved`: how many complete benchmarks pytest-benchmark saves to the history (None: it saves
    none, e.g. --no-history); `left_out`: the benchmarks kept out of it as incomplete.
    `compare_fail`: pytest-benchmark's --benchmark-compare-fail checks; with any, a comparison
    with a run of other work is refused rather than just reported.
    """
    if measurements:
        reporter.write_sep("=", "fanbench")
        reporter.write_line(format_table(measurements))
        for line in capacity_lines(measurements):
            reporter.write_line(line)
    for line in overhead_lines:
        reporter.write_line(line)
    if gpu_absent and not any(m.gpu_absent for m in measurements):
        reporter.write_line(f"note: GPU metrics absent: {gpu_absent}.")
    if report_dir is not None and measurements:
        report_line(reporter, measurements, report_dir)
    # Offline: which strategy gets through the video fastest; streaming: which keeps up best.
    for line in recommendation_lines(measurements):
        reporter.write_line(line)
    if saved is not None:
        outcome = f"the {saved} complete benchmark(s) are saved." if saved else "no benchmark completed: nothing is saved."
        if left_out:
            reporter.write_line("fanbench: not saved to the history, as they did not complete (interrupted or "
                                f"failed): {', '.join(left_out)}; {outcome}", yellow=True)
        elif not saved:
            reporter.write_line(f"fanbench: {outcome}", yellow=True)
    if workload_differences:
        refuse = bool(compare_fail)
        reporter.write_sep("=", "fanbench: compared runs timed different work", red=refuse, yellow=not refuse)
        for line in workload_differences:
            reporter.write_line(line)
        reporter.write_line(
            "Refusing to gate on this comparison (--benchmark-compare-fail): compare with a run of the same workload."
            if refuse else "The comparison above is not like for like.")
    if regressions:
        checks = " ".join(f"{check.field}:{check.threshold}{'%' if 'Percentage' in type(check).__name__ else ''}"
                          for check in compare_fail)
        reporter.write_sep("=", f"fanbench: slower than the saved run (--benchmark-compare-fail={checks})" if checks
                           else "fanbench: below the saved run", red=True)
        for line in regressions:
            reporter.write_line(line, red=True)
        reporter.write_line("For a noise-aware verdict on two saved runs: python -m bench.compare OLD.json NEW.json "
                            "--fail-on-regression (docs/ci.md).")
    if gate_results:
        passed = all(result.passed for result in gate_results)
        reporter.write_sep("=", "fanbench gates", green=passed, red=not passed)
        for result in gate_results:
            reporter.write_line(result.line(), green=result.passed, red=not result.passed)


def report_line(reporter: pytest.TerminalReporter, measurements: Sequence[Measurement], directory: Path) -> None:
    """Write the report directory and say where, or in one line why it could not be written."""
    context = [f"`pytest bench` run of {datetime.datetime.now().isoformat(timespec='seconds')} on {platform.node()}",
               f"onnxruntime {onnxruntime().__version__}, Python {platform.python_version()}, {usable_cores()} usable cores"]
    try:
        report = write_report(measurements, directory, context=context)
    except OSError as error:  # e.g. the disk filled during the run: say so, and let the summary go on
        reporter.write_line(f"fanbench: could not write the report to {directory}: {error}", red=True)
        return
    reporter.write_line(f"fanbench: report written to {report}")
