"""The strategies beyond the classics: equal to serial, fail loudly, respect arrivals and deadlines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import STRATEGIES, StrategyError, StrategyUnavailable, ThreadSettings, Workload, get_strategy
from strategies.batched import Batched
from tests.helpers.equivalence import assert_equal_to_serial
from tests.helpers.fakes import FakeClock
from tests.helpers.workloads import tiny_workload, with_failing_model

NEW = ["asyncio_threads", "processes_shm", "fanout", "merged", "run_async", "batched"]
IN_PROCESS = [name for name in NEW if name != "processes_shm"]


def params(names):
    return [pytest.param(name, id=name, marks=[pytest.mark.slow] if name == "processes_shm" else []) for name in names]


@pytest.fixture(scope="module")
def workload(model_dir: Path) -> Workload:
    return tiny_workload(model_dir, models=3, frames=6, batch=2, size=16)


def serial_outputs(workload: Workload):
    with get_strategy("serial")(workload) as serial:
        return serial.run().outputs


def test_registered_after_the_classic_four_in_order():
    assert list(STRATEGIES)[4:4 + len(NEW)] == NEW


@pytest.mark.parametrize("name", params(NEW))
def test_equals_serial_offline_and_streaming(name, workload):
    reference = serial_outputs(workload)
    with get_strategy(name)(workload) as strategy:
        offline = strategy.run()
        streaming = strategy.run(period=0.002)  # also proves a strategy can run twice
    assert_equal_to_serial(workload, reference, offline.outputs)
    assert_equal_to_serial(workload, reference, streaming.outputs)
    assert {call.model for call in offline.calls} == set(range(len(workload.models)))


@pytest.mark.parametrize("name", params(IN_PROCESS))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models=st.integers(1, 3), batch=st.integers(1, 3), size=st.sampled_from([8, 12, 16]),
       frames=st.integers(1, 6), k=st.integers(1, 4))
def test_property_equals_serial(name, model_dir, models, batch, size, frames, k):
    workload = tiny_workload(model_dir, models=models, frames=frames, batch=batch, size=size, seed=frames)
    options = {"k": k} if name == "batched" else {}
    with get_strategy(name)(workload, **options) as strategy:
        assert_equal_to_serial(workload, serial_outputs(workload), strategy.run().outputs)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models=st.integers(1, 3), batch=st.integers(1, 2), frames=st.integers(1, 5))
def test_property_processes_shm_equals_serial(model_dir, models, batch, frames):
    workload = tiny_workload(model_dir, models=models, frames=frames, batch=batch, size=12, seed=frames)
    with get_strategy("processes_shm")(workload) as strategy:
        assert_equal_to_serial(workload, serial_outputs(workload), strategy.run().outputs)


@pytest.mark.parametrize("name", params(NEW))
def test_a_model_failing_at_run_time_names_the_model_and_frame(name, workload, model_dir):
    broken = with_failing_model(workload, model_dir, at=1)
    with get_strategy(name)(broken) as strategy, \
            pytest.raises(StrategyError, match=r"model 'fails_at_run' failed on frames? 0"):
        strategy.run()


class CountingSession:
    """Forwards to a real session and counts the calls made on it."""

    def __init__(self, session) -> None:
        self.session = session
        self.calls = 0

    def run(self, *args, **kwargs):
        self.calls += 1
        return self.session.run(*args, **kwargs)

    def run_async(self, *args, **kwargs):
        self.calls += 1
        return self.session.run_async(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.session, name)


@pytest.mark.parametrize("name", params(IN_PROCESS))
def test_a_failure_stops_the_rest_of_the_run(name, model_dir):
    frames = 30
    broken = with_failing_model(tiny_workload(model_dir, models=2, frames=frames, batch=1, size=8), model_dir, at=0)
    with get_strategy(name)(broken) as strategy:
        if name == "merged":
            counted = [CountingSession(strategy.session)]
            strategy.session = counted[0]
        else:
            strategy.sessions = counted = [CountingSession(session) for session in strategy.sessions]
        with pytest.raises(StrategyError, match="fails_at_run"):
            strategy.run()
        # No model went on to the end of the video after the first model failed on frame 0.
        assert all(session.calls < frames for session in counted)
        # The strategy is left consistent: running again fails the same way, not with a stale result.
        with pytest.raises(StrategyError, match="fails_at_run"):
            strategy.run()


@pytest.mark.parametrize("name", params(NEW))
def test_every_frame_checks_the_deadline(name, model_dir):
    # 8 frames 50 ms apart with a 10 ms limit: whatever a strategy waits for first, a later
    # frame's arrival check comes after the deadline.
    workload = tiny_workload(model_dir, models=2, frames=8, batch=1, size=8)
    with get_strategy(name)(workload, **({"k": 2} if name == "batched" else {})) as strategy, \
            pytest.raises(StrategyError, match="time limit"):
        strategy.run(period=0.05, time_limit=0.01)


@pytest.mark.parametrize(("frames", "k", "chunks"), [(7, 3, [(0, 3), (3, 3), (6, 1)]), (4, 4, [(0, 4)]),
                                                     (3, 5, [(0, 3)]), (5, 1, [(i, 1) for i in range(5)])])
def test_batched_runs_each_chunk_after_its_last_frame_arrives(model_dir, monkeypatch, frames, k, chunks):
    workload = tiny_workload(model_dir, models=2, frames=frames, batch=2, size=8)
    clock = FakeClock(start=0.001, step=0.001)  # 1 ms a reading
    monkeypatch.setattr("strategies.base.pause", lambda seconds, stop: clock.sleep(seconds))
    period = 1.0
    with Batched(workload, clock=clock, k=k) as strategy:
        result = strategy.run(period=period)
    assert_equal_to_serial(workload, serial_outputs(workload), result.outputs)
    for model in range(2):
        calls = [call for call in result.calls if call.model == model]
        assert [(call.first_frame, call.frames) for call in calls] == chunks
        for call in calls:
            last = call.first_frame + call.frames - 1
            assert call.start >= result.start + last * period  # never before the chunk's last frame


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_batched_rejects_a_bad_k(workload, k):
    with pytest.raises(ValueError, match=r"k \(frames per call\) must be a whole number of at least 1"):
        Batched(workload, k=k)


def test_run_async_with_one_intra_op_thread_is_not_applicable(workload):
    with pytest.raises(StrategyUnavailable, match=r"intra=2 or more"):
        get_strategy("run_async")(workload, ThreadSettings(intra_op=1, inter_op=1, spinning=False)).open()


def test_merged_needs_one_shared_input_array(workload):
    models = (workload.models[0], type(workload.models[1])(workload.models[1].name, workload.models[1].path,
                                                              workload.models[1].frames.copy()))
    with pytest.raises(StrategyUnavailable, match="must share one input array"):
        get_strategy("merged")(Workload(models)).open()


@pytest.mark.parametrize("cores", [1, 2, 8, 16])
@pytest.mark.parametrize("models", [1, 2, 4, 7])
@pytest.mark.parametrize("name", NEW)
def test_default_settings_keep_busy_threads_near_the_core_count(name, models, cores):
    settings = STRATEGIES[name].default_settings(models, cores)
    assert settings.spinning is False
    assert settings.inter_op == 1
    assert not settings.parallel
    if name in ("merged", "batched"):  # one call at a time, using every core
        busy = settings.intra_op
    elif name == "run_async":  # each session's call runs on its pool's intra_op - 1 workers
        assert settings.intra_op >= 2
        busy = models * (settings.intra_op - 1)
    else:  # one call per model at once
        busy = models * settings.intra_op
    assert busy <= max(cores, models)
