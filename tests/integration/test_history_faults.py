"""The history survives what CI systems, full disks and other tools do to it (issue 20, items 1 and 5).

Each test runs the real `pytest bench` on a tiny workload and then the readers on its storage:
- a run saved while a SIGTERM arrives is whole or absent (before: a 0-byte file that stopped
  every later comparison);
- a storage too full for the run is refused before it starts (exit 4), and one that fills up
  by the end gets one line saying the run was not saved (before: a traceback and a truncated file);
- damaged and foreign files (0 bytes, truncated, no `fullname`, `machine_info: "x"`,
  `extra_info: null`) are each skipped with one warning naming them (before: INTERNALERROR,
  exit 3, or a traceback after the whole run), and the run compares with the good one.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.utils import get_machine_id

from bench.compare.saved import read_history
from tests.helpers.run_bench import ROOT, bench_subprocess, compare_subprocess, report_subprocess
from tests.integration.test_shared_memory import can_mount_a_private_tmpfs

RUN = ("--frames", "2", "--model-size", "tiny", "--models", "2", "--frame-size", "32x32", "--rounds", "1",
       "--warmup", "0", "--provider", "cpu", "--strategy", "serial", "--scenario", "offline", "--no-report")
DAMAGED = ("empty", "truncated", "no fullname", "machine_info x", "extra_info null")
needs_tmpfs = pytest.mark.skipif(not can_mount_a_private_tmpfs(),
                                 reason="needs root and unshare to mount a small tmpfs in a private mount namespace")


def damage(good: Path, kind: str, path: Path) -> None:
    """Write a copy of a good saved run, damaged as found in the wild."""
    text = good.read_text()
    data = json.loads(text)
    if kind == "empty":
        text = ""
    elif kind == "truncated":
        text = text[:8192]  # what a full disk left
    else:
        if kind == "no fullname":  # another tool's file
            for bench in data["benchmarks"]:
                del bench["fullname"]
        elif kind == "machine_info x":
            data["machine_info"] = "x"
        elif kind == "extra_info null":
            for bench in data["benchmarks"]:
                bench["extra_info"] = None
        text = json.dumps(data)
    path.write_text(text)


def left_behind(directory: Path) -> list[str]:
    """Anything in the storage that is not a saved run."""
    return sorted(path.name for path in directory.iterdir() if path.name.startswith(".") or path.suffix != ".json")


@pytest.mark.slow
def test_damaged_and_foreign_history_files_are_skipped_with_one_warning_each_and_the_run_compares(tmp_path):
    storage = tmp_path / "history"
    machine = storage / get_machine_id()
    first = bench_subprocess(*RUN, f"--benchmark-storage=file://{storage}")
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    (good,) = machine.glob("0001_*.json")
    bad = [machine / f"{number:04d}_{kind.replace(' ', '_')}.json" for number, kind in enumerate(DAMAGED, start=2)]
    for kind, path in zip(DAMAGED, bad, strict=True):
        damage(good, kind, path)

    second = bench_subprocess(*RUN, f"--benchmark-storage=file://{storage}")
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-6000:]
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output
    for path in bad:
        assert output.count(str(path)) == 1, (path, output[-6000:])  # one warning, naming it
    assert f"Comparing against benchmarks from: {get_machine_id()}/{good.name}" in output
    saved = sorted(machine.glob("0007_*.json"))
    assert len(saved) == 1, sorted(machine.iterdir())
    read_history(saved[0], compared=True)
    assert left_behind(machine) == []

    compared = compare_subprocess(str(machine))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert f"comparing {good.name} (OLD) with {saved[0].name} (NEW)" in compared.stdout
    report = report_subprocess(str(machine), "--trend", "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stdout + report.stderr
    for path in bad:
        assert compared.stderr.count(str(path)) == 1, compared.stderr
        assert report.stderr.count(str(path)) == 1, report.stderr
    assert "trend over 2 saved runs" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_a_sigterm_while_the_run_is_saved_leaves_it_whole_and_the_next_run_compares(tmp_path):
    """The SIGTERM lands where pytest-benchmark had created the file and was serialising the run
    (about 30 ms for 2 MB; before: a 0-byte file in 2 of 5 tries, here every time)."""
    plugin = tmp_path / "sigterm_in_save.py"
    plugin.write_text(
        "import os, signal, time\n"
        "from pytest_benchmark import utils\n"
        "from pytest_benchmark.storage import file\n"
        "real = utils.safe_dumps\n"
        "def dumps_after_a_sigterm(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.5)\n"
        "    return real(*args, **kwargs)\n"
        "def pytest_configure(config):\n"
        "    utils.safe_dumps = file.safe_dumps = dumps_after_a_sigterm\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    storage = tmp_path / "history"
    machine = storage / get_machine_id()
    signalled = bench_subprocess(*RUN, f"--benchmark-storage=file://{storage}", "-p", "sigterm_in_save", env=env)
    assert signalled.returncode != 0, signalled.stdout + signalled.stderr  # the SIGTERM still ends the run
    saved = sorted(machine.glob("*.json"))
    assert len(saved) == 1, sorted(machine.iterdir())  # whole: it was being written when the signal came
    read_history(saved[0], compared=True)
    assert left_behind(machine) == []

    after = bench_subprocess(*RUN, f"--benchmark-storage=file://{storage}")
    output = after.stdout + after.stderr
    assert after.returncode == 0, output[-4000:]
    assert f"Comparing against benchmarks from: {get_machine_id()}/{saved[0].name}" in output
    assert "Skipped" not in output
    assert left_behind(machine) == []


def run_on_a_small_disk(tmp_path: Path, fill_kb: int, *args: str, env: dict[str, str] | None = None
                        ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`pytest bench` with its storage on a 200 kB tmpfs (private to the run) of which `fill_kb` are
    taken; also what the storage holds afterwards (the tmpfs is gone once the run ends)."""
    disk, listing = tmp_path / "disk", tmp_path / "listing.txt"
    disk.mkdir()
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "bench", *RUN,
               f"--benchmark-storage=file://{disk / 'history'}", *args]
    script = (f"mount -t tmpfs -o size=200k tmpfs {disk} && "
              f"{{ [ {fill_kb} -eq 0 ] || dd if=/dev/zero of={disk / 'filler'} bs=1k count={fill_kb} 2>/dev/null; }} && "
              f"{{ {' '.join(map(shlex.quote, command))}; status=$?; "
              f"find {disk / 'history'} -type f > {listing}; exit $status; }}")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=env, check=False)
    files = listing.read_text().split() if listing.exists() else []
    return result, files


