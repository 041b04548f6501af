"""Every way a test starts `pytest bench` or one of fanbench's commands, in one place.

- `bench_subprocess`: `python -m pytest bench` in a fresh interpreter, as a user runs it.
- `bench_inprocess`: pytester, in this process (its worker processes are this test's children).
- `bench_pytester_subprocess`: pytester in a subprocess, where a test plugin written into
  `pytester.path` is loaded with `-p NAME`.
- `BenchSession`: a Popen in its own session, as a terminal starts it, for signals.
- `compare_subprocess`, `report_subprocess`: `python -m bench.compare|report`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")
HANG_BOUND_S = 120  # far above a prompt stop; reaching it means the session did not stop

# The one tiny run: 2 models of 32x32 on 2 frames, one round, on the CPU on any machine (a GPU host
# would resolve auto to CUDA), nothing saved or written. Capacity probes of a quarter second: tiny models
# serve tens of cameras, and the default 2.5 s probes would make each streaming benchmark's search ~20 s.
TINY_RUN = ("--frames", "2", "--model-size", "tiny", "--frame-size", "32x32", "--models", "2", "--rounds", "1",
            "--warmup", "0", "--provider", "cpu", "--no-history", "--no-report", "--probe-seconds", "0.25")


# fanbench fits its output to the terminal (COLUMNS, else 80 without one), wrapping long lines; the tests match
# whole lines, so the runs they start get a terminal wider than any line (tests/unit/test_terminal_width.py
# checks the fitting itself).
WIDE = {"COLUMNS": "1000"}


def pytest_subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -p no:cacheprovider ARGS` in the repository root."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**(env or os.environ), **WIDE},
                          check=False)


def bench_subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`pytest bench ARGS` in a subprocess."""
    return pytest_subprocess("bench", *args, env=env, timeout=timeout)


def bench_inprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """`pytest bench ARGS` in this process, with the repository's configuration."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", WIDE["COLUMNS"])
        return pytester.runpytest(str(ROOT / "bench"), "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                                  "-p", "no:cacheprovider", *args)


def bench_pytester_subprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """`pytest bench ARGS` in a subprocess started in `pytester.path`: `-p NAME` loads a plugin written there."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", WIDE["COLUMNS"])
        return pytester.runpytest_subprocess(str(ROOT / "bench"), "-p", "no:cacheprovider", f"--rootdir={ROOT}", *args)


def _module(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def compare_subprocess(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m bench.compare ARGS`."""
    return _module("bench.compare", *args, timeout=timeout)


def report_subprocess(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m bench.report ARGS`."""
    return _module("bench.report", *args, timeout=timeout)


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

    def __init__(self, tmp_path: Path, strategy: str, *args: str):
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.history = tmp_path / "history"
        command = [sys.executable, "-m", "pytest", "bench", "-v", "-p", "no:cacheprovider",
                   f"--benchmark-storage=file://{self.history}",
                   f"--basetemp={tmp_path / 'basetemp'}", "--strategy", strategy, "--model-size", "tiny",
                   "--models", "2", "--frames", "100", "--frame-size", "32x32", "--batch", "1", "--rounds", "100000",
                   "--warmup", "0", "--provider", "cpu", *args]
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "PYTHONUNBUFFERED": "1", **WIDE}
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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


class PausedBench:
    """`pytest bench ARGS` in its own session, as a terminal, CI runner or systemd starts it, with
    tests/helpers/faults.py pausing it at `phase` (see PHASES there) until the test signals it."""

    def __init__(self, tmp_path: Path, phase: str, *args: str):
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        self.paused = tmp_path / "paused"
        self.paused.unlink(missing_ok=True)
        self.log = tmp_path / "output.txt"
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "PYTHONUNBUFFERED": "1",
               "FANBENCH_TEST_PAUSE": phase, "FANBENCH_TEST_PAUSED": str(self.paused), **WIDE}
        command = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "-p", "tests.helpers.faults",
                   f"--basetemp={tmp_path / 'basetemp'}", *args]
        with self.log.open("wb") as log:  # a file, not a pipe: nothing blocks on a full pipe while paused
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.descendants: list[psutil.Process] = []
        self.shm: set[str] = set()

    def wait_paused(self) -> None:
        """Until the run pauses at its phase; then note the processes it started and their /dev/shm."""
        deadline = time.monotonic() + HANG_BOUND_S * 3  # start-up and a reference run on a busy machine
        while not self.paused.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pytest bench never paused (status {self.process.poll()}):\n{self.output()}")
            time.sleep(0.1)
        main = psutil.Process(self.process.pid)
        self.descendants = main.children(recursive=True)
        self.shm = shm_mapped_by([main, *self.descendants])

    def signal_group(self, signum: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
        """Signal every process of the run's group, as `timeout`, a CI cancel or systemd do; its status and output."""
        os.killpg(self.process.pid, signum)
        self.process.wait(timeout=HANG_BOUND_S)
        return self.process.returncode, self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# onnxruntime writes $TMPDIR/.ses (a timestamp and a session id) on import and keeps it on purpose.
ONNXRUNTIME_FILES = {".ses"}


def assert_nothing_left(run: Any, output: str) -> None:
    """A launched run (BenchSession, PausedBench) left no process, /dev/shm block or temporary file."""
    _, alive = psutil.wait_procs(run.descendants, timeout=10)  # the resource tracker exits just after
    assert not alive, f"processes left running: {alive}\n{output}"
    leaked = sorted(name for name in run.shm if (SHM / name).exists())
    assert not leaked, f"left in /dev/shm: {leaked}"
    left = [path.name for path in run.tmpdir.iterdir() if path.name not in ONNXRUNTIME_FILES]
    assert not left, f"temporary files left: {left}\n{output}"
