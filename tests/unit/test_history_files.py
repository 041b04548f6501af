"""The history's files: saved whole or not at all (bench/compare/storage.py), and checked before
anything reads them (bench/compare/saved.py history_problem)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark import utils
from pytest_benchmark.storage.file import FileStorage

from bench.cases import benchmarks
from bench.compare import storage as storage_module
from bench.compare.saved import history_problem, load_runs, read_history
from bench.compare.storage import AtomicFileStorage, expected_run_bytes, readable_runs
from bench.conftest import check_room
from bench.interrupts import signals_held
from bench.measure.measurement import HistoryError
from tests.helpers.runs import parse_args

GOOD = Path(__file__).resolve().parents[1] / "data" / "history_main.json"  # saved by a real run
MACHINE = "Linux-test-machine"


class Lines:
    """pytest-benchmark's logger, as far as the storage uses it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str, **_: Any) -> None:
        self.lines.append(text)

    warning = info


def good_run() -> dict[str, Any]:
    return json.loads(GOOD.read_text())


def damaged(kind: str) -> str:
    """A history file of one of the kinds found in the wild, as text."""
    data = good_run()
    if kind == "empty":
        return ""
    if kind == "truncated":
        return GOOD.read_text()[:4096]
    if kind == "no fullname":
        for bench in data["benchmarks"]:
            del bench["fullname"]
    elif kind == "machine_info x":
        data["machine_info"] = "x"
    elif kind == "extra_info null":
        data["benchmarks"][0]["extra_info"] = None
    elif kind == "no stats":
        del data["benchmarks"][1]["stats"]
    elif kind == "a list":
        data = [data]
    return json.dumps(data)


KINDS = {"empty": "empty", "truncated": "cannot read a history file", "no fullname": "benchmark 0 has no 'fullname'",
         "machine_info x": "'machine_info' is str, not an object",
         "extra_info null": "'extra_info' is NoneType, not an object", "no stats": "'stats' lacks a number",
         "a list": "not a JSON object"}


def machine_dir(root: Path) -> Path:
    directory = root / MACHINE
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_a_saved_run_is_the_whole_file_under_the_next_number_and_nothing_else(tmp_path):
    logger = Lines()
    storage = AtomicFileStorage(tmp_path, logger=logger, default_machine_id=MACHINE)
    storage.save(good_run(), "first")
    storage.save(good_run(), "second")
    directory = tmp_path / MACHINE
    assert files_in(directory) == ["0001_first.json", "0002_second.json"]  # no temporary file left
    assert read_history(directory / "0002_second.json") == good_run()
    mask = os.umask(0)
    os.umask(mask)
    assert (directory / "0001_first.json").stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would make it
    assert storage.failure is None
    assert logger.lines == [f"Saved benchmark data in: {directory / '0001_first.json'}",
                            f"Saved benchmark data in: {directory / '0002_second.json'}"]


def test_a_run_number_another_run_took_meanwhile_is_not_overwritten(tmp_path):
    class Racing(AtomicFileStorage):
        # The other run (the same --benchmark-save name) saved 0001 between the count and the link.
        numbers = iter(["0001", "0002"])

        @property
        def _next_num(self) -> str:
            return next(self.numbers)

    directory = machine_dir(tmp_path)
    (directory / "0001_mine.json").write_text("the other run")
    storage = Racing(tmp_path, logger=Lines(), default_machine_id=MACHINE)
    storage.save(good_run(), "mine")
    assert (directory / "0001_mine.json").read_text() == "the other run"
    assert read_history(directory / "0002_mine.json") == good_run()
    assert files_in(directory) == ["0001_mine.json", "0002_mine.json"]


@pytest.mark.parametrize("failing", ["fsync", "link"])
def test_a_full_disk_saves_nothing_and_says_why_in_one_line(tmp_path, monkeypatch, failing):
    """ENOSPC while writing (or naming) the file: before, pytest-benchmark left a truncated file and a traceback."""
    def no_space(*args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage_module.os, failing, no_space)
    logger = Lines()
    storage = AtomicFileStorage(tmp_path, logger=logger, default_machine_id=MACHINE)
    storage.save(good_run(), "full")  # does not raise: pytest-benchmark would turn it into an INTERNALERROR
    assert files_in(tmp_path / MACHINE) == []
    assert storage.failure == (f"cannot write into {str(tmp_path / MACHINE)!r}: No space left on device; free some "
                               "space there or give another --benchmark-storage, and run again")
    assert logger.lines == []


def test_a_signal_during_the_write_takes_effect_once_the_file_is_whole(tmp_path, monkeypatch):
    """SIGTERM where pytest-benchmark had already created the file and was still serialising it
    (a 0-byte file in 2 of 5 tries): held until the file is whole, then handled as before."""
    class Terminated(Exception):
        pass

    def terminated(signum: int, frame: Any) -> None:
        raise Terminated

    real_dumps = utils.safe_dumps
    seen: list[list[str]] = []

    def dumps_after_a_signal(*args: Any, **kwargs: Any) -> str:
        seen.append(files_in(tmp_path / MACHINE))  # the temporary file exists: the signal lands mid-write
        os.kill(os.getpid(), signal.SIGTERM)
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(utils, "safe_dumps", dumps_after_a_signal)
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        storage = AtomicFileStorage(tmp_path, logger=Lines(), default_machine_id=MACHINE)
        with pytest.raises(Terminated):
            storage.save(good_run(), "signalled")
        assert signal.getsignal(signal.SIGTERM) is terminated  # the handler in place before is back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(seen) == 1
    assert len(seen[0]) == 1
    assert seen[0][0].endswith(".tmp")
    assert files_in(tmp_path / MACHINE) == ["0001_signalled.json"]
    assert read_history(tmp_path / MACHINE / "0001_signalled.json") == good_run()


