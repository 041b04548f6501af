"""Every registered strategy returns exactly what serial returns, frame by frame, in order."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.measure.harness import opened
from strategies import STRATEGIES, ThreadSettings, get_strategy
from tests.helpers.equivalence import assert_equal_to_serial

# Strategies that start processes (ray: a Ray instance and its actors) are slow to open; they run in the slow tier.
PROCESS_STRATEGIES = {"processes", "processes_shm", "ray"}


def strategy_params():
    return [pytest.param(name, marks=[pytest.mark.slow] if name in PROCESS_STRATEGIES else [], id=name)
            for name in STRATEGIES]


def serial_outputs(workload):
    with get_strategy("serial")(workload) as serial:
        return serial.run().outputs


@pytest.mark.parametrize("name", strategy_params())
def test_equals_serial(name, tiny_workload):
    reference = serial_outputs(tiny_workload)
    with opened(get_strategy(name), tiny_workload) as strategy:
        for _ in range(2):  # a second run on the same open strategy must be just as right
            result = strategy.run()
            assert_equal_to_serial(tiny_workload, reference, result.outputs)
    frames, models = tiny_workload.frame_count, len(tiny_workload.models)
    covered = sorted((call.model, frame) for call in result.calls
                     for frame in range(call.first_frame, call.first_frame + call.frames))
    assert covered == [(m, f) for m in range(models) for f in range(frames)], "every (model, frame) runs exactly once"
    assert result.wall_s > 0
    assert all(call.end >= call.start for call in result.calls)


@pytest.mark.parametrize("name", strategy_params())
def test_equals_serial_with_onnxruntime_defaults(name, tiny_workload):
    reference = serial_outputs(tiny_workload)
    with opened(get_strategy(name), tiny_workload, ThreadSettings()) as strategy:
        assert_equal_to_serial(tiny_workload, reference, strategy.run().outputs)


configs = st.fixed_dictionaries({
    "models": st.integers(1, 4),
    "frames": st.integers(1, 6),
    "batch": st.integers(1, 3),
    "size": st.sampled_from([16, 24, 40]),
})


def check_property(name, make_workload, config):
    workload = make_workload(**config)
    with opened(get_strategy(name), workload) as strategy:
        result = strategy.run()
    assert_equal_to_serial(workload, serial_outputs(workload), result.outputs)
    assert len(result.outputs) == config["models"]
    assert all(len(frames) == config["frames"] for frames in result.outputs)
    assert all(out[0].shape[0] == config["batch"] for frames in result.outputs for out in frames)


@pytest.mark.parametrize("name", [n for n in STRATEGIES if n not in PROCESS_STRATEGIES])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs)
def test_property_equals_serial(name, make_workload, config):
    check_property(name, make_workload, config)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in STRATEGIES if n in PROCESS_STRATEGIES])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs)
def test_property_equals_serial_processes(name, make_workload, config):
    check_property(name, make_workload, config)
