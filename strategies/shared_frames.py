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
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

PREFIX = "fanbench_"
_attach_lock = threading.Lock()


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
