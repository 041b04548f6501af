"""Fakes shared by the tests: timing logic is checked on a fake clock, never with sleeps."""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from strategies import Strategy
from strategies.base import Arrivals
from strategies.records import CallRecord, empty_outputs


class FakeClock:
    """Each reading returns the time, then moves it on by `step`; `sleep` moves it on by the time slept.

    `FakeClock()` stands still until someone sleeps; `FakeClock(start=0.001, step=0.001)` ticks 1 ms a reading.
    """

    def __init__(self, start: float = 0.0, step: float = 0.0) -> None:
        self.now, self.step = start, step
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        reading = self.now
        self.now += self.step
        return reading

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FixedService(Strategy):
    """One lane, `service_s` per frame on the fake clock; outputs the workload frame it carried."""

    name = "fixed_service"
    service_s = 1 / 256

    def _execute(self, arrivals: Arrivals):
        count = self.frame_count(arrivals)
        outputs = empty_outputs(1, count)
        calls = []
        for frame in range(count):
            arrivals.wait_for(frame, self.clock)
            start = self.clock()
            self.clock.sleep(self.service_s)
            outputs[0][frame] = (np.array([float(self.source(frame))]),)
            calls.append(CallRecord(0, frame, 1, start, self.clock(), "main"))
        return outputs, calls


class FakeNvml(types.ModuleType):
    """Stands in for `pynvml` (monkeypatch it into sys.modules): `count` H100s, or an NVML that
    cannot start. `events` records "init" and "shutdown" in order."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False, count: int = 1) -> None:
        super().__init__("pynvml")
        self.fail_init, self.count = fail_init, count
        self.events: list[str] = []

    @property
    def shutdowns(self) -> int:
        return self.events.count("shutdown")

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")
        self.events.append("init")

    def nvmlShutdown(self) -> None:
        self.events.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.65.06"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        return types.SimpleNamespace(total=80 * 2**30)
