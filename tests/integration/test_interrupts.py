"""Ctrl-C and SIGTERM during `pytest bench`, for real: the session stops promptly and cleanly,
and the saved history holds only benchmarks that completed.

The first tests start `pytest bench` in a subprocess with a workload that would take minutes,
wait until the benchmark is timing, send the signal, and check that the session ends as
interrupted, that no process it started is left, that nothing new is left in /dev/shm or in
its temporary directory, and that nothing was saved to the history. The waits are bounds for a
hang, never timing assertions. The last tests interrupt a benchmark at a chosen phase (a test
strategy signals its own process) and then load and compare the saved history.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from strategies import STRATEGIES
from tests.helpers.run_bench import BenchSession, assert_nothing_left, bench_pytester_subprocess, compare_subprocess

PROCESS_STRATEGIES = [name for name in ("processes", "processes_shm") if name in STRATEGIES]

pytest_plugins = ["pytester"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="uses /dev/shm and Linux signals")]


@pytest.fixture
def bench_session(tmp_path: Path) -> Iterator[callable]:
    sessions: list[BenchSession] = []

    def start(strategy: str) -> BenchSession:
        sessions.append(BenchSession(tmp_path, strategy))
        return sessions[-1]

    yield start
    for session in sessions:
        session.kill()  # only when a test failed midway


CASES = [*[(name, signal.SIGINT, True) for name in PROCESS_STRATEGIES],
         *[(name, signal.SIGTERM, False) for name in PROCESS_STRATEGIES],
         ("threads", signal.SIGINT, True), ("asyncio", signal.SIGTERM, False)]


@pytest.mark.parametrize(("strategy", "signum", "group"),
                         [pytest.param(*case, id=f"{case[0]}-{case[1].name}") for case in CASES])
def test_signal_during_a_run_stops_cleanly(bench_session, strategy: str, signum: signal.Signals, group: bool) -> None:
    session = bench_session(strategy)
    session.wait_until_timing(strategy)
    if strategy in PROCESS_STRATEGIES:
        assert session.descendants, "the benchmark had not started its worker processes"

    status, output = session.stop(signum, group)

    assert status == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output or "Terminated" in output, output
    if signum == signal.SIGTERM:
        assert "received SIGTERM" in output, output
    assert_nothing_left(session, output)
    # The only benchmark never finished its rounds: nothing is saved, and the run says so.
    assert not list(session.history.rglob("*.json")), output
    assert "no benchmark completed: nothing is saved." in output, output


# --- an interrupt at each phase of a benchmark, with the history on ------------------------------

INTERRUPT_PLUGIN = '''
"""Test-only strategy: serial that sends its own process FANBENCH_TEST_SIGNAL at FANBENCH_TEST_PHASE."""
import os
import signal

from strategies.registry import STRATEGIES
from strategies.serial import Serial

# setup, open, run:N (warm-up runs come first), close, teardown; fail:PHASE raises an ordinary error there instead.
PHASE = os.environ["FANBENCH_TEST_PHASE"]


def interrupt(phase):
    if phase == PHASE:
        os.kill(os.getpid(), getattr(signal, os.environ["FANBENCH_TEST_SIGNAL"]))
    if f"fail:{phase}" == PHASE:
        raise RuntimeError(f"test failure in {phase}")


class InterruptedSerial(Serial):
    name = "serial_interrupted"
    runs = 0

    def open(self):
        interrupt("open")
        super().open()

    def run(self, *args, **kwargs):
        type(self).runs += 1
        interrupt(f"run:{type(self).runs}")
        return super().run(*args, **kwargs)

    def close(self):
        super().close()
        interrupt("close")


STRATEGIES[InterruptedSerial.name] = InterruptedSerial


def pytest_runtest_setup(item):
    if "serial_interrupted" in item.nodeid:
        interrupt("setup")


def pytest_runtest_teardown(item):
    if "serial_interrupted" in item.nodeid:
        interrupt("teardown")
'''

ROUNDS = 3


@pytest.fixture
def bench(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run `pytest bench` (tiny workload, history in the test's folder) with the interrupting strategy available."""
    pytester.makepyfile(interrupt_plugin=INTERRUPT_PLUGIN)

    def run(*strategies: str, phase: str = "never", signum: str = "SIGINT", args: tuple[str, ...] = ()) -> pytest.RunResult:
        monkeypatch.setenv("FANBENCH_TEST_PHASE", phase)
        monkeypatch.setenv("FANBENCH_TEST_SIGNAL", signum)
        selected = [arg for name in strategies for arg in ("--strategy", name)]
        return bench_pytester_subprocess(
            pytester, "-p", "interrupt_plugin",
            f"--benchmark-storage=file://{pytester.path / 'history'}", "--model-size", "tiny", "--models", "2",
            "--frames", "4", "--frame-size", "32x32", "--batch", "1", "--rounds", str(ROUNDS), "--warmup", "1",
            "--threads", "default", "--scenario", "offline", "--provider", "cpu", "--no-report", *selected, *args)

    return run


