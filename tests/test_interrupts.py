"""Ctrl-C and SIGTERM during `pytest bench`, for real: the session stops promptly and cleanly.

Each test starts `pytest bench` in a subprocess with a workload that would take minutes, waits
until the benchmark is timing, sends the signal, and checks that the session ends as
interrupted, that no process it started is left, and that nothing new is left in /dev/shm or
in its temporary directory. The waits are bounds for a hang, never timing assertions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from strategies import STRATEGIES

REPO = Path(__file__).resolve().parents[1]
SHM = Path("/dev/shm")
ONNXRUNTIME_FILES = {".ses"}
HANG_BOUND_S = 120  # far above a prompt stop; reaching it means the session did not stop
PROCESS_STRATEGIES = [name for name in ("processes", "processes_shm") if name in STRATEGIES]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="uses /dev/shm and Linux signals")]


def shm_mapped_by(processes: list[psutil.Process]) -> set[str]:
    """/dev/shm entries (shared memory, named semaphores) these processes have mapped.

    Other sessions on the same machine use /dev/shm too, so the check is on what the
    benchmark itself held when it was signalled, not on any new entry.
    """
    names = set()
    for process in processes:
        try:
            names |= {Path(region.path).name for region in process.memory_maps(grouped=True)
                      if region.path.startswith(f"{SHM}/")}
        except psutil.Error:
            continue
    return names


class BenchSession:
    """`pytest bench` running in a subprocess in its own process group, as a terminal runs it."""

    def __init__(self, tmp_path: Path, strategy: str):
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        command = [sys.executable, "-m", "pytest", "bench", "-v", "-p", "no:cacheprovider", "--no-history",
                   f"--basetemp={tmp_path / 'basetemp'}", "--strategy", strategy, "--model-size", "tiny",
                   "--models", "2", "--frames", "100", "--frame-size", "32x32", "--batch", "1", "--rounds", "100000",
                   "--warmup", "0", "--provider", "cpu"]
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.output: list[str] = []
        self.descendants: list[psutil.Process] = []
        self.shm: set[str] = set()

    def wait_until_timing(self, strategy: str) -> None:
        """Read the output until the benchmark has started, then give it a moment to be timing."""
        assert self.process.stdout is not None
        # Raw reads: with -v the test's line is only ended when the test is, which it never is here.
        marker, text = f"test_strategy[{strategy}-", ""
        while marker not in text:
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                pytest.fail(f"pytest bench ended before its benchmark started:\n{text}")
            text += chunk.decode(errors="replace")
        self.output.append(text)
        time.sleep(2.0)  # models built, reference run, strategy opened: now inside benchmark.pedantic
        main = psutil.Process(self.process.pid)
        self.descendants = main.children(recursive=True)
        self.shm = shm_mapped_by([main, *self.descendants])

    def stop(self, signum: signal.Signals, group: bool) -> tuple[int, str]:
        if group:  # Ctrl-C in a terminal signals the whole foreground process group
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        rest, _ = self.process.communicate(timeout=HANG_BOUND_S)
        return self.process.returncode, "".join(self.output) + rest.decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate()


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
    _, alive = psutil.wait_procs(session.descendants, timeout=10)  # the resource tracker exits just after
    assert not alive, f"processes left running: {alive}\n{output}"
    leaked = sorted(name for name in session.shm if (SHM / name).exists())
    assert not leaked, f"left in /dev/shm: {leaked}"
    # onnxruntime writes $TMPDIR/.ses (a timestamp and a session id) on import and keeps it on purpose.
    left = [path.name for path in session.tmpdir.iterdir() if path.name not in ONNXRUNTIME_FILES]
    assert not left, f"temporary files left: {left}"
