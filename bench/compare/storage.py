"""The history as `pytest bench` writes and reads it: whole files only.

pytest-benchmark's FileStorage creates the final file name, then serialises the run (about 30 ms for a
2 MB run), then writes it: a SIGTERM in between left a 0-byte file, a full disk a truncated one, and
either stopped every later comparison. `AtomicFileStorage` writes under a hidden temporary name in the
same directory, fsyncs and links it to its final name, with SIGINT and SIGTERM held until the file is
whole or gone; a failure leaves nothing and is reported in one line (`failure`), not raised.
`readable_runs` checks each saved run first (`saved.history_problem`): a foreign or damaged file is
skipped with a warning instead of crashing pytest-benchmark or fanbench's hooks.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from pytest_benchmark import utils
from pytest_benchmark.logger import PytestBenchmarkWarning
from pytest_benchmark.storage.file import FileStorage

from bench.compare.saved import read_history
from bench.interrupts import signals_held
from bench.measure.measurement import HistoryError

# What one saved run takes, generously rounded up from measured files: a run's machine_info and
# commit_info 4.9 kB; a benchmark of 2 frames x 4 models 8.5 kB, of which 0.85 kB are its 8 calls in the
# timeline (about 110 B a call; 20 frames x 4 models: 17 kB).
RUN_BYTES = 16_000
BENCHMARK_BYTES = 12_000
CALL_BYTES = 200
ROUND_BYTES = 64
_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".tmp"  # neither pytest-benchmark's NNNN_*.json nor *.json matches it
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


class HistoryWarning(PytestBenchmarkWarning):
    """A history file skipped: damaged, or not one pytest-benchmark and fanbench can read."""


def expected_run_bytes(benchmarks: int, frames: int, models: int, rounds: int) -> int:
    """About what a saved run of this size takes (an upper estimate: every frame a call per model)."""
    return RUN_BYTES + benchmarks * (BENCHMARK_BYTES + CALL_BYTES * frames * models + ROUND_BYTES * rounds)


def size_text(count: float) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def free_space_problem(directory: Path, needed: int) -> str | None:
    """Why a run of `needed` bytes cannot be saved in `directory` (None: it fits)."""
    free = shutil.disk_usage(directory).free
    if free >= needed:
        return None
    return f"{size_text(free)} free in {str(directory)!r}, and this run needs about {size_text(needed)} to be saved"


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    with suppress(OSError):  # not every file system can fsync a directory; the file itself is synced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link_no_clobber(source: Path, target: Path) -> None:
    """Give `source` the name `target`, never replacing a file of that name (FileExistsError)."""
    try:
        os.link(source, target)
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS or isinstance(error, FileExistsError):
            raise
        if target.exists():  # a file system without hard links: rename, after a check
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(source, target)


class AtomicFileStorage(FileStorage):
    """pytest-benchmark's FileStorage, saving each run whole or not at all. Two runs saving at once both keep
    their file: a number taken meanwhile is not overwritten, the next one is used."""

    failure: str | None = None  # why the last save failed, in one line

    @classmethod
    def replacing(cls, storage: FileStorage) -> AtomicFileStorage:
        return cls(storage.path, logger=storage.logger, default_machine_id=storage.default_machine_id)

    def save(self, output_json: dict[str, Any], save: str) -> None:
        directory = self.get("")  # the machine's directory, created if missing
        self.failure = None
        temporary: Path | None = None
        saved: Path | None = None
        try:
            with signals_held(replay=True):  # a signal waits for the file to be whole, then acts
                try:
                    fd, name = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{save}-", suffix=_TEMP_SUFFIX, dir=directory)
                    temporary = Path(name)
                    os.chmod(fd, 0o666 & ~_umask())  # mkstemp's 0600: give the mode open() gives
                    with os.fdopen(fd, "wb") as file:
                        file.write(utils.safe_dumps(output_json, ensure_ascii=True, indent=4).encode())
                        file.flush()
                        os.fsync(file.fileno())
                    for _ in range(1000):
                        target = self.get(f"{self._next_num}_{save}.json")
                        with suppress(FileExistsError):  # another run took this number meanwhile: try the next
                            _link_no_clobber(temporary, target)
                            saved = target
                            break
                    else:
                        raise FileExistsError(errno.EEXIST, "no free run number after 1000 tries", str(directory))
                    _fsync_directory(directory)
                finally:
                    if temporary is not None:
                        temporary.unlink(missing_ok=True)
        except OSError as error:
            if saved is None:
                full = error.errno in (errno.ENOSPC, errno.EDQUOT)
                self.failure = (f"cannot write into {str(directory)!r}: {error.strerror or error}; "
                                f"{'free some space there' if full else 'make it writable'} or give another "
                                "--benchmark-storage, and run again")
                return
        self.logger.info(f"Saved benchmark data in: {saved}")


def readable_runs(storage: FileStorage, glob: str = "[0-9][0-9][0-9][0-9]_") -> tuple[list[tuple[Path, Any]], list[str]]:
    """The saved runs matching `glob` that read, oldest first, as (path relative to the storage, the run's
    JSON); and one line for each damaged or foreign file passed over."""
    runs, skipped = [], []
    for path in storage.query(glob):
        try:
            data = read_history(path, compared=True)
        except HistoryError as error:
            skipped.append(f"{error} Skipped: not compared (move it out of the history to silence this).")
            continue
        runs.append((path.relative_to(storage.path) if path.is_relative_to(storage.path) else path, data))
    return runs, skipped