def saved_runs(pytester: pytest.Pytester) -> list[Path]:
    return sorted((pytester.path / "history").rglob("*.json"))


PHASES = [("setup", "SIGINT"),  # pytest sets up the second benchmark's fixtures
          ("open", "SIGTERM"),  # the strategy opens its sessions
          ("run:1", "SIGINT"),  # warm-up: no timed round yet
          (f"run:{ROUNDS}", "SIGTERM"),  # in the timed rounds: some rounds timed, no extra_info yet
          ("close", "SIGINT"),  # after the timed rounds, before the outputs are checked
          ("teardown", "SIGTERM")]  # pytest tears the benchmark down


@pytest.mark.parametrize(("phase", "signum"), PHASES, ids=[f"{phase}-{signum}" for phase, signum in PHASES])
def test_interrupted_benchmark_is_not_saved_and_history_compares(bench, pytester: pytest.Pytester, phase: str,
                                                                  signum: str) -> None:
    interrupted = bench("serial", "serial_interrupted", phase=phase, signum=signum)

    assert interrupted.ret == pytest.ExitCode.INTERRUPTED, interrupted.stdout.str() + interrupted.stderr.str()
    if phase not in ("setup", "open"):  # its timing had started: pytest-benchmark held it to be saved
        interrupted.stdout.fnmatch_lines(["fanbench: not saved to the history, as they did not complete (interrupted or "
                                          "failed): test_strategy[[]serial_interrupted-*]; the 1 complete benchmark(s) "
                                          "are saved."])
    [saved] = saved_runs(pytester)
    [benchmark] = json.loads(saved.read_text())["benchmarks"]
    assert benchmark["name"].startswith("test_strategy[serial-")
    assert len(benchmark["extra_info"]["timing"]["rounds_wall_s"]) == benchmark["stats"]["rounds"] == ROUNDS

    # The next run compares with it, and gates on it, as with any complete run.
    again = bench("serial", args=("--benchmark-compare-fail=median:100000%",))
    assert again.ret == pytest.ExitCode.OK, again.stdout.str() + again.stderr.str()
    assert "timed different work" not in again.stdout.str()
    compared = compare_subprocess(*map(str, saved_runs(pytester)))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert benchmark["fullname"] in compared.stdout


def test_interrupted_first_benchmark_saves_nothing_and_says_so(bench, pytester: pytest.Pytester) -> None:
    interrupted = bench("serial_interrupted", phase=f"run:{ROUNDS}", signum="SIGINT")

    assert interrupted.ret == pytest.ExitCode.INTERRUPTED, interrupted.stdout.str() + interrupted.stderr.str()
    interrupted.stdout.fnmatch_lines(["*no benchmark completed: nothing is saved."])
    assert not saved_runs(pytester)
    assert bench("serial").ret == pytest.ExitCode.OK  # an empty history is no obstacle


def test_failed_benchmark_is_not_saved(bench, pytester: pytest.Pytester) -> None:
    # The strategy's close() raises after its rounds were timed: pytest-benchmark alone would save it as complete.
    failed = bench("serial", "serial_interrupted", phase="fail:close")

    assert failed.ret == pytest.ExitCode.TESTS_FAILED, failed.stdout.str() + failed.stderr.str()
    failed.assert_outcomes(passed=1, failed=1)
    [saved] = saved_runs(pytester)
    [benchmark] = json.loads(saved.read_text())["benchmarks"]
    assert benchmark["name"].startswith("test_strategy[serial-")


def test_history_with_a_partial_benchmark_from_an_older_fanbench_still_compares(bench, pytester: pytest.Pytester) -> None:
    assert bench("serial", "serial_interrupted").ret == pytest.ExitCode.OK
    [saved] = saved_runs(pytester)
    run = json.loads(saved.read_text())
    partial = run["benchmarks"][1]
    # As fanbench saved a benchmark interrupted in its timed rounds before it left such benchmarks out.
    partial["extra_info"] = {}
    partial["stats"].update(rounds=1, min=1e-9, max=1e-9, mean=1e-9, median=1e-9)
    saved.write_text(json.dumps(run))

    again = bench("serial", "serial_interrupted", args=("--benchmark-compare-fail=median:100000%",))
    assert again.ret == pytest.ExitCode.OK, again.stdout.str() + again.stderr.str()
    assert "timed different work" not in again.stdout.str()
    compared = compare_subprocess(*map(str, saved_runs(pytester)))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert f"note: {partial['fullname']} is not compared: a run saved it without fanbench's measurements" in compared.stdout
    assert run["benchmarks"][0]["fullname"] in compared.stdout
