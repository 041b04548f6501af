"""The end of a `pytest bench` run in the terminal: the table, the harness overhead, the GPU note,
the report, the recommendation, what was not saved, and the comparison and gate verdicts."""

from __future__ import annotations

import datetime
import platform
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.compare.gates import GateResult
from bench.interrupts import interruption, signals_held
from bench.measure.measurement import Measurement
from bench.report.capacity import capacity_lines
from bench.report.markdown import recommendation_lines, stage_report, swap_in
from bench.report.table import fill, format_table
from strategies.runtime import onnxruntime, usable_cores


def write_summary(reporter: pytest.TerminalReporter, measurements: Sequence[Measurement], *, overhead_lines: Sequence[str] = (),
                  gpu_absent: str | None = None, report_dir: Path | None = None, saved: int | None = None,
                  left_out: Sequence[str] = (), workload_differences: Sequence[str] = (),
                  regressions: Sequence[str] = (), within_noise: Sequence[str] = (), compare_fail: Sequence[Any] = (),
                  gate_results: Sequence[GateResult] = (), save_failure: str | None = None,
                  stopped: str | None = None) -> str | None:
    """Everything fanbench prints after pytest's own summary; returns what interrupted it, if anything did
    (a signal while the report was written: the run then ends as interrupted).

    `saved`: how many complete benchmarks are saved to the history (None: none, e.g. --no-history);
    `left_out`: those kept out as incomplete; `save_failure`: why saving the run failed. `compare_fail`:
    pytest-benchmark's --benchmark-compare-fail checks (with any, a comparison with other work is refused,
    not just reported); `regressions`: the checks that failed; `within_noise`: beyond the threshold but
    within the rounds' noise. `stopped`: the signal that came while the history was saved: no report then.
    """
    interrupted = None
    width = terminal_width(reporter)

    def say(*lines: str, **markup: bool) -> None:  # every line fits the terminal, as pytest's own
        for line in lines:
            reporter.write_line(fill(line, width), **markup)

    if measurements:
        reporter.write_sep("=", "fanbench")
        reporter.write_line(format_table(measurements, width))
        for line in capacity_lines(measurements, width):
            reporter.write_line(line)
    say(*overhead_lines)
    if gpu_absent and not any(m.resources.gpu_absent for m in measurements):
        say(f"note: GPU metrics absent: {gpu_absent}.")
    if report_dir is not None and measurements:
        if stopped is not None:
            say(f"fanbench: {stopped} while the history was saved (it finished first): no report written, "
                f"{report_dir} keeps what it held; python -m bench.report on the saved run writes it.", yellow=True)
        else:
            interrupted = report_line(reporter, measurements, report_dir, width)
    # Offline: which strategy gets through the video fastest; streaming: which keeps up best.
    say(*recommendation_lines(measurements))
    if save_failure is not None:
        say(f"fanbench: this run was NOT saved to the history: {save_failure}.", red=True)
    elif saved is not None:
        outcome = f"the {saved} complete benchmark(s) are saved." if saved else "no benchmark completed: nothing is saved."
        if left_out:
            say("fanbench: not saved to the history, as they did not complete (interrupted or "
                f"failed): {', '.join(left_out)}; {outcome}", yellow=True)
        elif not saved:
            say(f"fanbench: {outcome}", yellow=True)
    if workload_differences:
        refuse = bool(compare_fail)
        reporter.write_sep("=", "fanbench: compared runs timed different work", red=refuse, yellow=not refuse)
        say(*workload_differences)
        say(
            "Refusing to gate on this comparison (--benchmark-compare-fail): compare with a run of the same workload."
            if refuse else "The comparison above is not like for like.")
    checks = " ".join(f"{check.field}:{check.threshold}{'%' if 'Percentage' in type(check).__name__ else ''}"
                      for check in compare_fail)
    if within_noise:
        reporter.write_sep("=", f"fanbench: beyond --benchmark-compare-fail={checks}, but within the rounds' noise: not failed",
                           yellow=True)
        say(*within_noise)
    if regressions:
        reporter.write_sep("=", f"fanbench: slower than the saved run (--benchmark-compare-fail={checks})" if checks
                           else "fanbench: below the saved run", red=True)
        say(*regressions, red=True)
        say("A check fails when its threshold is exceeded and the rounds differ significantly (Mann-Whitney "
            "U, p < 0.05), or when too few rounds leave significance untold (docs/ci.md).")
    if gate_results:
        passed = all(result.passed for result in gate_results)
        reporter.write_sep("=", "fanbench gates", green=passed, red=not passed)
        for result in gate_results:
            say(result.line(), green=result.passed, red=not result.passed)
    return interrupted


def terminal_width(reporter: pytest.TerminalReporter) -> int:
    """The width pytest's own output fits (its terminal writer: COLUMNS, else the terminal, else 80)."""
    writer = getattr(reporter, "_tw", None)
    return int(getattr(writer, "fullwidth", 0)) or shutil.get_terminal_size().columns


def report_line(reporter: pytest.TerminalReporter, measurements: Sequence[Measurement], directory: Path,
                width: int | None = None) -> str | None:
    """Write the report directory and say where, or in one line why it could not be written. Ctrl-C or
    SIGTERM meanwhile leaves `directory` as it was (see stage_report); returns what interrupted it, if any."""
    context = [f"`pytest bench` run of {datetime.datetime.now().isoformat(timespec='seconds')} on {platform.node()}",
               f"onnxruntime {onnxruntime().__version__}, Python {platform.python_version()}, {usable_cores()} usable cores"]
    try:
        staging = stage_report(measurements, directory, context=context)
        with signals_held() as noted:
            report = swap_in(staging, directory)
    except KeyboardInterrupt as interrupt:
        reporter.write_line(fill(f"fanbench: {interruption(interrupt)} while the report was written: none written, "
                                 f"{directory} keeps what it held; python -m bench.report on the saved run writes it.",
                                 width), yellow=True)
        return interruption(interrupt)
    except OSError as error:  # e.g. the disk filled during the run: say so, and let the summary go on
        reporter.write_line(fill(f"fanbench: could not write the report to {directory}: {error}", width), red=True)
        return None
    reporter.write_line(fill(f"fanbench: report written to {report}", width))
    return interruption(noted[0]) if noted else None