def test_a_failure_inside_the_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def unserialisable(*args: Any, **kwargs: Any) -> str:
        raise TypeError("not JSON serialisable")

    monkeypatch.setattr(utils, "safe_dumps", unserialisable)
    with pytest.raises(TypeError):
        AtomicFileStorage(tmp_path, logger=Lines(), default_machine_id=MACHINE).save(good_run(), "x")
    assert files_in(tmp_path / MACHINE) == []


def test_signals_held_are_delivered_after_the_block():
    reached = []

    def interrupted_in_the_block() -> None:
        with signals_held(replay=True):
            os.kill(os.getpid(), signal.SIGINT)
            reached.append(True)

    with pytest.raises(KeyboardInterrupt):
        interrupted_in_the_block()
    assert reached == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_good_history_file_has_no_problem():
    assert history_problem(good_run()) is None
    legacy = good_run()  # null commit_info and datetime, no extra_info, no ops: older pytest-benchmark files
    legacy["commit_info"] = legacy["datetime"] = None
    for bench in legacy["benchmarks"]:
        del bench["extra_info"], bench["stats"]["ops"]
    assert history_problem(legacy) is None
    assert history_problem(legacy, compared=True) is None


def test_a_file_the_readers_take_may_lack_what_the_comparison_needs():
    """pytest-benchmark's comparison table reads every statistic: a file without them is not compared."""
    trimmed = good_run()
    del trimmed["benchmarks"][0]["stats"]["iqr"]
    assert history_problem(trimmed) is None
    assert "'stats' lacks a number among min, max, mean, stddev, median, iqr" in history_problem(trimmed, compared=True)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_damaged_or_foreign_history_file_is_named_with_what_is_wrong(tmp_path, kind):
    path = tmp_path / "0002_bad.json"
    path.write_text(damaged(kind))
    with pytest.raises(HistoryError) as raised:
        read_history(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert KINDS[kind] in str(raised.value)


def test_the_runs_a_comparison_chooses_from_are_those_that_read_and_each_bad_one_is_named_once(tmp_path):
    directory = machine_dir(tmp_path)
    (directory / "0001_good.json").write_text(GOOD.read_text())
    bad = [directory / f"{number:04d}_bad.json" for number in range(2, 2 + len(KINDS))]
    for path, kind in zip(bad, KINDS, strict=True):
        path.write_text(damaged(kind))
    storage = FileStorage(tmp_path, logger=Lines(), default_machine_id=MACHINE)
    runs, skipped = readable_runs(storage)
    assert [path for path, _ in runs] == [Path(MACHINE) / "0001_good.json"]
    assert len(skipped) == len(bad)
    for path in bad:
        assert sum(str(path) in line for line in skipped) == 1
    # A number given on the command line: its file, when it reads; nothing, with the reason, when not.
    assert [path for path, _ in readable_runs(storage, "0001")[0]] == [Path(MACHINE) / "0001_good.json"]
    runs, skipped = readable_runs(storage, "0003")
    assert runs == []
    assert len(skipped) == 1
    assert str(directory / "0003_bad.json") in skipped[0]


def test_the_readers_skip_a_bad_file_and_keep_the_others(tmp_path):
    good = tmp_path / "0001_good.json"
    good.write_text(GOOD.read_text())
    bad = tmp_path / "0002_bad.json"
    bad.write_text(damaged("extra_info null"))
    runs, skipped = load_runs([good, bad])
    assert [run.path for run in runs] == [good]
    assert len(skipped) == 1
    assert skipped[0].startswith(f"{bad}: ")


def test_a_storage_without_room_for_the_run_is_refused_before_it_starts(tmp_path, monkeypatch):
    """The start-up check created an empty file and passed on a nearly full disk."""
    options = dataclasses.replace(parse_args(["--frames", "40", "--rounds", "3", "--strategy", "serial",
                                              "--scenario", "offline"]), storage=f"file://{tmp_path}")
    assert len(benchmarks(options)[0]) == 2
    assert options.workload.model_count == 4
    real = storage_module.shutil.disk_usage

    def nearly_full(path: Any) -> Any:
        return real(path)._replace(free=30_000)

    monkeypatch.setattr(storage_module.shutil, "disk_usage", nearly_full)
    needed = expected_run_bytes(2, 40, 4, 3)
    with pytest.raises(pytest.UsageError) as refused:
        check_room(options, tmp_path)
    assert str(refused.value).startswith(f"--benchmark-storage {options.storage!r}: 30 kB free in ")
    assert f"this run needs about {needed / 1e3:.0f} kB to be saved; free some space" in str(refused.value)
    assert "\n" not in str(refused.value)
    monkeypatch.setattr(storage_module.shutil, "disk_usage", real)
    check_room(options, tmp_path)  # room enough
