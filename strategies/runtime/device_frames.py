"""Frames uploaded to the device once and shared by every model that reads them (iobinding)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from strategies.base import RunStopped
from strategies.runtime.sessions import onnxruntime


class Cancelled(RunStopped):
    """The run was cancelled (another lane failed) while this lane waited for a frame."""


@dataclass
class _Entry:
    remaining: int  # models that still have to release this frame
    ready: threading.Event = field(default_factory=threading.Event)
    value: Any = None  # the OrtValue on the device
    error: BaseException | None = None


class DeviceFrames:
    """Each frame copied to the device once, by the first model to reach it, for every model reading that array;
    a model runs at most `ahead` frames past the slowest, which bounds the device memory held."""

    def __init__(self, arrays: Sequence[np.ndarray], device: str, device_id: int = 0, ahead: int = 4):
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1, got {ahead}.")
        self.arrays = list(arrays)  # arrays[model]: (frames, *input shape)
        self.device, self.device_id, self.ahead = device, device_id, ahead
        self._ortvalue = onnxruntime().OrtValue
        groups: dict[int, int] = {}
        # Models that read the same array object share its uploads.
        self._group = [groups.setdefault(id(array), len(groups)) for array in self.arrays]
        self._readers = [self._group.count(group) for group in range(len(groups))]
        self._done = [0] * len(self.arrays)  # frames each model has released
        self._entries: dict[tuple[int, int], _Entry] = {}
        self._cond = threading.Condition()
        self._cancelled = False
        self.uploads = 0  # how many host-to-device copies were made (tests check: one per frame per array)

    def get(self, model: int, frame: int, source: int | None = None) -> Any:
        """The device copy of `frame` for `model` (array row `source`), uploaded if no model has yet."""
        key = (self._group[model], frame)
        with self._cond:
            self._cond.wait_for(lambda: self._cancelled or frame < min(self._done) + self.ahead)
            if self._cancelled:
                raise Cancelled("the run was cancelled: another lane failed.")
            entry = self._entries.get(key)
            upload = entry is None
            if upload:
                entry = self._entries[key] = _Entry(remaining=self._readers[key[0]])
                self.uploads += 1
        if upload:
            try:
                row = frame if source is None else source
                entry.value = self._ortvalue.ortvalue_from_numpy(self.arrays[model][row], self.device, self.device_id)
            except BaseException as error:
                entry.error = error
                raise
            finally:
                entry.ready.set()  # waiters wake in every outcome
        else:
            entry.ready.wait()
            if entry.error is not None:
                raise RuntimeError(f"uploading frame {frame} to {self.device} failed: {entry.error}") from entry.error
        return entry.value

    def release(self, model: int, frame: int) -> None:
        """`model` is done with `frame`: the last reader frees the device copy."""
        key = (self._group[model], frame)
        with self._cond:
            if self._cancelled:
                return  # cancel() already dropped every copy
            entry = self._entries[key]
            entry.remaining -= 1
            if entry.remaining == 0:
                del self._entries[key]
            self._done[model] = frame + 1
            self._cond.notify_all()

    def cancel(self) -> None:
        """Wake every waiting lane with Cancelled and drop the device copies."""
        with self._cond:
            self._cancelled = True
            self._entries.clear()
            self._cond.notify_all()

    @property
    def held(self) -> int:  # frames now on the device
        with self._cond:
            return len(self._entries)