@pytest.mark.slow
@needs_tmpfs
def test_a_storage_too_full_for_the_run_is_refused_before_it_starts(tmp_path):
    """Before, the start-up check created an empty file, passed, and the run ended in a traceback."""
    result, files = run_on_a_small_disk(tmp_path, 185)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    refusal = [line for line in output.splitlines() if "--benchmark-storage" in line]
    assert len(refusal) == 1, output
    assert "kB free in" in refusal[0]
    assert "this run needs about" in refusal[0]
    assert refusal[0].endswith("free some space, give another directory, or run with --no-history.")
    assert "Traceback" not in output
    assert files == []


@pytest.mark.slow
@needs_tmpfs
def test_a_disk_that_fills_up_by_the_end_gets_one_line_and_no_partial_file(tmp_path):
    """The disk has room at the start; a plugin fills it just before the run is saved (ENOSPC on
    the write). Before: a traceback and an 8,192-byte truncated file."""
    (tmp_path / "fill_the_disk.py").write_text(
        "import os\n"
        "def pytest_benchmark_update_json(config, benchmarks, output_json):\n"
        "    with open(os.environ['FILLER'], 'ab', buffering=0) as filler:\n"
        "        try:\n"
        "            while filler.write(bytes(4096)):\n"
        "                pass\n"
        "        except OSError:\n"
        "            pass\n")
    env = {**os.environ, "FILLER": str(tmp_path / "disk" / "filler"), "COLUMNS": "1000",  # the line unwrapped
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result, files = run_on_a_small_disk(tmp_path, 0, "-p", "fill_the_disk", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    directory = tmp_path / "disk" / "history" / get_machine_id()
    assert (f"fanbench: this run was NOT saved to the history: cannot write into {str(directory)!r}: No space left "
            "on device; free some space there or give another --benchmark-storage, and run again.") in output
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output
    assert files == []  # no partial file, no temporary file
