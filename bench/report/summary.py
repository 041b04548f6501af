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
from bench.interrupts import interruption, signals_held
from bench.measure.measurement import Measurement
from bench.report.markdown import recommendation_lines, stage_report, swap_in
from bench.report.table import format_table
from strategies import onnxruntime, usable_cores


def write_summary(reporter: pytest.TerminalReporter, measurements: Sequence[Measurement], *, overhead_lines: Sequence[str] = (),
                  gpu_absent: str | None = None, report_dir: Path | None = None, saved: int | None = None,
                  left_out: Sequence[str] = (), workload_differences: Sequence[str] = (),
                  regressions: Sequence[str] = (), compare_fail: Sequence[Any] = (),
                  gate_results: Sequence[GateResult] = (), stopped: str | None = None) -> str | None:
    """Everything fanbench prints after pytest's own summary; returns what interrupted it, if
    anything did (a signal while the report was written: the run then ends as interrupted).

    `saved`: how many complete benchmarks pytest-benchmark saves to the history (None: it saves
    none, e.g. --no-history); `left_out`: the benchmarks kept out of it as incomplete.
    `compare_fail`: pytest-benchmark's --benchmark-compare-fail checks; with any, a comparison
    with a run of other work is refused rather than just reported. `stopped`: the signal that
    came while the history was saved (it waited for it); no report is written then.
    """
    interrupted = None
    if measurements:
        reporter.write_sep("=", "fanbench")
        reporter.write_line(format_table(measurements))
    for line in overhead_lines:
        reporter.write_line(line)
    if gpu_absent and not any(m.gpu_absent for m in measurements):
        reporter.write_line(f"note: GPU metrics absent: {gpu_absent}.")
    if report_dir is not None and measurements:
        if stopped is not None:
            reporter.write_line(f"fanbench: {stopped} while the history was saved (it finished first): no report "
                                f"written, {report_dir} keeps what it held; python -m bench.report on the saved run "
                                "writes it.", yellow=True)
        else:
            interrupted = report_line(reporter, measurements, report_dir)
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
        reporter.write_sep("=", f"fanbench: slower than the saved run (--benchmark-compare-fail={checks})", red=True)
        for line in regressions:
            reporter.write_line(line, red=True)
        reporter.write_line("For a noise-aware verdict on two saved runs: python -m bench.compare OLD.json NEW.json "
                            "--fail-on-regression (docs/ci.md).")
    if gate_results:
        passed = all(result.passed for result in gate_results)
        reporter.write_sep("=", "fanbench gates", green=passed, red=not passed)
        for result in gate_results:
            reporter.write_line(result.line(), green=result.passed, red=not result.passed)
    return interrupted


def report_line(reporter: pytest.TerminalReporter, measurements: Sequence[Measurement], directory: Path) -> str | None:
    """Write the report directory and say where, or in one line why it could not be written.

    Ctrl-C or SIGTERM while it is written leaves `directory` as it was (the report is written
    whole elsewhere first, then swapped in, which a signal waits for); returns what interrupted
    it, if anything did."""
    context = [f"`pytest bench` run of {datetime.datetime.now().isoformat(timespec='seconds')} on {platform.node()}",
               f"onnxruntime {onnxruntime().__version__}, Python {platform.python_version()}, {usable_cores()} usable cores"]
    try:
        staging = stage_report(measurements, directory, context=context)
        with signals_held() as noted:
            report = swap_in(staging, directory)
    except KeyboardInterrupt as interrupt:
        reporter.write_line(f"fanbench: {interruption(interrupt)} while the report was written: none written, "
                            f"{directory} keeps what it held; python -m bench.report on the saved run writes it.",
                            yellow=True)
        return interruption(interrupt)
    except OSError as error:  # e.g. the disk filled during the run: say so, and let the summary go on
        reporter.write_line(f"fanbench: could not write the report to {directory}: {error}", red=True)
        return None
    reporter.write_line(f"fanbench: report written to {report}")
    return interruption(noted[0]) if noted else None
