"""Round hooks: the sampler runs only in timed rounds; progress counts frames; cleanup always."""

from __future__ import annotations

import io

from bench.measure.rounds import Progress, RoundHooks


class CountingSampler:
    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")

    def summary(self) -> str:
        return "summary"


class CountingProgress:
    def __init__(self) -> None:
        self.frames: list[int] = []
        self.closed = 0
        self.started = 0

    def start(self) -> None:
        self.started += 1

    def advance(self, frames: int) -> None:
        self.frames.append(frames)

    def close(self) -> None:
        self.closed += 1


def test_warm_up_rounds_are_not_sampled_and_every_round_advances_progress():
    sampler, progress = CountingSampler(), CountingProgress()
    hooks = RoundHooks(warmup=2, frames_per_round=40, sampler=sampler, progress=progress)
    for _ in range(5):  # as benchmark.pedantic calls them: 2 warm-up rounds, then 3 timed ones
        hooks.setup()
        hooks.teardown()
    assert sampler.events == ["stop", "stop", "start", "stop", "start", "stop", "start", "stop"]
    assert progress.frames == [40] * 5
    assert hooks.resources() == "summary"
    hooks.close()
    assert (sampler.events[-1], progress.closed) == ("stop", 1)


def test_resources_stop_a_sampler_left_running_by_a_round_without_teardown():
    sampler = CountingSampler()
    hooks = RoundHooks(warmup=0, frames_per_round=1, sampler=sampler)
    hooks.setup()  # pytest-benchmark disabled: setup, the target, and no teardown
    assert hooks.resources() == "summary"
    assert sampler.events == ["start", "stop"]


def test_without_a_sampler_there_are_no_resources():
    hooks = RoundHooks(warmup=0, frames_per_round=1)
    hooks.setup()
    hooks.teardown()
    assert hooks.resources() is None
    hooks.close()


def test_progress_shows_frames_done_out_of_total_and_clears_itself():
    out = io.StringIO()
    progress = Progress(120, "serial-offline", file=out, disable=False)
    progress.advance(40)
    progress.advance(40)
    assert "80/120" in out.getvalue()
    assert "serial-offline" in out.getvalue()
    progress.close()
    progress.close()  # idempotent
    assert progress.bar is None


def test_the_progress_rate_is_frames_over_the_rounds_time(monkeypatch):
    """The bar starts with the first round: after a 0.5 s round of 40 frames it says 80 frame/s, not the
    millions of frames per second it showed when made at the round's end (issue 21)."""
    now = [100.0]
    monkeypatch.setattr("tqdm.std.time", lambda: now[0])  # tqdm's clock
    out = io.StringIO()
    progress = Progress(120, "serial-offline", file=out, disable=False)
    hooks = RoundHooks(warmup=0, frames_per_round=40, progress=progress)
    hooks.setup()
    assert "0/120" in out.getvalue()
    now[0] += 0.5
    progress.advance(40)
    assert "40/120" in out.getvalue()
    assert "80.00frame/s" in out.getvalue()
    now[0] += 1.5  # a slower round: the rate is the average, 80 frames over 2 s
    progress.advance(40)
    assert "40.00frame/s" in out.getvalue().rsplit("\r", 1)[-1]
    progress.close()


def test_progress_is_quiet_off_a_terminal():
    out = io.StringIO()  # not a tty: tqdm's disable=None turns the bar off
    progress = Progress(10, "quiet", file=out)
    progress.advance(10)
    progress.close()
    assert out.getvalue() == ""


def test_the_paired_baseline_runs_before_each_timed_round_and_before_the_sampler_starts():
    sampler = CountingSampler()
    hooks = RoundHooks(warmup=1, frames_per_round=1, sampler=sampler)
    hooks.before_timed_round = lambda: sampler.events.append("bare")
    for _ in range(3):  # 1 warm-up round, then 2 timed ones
        hooks.setup()
        hooks.teardown()
    assert sampler.events == ["stop", "bare", "start", "stop", "bare", "start", "stop"]
