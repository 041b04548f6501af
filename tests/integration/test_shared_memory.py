"""Shared memory for `processes_shm`: nothing is left in /dev/shm after success, failure,
a killed worker or an interrupted run; workers attach without registering with the tracker;
a /dev/shm too small for the frames skips the strategy instead of killing the run (SIGBUS)."""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from multiprocessing import resource_tracker
from pathlib import Path

import numpy as np
import pytest

from strategies import ModelInput, StrategyError, StrategyUnavailable, Workload, get_strategy
from strategies.processes_shm import ProcessesShm
from strategies.runtime import shared_frames
from strategies.runtime.shared_frames import SharedFrames, SharedMemoryFull, attach, block_prefix
from tests.helpers.equivalence import assert_equal_to_serial
from tests.helpers.workloads import tiny_workload, with_failing_model

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs Linux's /dev/shm to see shared-memory blocks")


def our_blocks() -> list[str]:
    """This test process's blocks (other processes on the machine may have their own)."""
    return sorted(entry.name for entry in SHM.iterdir() if entry.name.startswith(block_prefix()))


@pytest.fixture(autouse=True)
def nothing_left_behind():
    assert our_blocks() == []
    yield
    assert our_blocks() == []


def test_blocks_hold_the_array_and_are_unlinked_on_close():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    shared = SharedFrames()
    try:
        spec = shared.share(array)
        empty = shared.share(np.zeros((0, 3), np.float32))
        assert our_blocks() == sorted([spec.name, empty.name])
        assert spec.name.startswith("fanbench_")
        assert (spec.shape, spec.dtype) == ((2, 3, 4), "<f4")
    finally:
        shared.close()
    assert our_blocks() == []
    shared.close()  # idempotent


def test_attach_maps_read_only_without_registering_with_the_resource_tracker(monkeypatch):
    shared = SharedFrames()
    try:
        spec = shared.share(np.arange(6, dtype=np.float32))
        registered = []

        def recorder(name, rtype):
            registered.append(name)

        monkeypatch.setattr(resource_tracker, "register", recorder)
        block, view = attach(spec)
        try:
            np.testing.assert_array_equal(view, np.arange(6, dtype=np.float32))
            assert not view.flags.writeable
            assert registered == []
        finally:
            del view
            block.close()
        assert resource_tracker.register is recorder  # the suppression inside attach was undone
        assert registered == []
    finally:
        shared.close()


@pytest.mark.slow
def test_nothing_left_after_a_successful_run(model_dir):
    workload = tiny_workload(model_dir, models=2, frames=4, batch=1, size=8)
    with get_strategy("serial")(workload) as serial:
        reference = serial.run().outputs
    with ProcessesShm(workload) as strategy:
        assert our_blocks() == sorted(strategy.frames.names)
        assert len(strategy.frames.names) == 1
        assert_equal_to_serial(workload, reference, strategy.run().outputs)


@pytest.mark.slow
def test_one_block_per_distinct_input_array(model_dir):
    workload = tiny_workload(model_dir, models=2, frames=3, batch=1, size=8)
    first, second = workload.models
    separate = Workload((first, ModelInput(second.name, second.path, second.frames.copy())))
    with ProcessesShm(separate) as strategy:
        assert len(strategy.frames.names) == 2


@pytest.mark.slow
def test_nothing_left_after_a_model_fails_at_run_time(model_dir):
    broken = with_failing_model(tiny_workload(model_dir, models=2, frames=4, batch=1, size=8), model_dir)
    with ProcessesShm(broken) as strategy:
        with pytest.raises(StrategyError, match=r"processes_shm: worker 'process-\d' \(model 'fails_at_run'\) failed: "
                                                r"model 'fails_at_run' failed on frame 0"):
            strategy.run()
        assert our_blocks() != []  # a failing model leaves the workers usable until close
        with pytest.raises(StrategyError, match="fails_at_run"):
            strategy.run()


@pytest.mark.slow
def test_nothing_left_after_open_fails(model_dir, tmp_path):
    workload = tiny_workload(model_dir, models=1, frames=2, batch=1, size=8)
    missing = Workload((ModelInput("missing", tmp_path / "missing.onnx", workload.models[0].frames),))
    with pytest.raises(StrategyError, match="'missing': could not start"), ProcessesShm(missing):
        pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def long_streaming_workload(model_dir: Path) -> Workload:
    # 100 frames 0.1 s apart: the run cannot end before 10 s, long after the event below.
    return tiny_workload(model_dir, models=2, frames=100, batch=1, size=8)


