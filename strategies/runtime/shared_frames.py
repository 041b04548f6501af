"""Frames in POSIX shared memory: created and unlinked by the parent (blocks named
`fanbench_<parent pid>_...`), attached by workers (docs/strategies.md, *processes_shm*).

Workers attach without registering with the resource tracker: up to Python 3.12 an attach registers
the block again with the parent's tracker, and undoing that from a worker would remove the parent's
entry (a worker with a tracker of its own would even unlink the block at exit). The parent stays
registered, so the tracker still removes the blocks if it is killed.

Writing to a page a full /dev/shm cannot supply kills the process with SIGBUS, so `check_room`
compares the free space first and `share` reserves each block's pages before writing."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
import shutil
import sys
import threading
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

PREFIX = "fanbench_"
SHM_DIR = "/dev/shm"  # where Linux keeps POSIX shared memory
_attach_lock = threading.Lock()


class SharedMemoryFull(OSError):
    """/dev/shm has no room for the frames; the message says how much they need and how to give it."""


def shared_memory_free() -> int | None:
    """Bytes free in /dev/shm; None where there is none (not Linux)."""
    try:
        return shutil.disk_usage(SHM_DIR).free
    except OSError:
        return None


def room_message(needed: int, free: int) -> str:
    # A container's /dev/shm is set when it starts; a quarter more than needed leaves room for others' blocks.
    gigabytes = max(1, math.ceil(needed * 1.25 / 1e9))
    return (f"the frames need {needed / 1e6:.1f} MB of shared memory but {SHM_DIR} has {free / 1e6:.1f} MB free; "
            f"give {SHM_DIR} more room (a Docker container: `docker run --shm-size={gigabytes}g`) "
            "or lower --frames, --frame-size or --batch.")


def check_room(needed: int) -> None:
    free = shared_memory_free()
    if free is not None and needed > free:
        raise SharedMemoryFull(room_message(needed, free))


def _reserve(block: SharedMemory) -> None:
    """Allocate the block's pages now: another process may have filled /dev/shm since `check_room`."""
    descriptor = getattr(block, "_fd", -1)  # SharedMemory keeps its descriptor open on POSIX
    if descriptor < 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(descriptor, 0, block.size)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise SharedMemoryFull(room_message(block.size, shared_memory_free() or 0)) from None


def block_prefix(pid: int | None = None) -> str:
    return f"{PREFIX}{os.getpid() if pid is None else pid}_"


@dataclass(frozen=True)
class BlockSpec:
    """What a worker needs to map a block as an array."""

    name: str
    shape: tuple[int, ...]
    dtype: str


class SharedFrames:
    """Owns the blocks: `share` copies an array into a new one; `close` unlinks them all."""

    def __init__(self) -> None:
        self.blocks: list[SharedMemory] = []

    @property
    def names(self) -> list[str]:
        return [block.name for block in self.blocks]

    def share(self, array: np.ndarray) -> BlockSpec:
        array = np.ascontiguousarray(array)
        # A zero-byte block is refused by the OS; an empty array still gets one byte.
        block = SharedMemory(name=block_prefix() + secrets.token_hex(6), create=True, size=max(1, array.nbytes))
        self.blocks.append(block)  # owned from here on, so close() unlinks it whatever happens next
        _reserve(block)
        view = np.ndarray(array.shape, array.dtype, buffer=block.buf)
        view[...] = array
        del view  # no exported buffer may outlive the block's close()
        return BlockSpec(block.name, tuple(array.shape), array.dtype.str)

    def close(self) -> None:
        blocks, self.blocks = self.blocks, []
        for block in blocks:
            with contextlib.suppress(BufferError):  # a view is still alive: the mapping goes with it, the name now
                block.close()
            with contextlib.suppress(FileNotFoundError):
                block.unlink()


def attach(spec: BlockSpec) -> tuple[SharedMemory, np.ndarray]:
    """Map an existing block read-only (in a worker), not registered with the resource tracker."""
    if sys.version_info >= (3, 13):
        block = SharedMemory(name=spec.name, track=False)
    else:
        with _attach_lock:
            register = resource_tracker.register
            resource_tracker.register = lambda name, rtype: None
            try:
                block = SharedMemory(name=spec.name)
            finally:
                resource_tracker.register = register
    view = np.ndarray(spec.shape, np.dtype(spec.dtype), buffer=block.buf)
    view.flags.writeable = False
    return block, view
