"""Every way a test starts `pytest bench` or one of fanbench's commands, in one place.

- `bench_subprocess`: `python -m pytest bench` in a fresh interpreter, as a user runs it.
- `bench_inprocess`: pytester, in this process (its worker processes are this test's children).
- `bench_pytester_subprocess`: pytester in a subprocess, where a test plugin written into
  `pytester.path` is loaded with `-p NAME`.
- `BenchSession` (tests/integration/test_interrupts.py): a Popen in its own session, for signals.
- `compare_subprocess`, `report_subprocess`: `python -m bench.compare|report`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The one tiny run: 2 models of 32x32 on 2 frames, one round, on the CPU on any machine (a GPU host
# would resolve auto to CUDA), nothing saved or written.
TINY_RUN = ("--frames", "2", "--model-size", "tiny", "--frame-size", "32x32", "--models", "2", "--rounds", "1",
            "--warmup", "0", "--provider", "cpu", "--no-history", "--no-report")


def pytest_subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -p no:cacheprovider ARGS` in the repository root."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def bench_subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`pytest bench ARGS` in a subprocess."""
    return pytest_subprocess("bench", *args, env=env, timeout=timeout)


def bench_inprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """`pytest bench ARGS` in this process, with the repository's configuration."""
    return pytester.runpytest(str(ROOT / "bench"), "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                              "-p", "no:cacheprovider", *args)


def bench_pytester_subprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """`pytest bench ARGS` in a subprocess started in `pytester.path`: `-p NAME` loads a plugin written there."""
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