@pytest.mark.slow
def test_nothing_left_after_a_worker_is_killed(model_dir):
    with ProcessesShm(long_streaming_workload(model_dir)) as strategy:
        victim = strategy.pool.processes[1].pid
        timer = threading.Timer(0.5, os.kill, (victim, signal.SIGKILL))
        timer.start()
        try:
            with pytest.raises(StrategyError, match=r"worker 'process-1' \(model '.*seed1'\) died \(killed by signal SIGKILL\)"):
                strategy.run(period=0.1)
        finally:
            timer.cancel()
        assert our_blocks() == []  # released at once, not only when the `with` ends
        with pytest.raises(StrategyError, match="open a new one"):
            strategy.run()


@pytest.mark.slow
def test_nothing_left_after_an_interrupted_run(model_dir):
    with ProcessesShm(long_streaming_workload(model_dir)) as strategy:
        workers = [process.pid for process in strategy.pool.processes]
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                strategy.run(period=0.1)
        finally:
            timer.cancel()
        assert our_blocks() == []
        assert not any(alive(pid) for pid in workers)  # the workers were stopped and reaped too


# --- a /dev/shm too small for the frames ------------------------------------------------------

def test_too_little_free_shared_memory_skips_before_any_block_or_worker(model_dir, monkeypatch):
    workload = tiny_workload(model_dir, models=2, frames=4, batch=1, size=8)
    needed = workload.models[0].frames.nbytes  # both models share one array: one block
    monkeypatch.setattr(shared_frames, "shared_memory_free", lambda: needed - 1)
    strategy = ProcessesShm(workload)
    with pytest.raises(StrategyUnavailable) as refused, strategy:
        pass
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"processes_shm: the frames need {needed / 1e6:.1f} MB of shared memory but /dev/shm has ")
    assert "docker run --shm-size=1g" in message
    assert getattr(strategy, "pool", None) is None  # no worker was started


def test_just_enough_free_shared_memory_is_enough(monkeypatch):
    array = np.ones((2, 8), np.float32)
    monkeypatch.setattr(shared_frames, "shared_memory_free", lambda: array.nbytes)
    shared_frames.check_room(array.nbytes)
    with pytest.raises(SharedMemoryFull):
        shared_frames.check_room(array.nbytes + 1)


def test_a_block_whose_pages_cannot_be_reserved_is_refused_and_unlinked(monkeypatch):
    """/dev/shm filled by someone else after the check: the reservation fails with ENOSPC, not the write with SIGBUS."""
    def full(descriptor, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    shared = SharedFrames()
    try:
        with pytest.raises(SharedMemoryFull, match=r"the frames need 0\.0 MB of shared memory but /dev/shm has"):
            shared.share(np.ones(16, np.float32))
    finally:
        shared.close()


def can_mount_a_private_tmpfs() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not can_mount_a_private_tmpfs(),
                    reason="needs root and unshare to mount a small /dev/shm in a private mount namespace")
def test_a_run_with_a_small_dev_shm_skips_processes_shm_and_keeps_the_rest(tmp_path):
    """For real: a 1 MB /dev/shm (private to the run) and frames of 1.6 MB. Before the check the
    write into the block killed the whole run with SIGBUS (exit 135) and nothing was reported."""
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "pytest", "bench", "--frames", "8", "--models", "2", "--model-size", "tiny",
               "--frame-size", "64x64", "--rounds", "1", "--warmup", "0", "--no-report", "--strategy", "serial",
               "--strategy", "processes_shm", "--threads", "default", "--scenario", "offline", "-p", "no:cacheprovider",
               "--benchmark-storage", str(tmp_path / "history"), "-rs"]
    script = "mount -t tmpfs -o size=1m tmpfs /dev/shm && exec " + " ".join(map(shlex.quote, command))
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=root, capture_output=True, text=True,
                            timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"SKIPPED .*processes_shm: the frames need 1\.6 MB of shared memory but /dev/shm has 1\.0 MB "
                     r"free; give /dev/shm more room \(a Docker container: `docker run --shm-size=1g`\)", output), output
    assert "1 passed, 1 skipped" in output
    assert list((tmp_path / "history").rglob("*.json"))  # serial's result was saved
