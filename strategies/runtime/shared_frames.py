"""Frames in POSIX shared memory: created and unlinked by the parent, attached by workers.

Block names start with `fanbench_<parent pid>_`, so a test (or a person cleaning up after a
`kill -9`) can find exactly this suite's blocks in /dev/shm.

The resource tracker, and why `attach` does not register: up to Python 3.12 every
`SharedMemory(name)` (attach, not only create) registers the block with the resource
tracker. A spawned worker shares its parent's tracker, which keeps one entry per name, so a
second registration is redundant, and a worker calling `resource_tracker.unregister` to undo it
would remove the *parent's* entry (the tracker then reports a KeyError when the parent
unlinks). A worker with a tracker of its own (started some other way) would even unlink the
block when it exits, under the parent's feet. So workers attach without registering at all:
Python 3.13's `track=False`, or on older Pythons the registration call suppressed for the
duration of the attach. The parent keeps its registration, so if the parent is killed
before it can unlink, the tracker still removes the blocks.

Room in /dev/shm: a block is created at its full size without the memory behind it, and
writing to a page a full tmpfs cannot supply does not raise, it kills the process with SIGBUS
(a container's default /dev/shm is 64 MB). So `check_room` compares the bytes needed with the
free space first, and `share` reserves each block's pages (posix_fallocate) before writing:
both end in `SharedMemoryFull`, whose message says how much is needed and how to get it.
"""

from __future__ import annotations

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
    """Bytes free in /dev/shm; None where that cannot be read (no /dev/shm: not Linux)."""
    try:
        return shutil.disk_usage(SHM_DIR).free
    except OSError:
        return None


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def room_message(needed: int, free: int) -> str:
    # A container's /dev/shm is set when it starts; a quarter more than needed leaves room for others' blocks.
    gigabytes = max(1, math.ceil(needed * 1.25 / 1e9))
    return (f"the frames need {_megabytes(needed)} of shared memory but {SHM_DIR} has {_megabytes(free)} free; "
            f"give {SHM_DIR} more room (a Docker container: `docker run --shm-size={gigabytes}g`) "
            "or lower --frames, --frame-size or --batch.")


def check_room(needed: int) -> None:
    """Raise SharedMemoryFull unless /dev/shm has `needed` bytes free (where it can be told)."""
    free = shared_memory_free()
    if free is not None and needed > free:
        raise SharedMemoryFull(room_message(needed, free))


def _reserve(block: SharedMemory) -> None:
    """Allocate the block's pages now, so a full /dev/shm raises here instead of SIGBUS on the write
    (another process may have filled it since `check_room`)."""
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
    """The name prefix of every block created by process `pid` (default: this one)."""
    return f"{PREFIX}{os.getpid() if pid is None else pid}_"


@dataclass(frozen=True)
class BlockSpec:
    """What a worker needs to map a block as an array: picklable, a few bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str


class SharedFrames:
    """Owns the blocks: `share` copies an array into a new block; `close` unlinks every block."""

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
        """Unlink every block. Idempotent; a block already gone is not an error."""
        blocks, self.blocks = self.blocks, []
        for block in blocks:
            try:
                block.close()
            except BufferError:
                pass  # a view is still alive somewhere; the mapping goes when it does, the name goes now
            try:
                block.unlink()
            except FileNotFoundError:
                pass


def attach(spec: BlockSpec) -> tuple[SharedMemory, np.ndarray]:
    """Map an existing block (in a worker) without registering it with the resource tracker."""
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
    view.flags.writeable = False  # workers only read frames
    return block, view
