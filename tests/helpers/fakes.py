"""Fakes shared by the tests: timing logic is checked on a fake clock, never with sleeps."""

from __future__ import annotations


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
