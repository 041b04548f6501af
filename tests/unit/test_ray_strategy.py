"""The cheap parts of the `ray` strategy: no Ray process is started here (tests/integration/test_ray.py does)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import pytest

from bench.measure.measurement import Measurement
from bench.measure.scenarios import Scenario
from bench.options import gpu_share, parse_args
from strategies import StrategyUnavailable, Workload
from strategies.ray import RayActors, one_line
from tests.unit.test_metrics import measured, run_of, serial_calls


def test_without_ray_the_strategy_is_unavailable_naming_the_extra(tiny_workload, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    strategy = RayActors(tiny_workload)
    with pytest.raises(StrategyUnavailable) as unavailable:
        strategy.open()
    strategy.close()
    assert "\n" not in str(unavailable.value)
    assert "pip install -e '.[ray]'" in str(unavailable.value)


def test_gpu_share_defaults_to_one_over_models_on_cuda_and_none_on_the_cpu(tiny_workload):
    models = len(tiny_workload.models)
    assert RayActors(tiny_workload).gpus_per_actor == 0.0
    on_cuda = Workload(tiny_workload.models, provider="cuda")
    assert RayActors(on_cuda).gpus_per_actor == pytest.approx(1 / models)
    assert RayActors(on_cuda, gpus_per_actor=1.0).gpus_per_actor == 1.0


def test_ray_options_reach_the_strategy_only_when_given():
    assert parse_args([]).strategy_arguments("ray") == ()
    options = parse_args(["--ray-address", "auto", "--ray-gpus-per-actor", "0.5"])
    assert options.strategy_arguments("ray") == (("address", "auto"), ("gpus_per_actor", 0.5))
    assert options.strategy_arguments("threads") == ()


@pytest.mark.parametrize("text", ["1.5", "-0.25", "nan", "half"])
def test_a_bad_gpu_share_is_refused_in_one_line_naming_it(text):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        gpu_share(text)
    assert repr(text) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_gpu_share_or_whole_gpus_is_taken():
    assert gpu_share("0.25") == 0.25
    assert gpu_share("2") == 2.0


def test_one_line_keeps_the_cause_and_drops_rays_traceback():
    class Wrapped(Exception):
        cause = ValueError("bad frame")
    assert one_line(Wrapped("Traceback...\nline 2")) == "ValueError: bad frame"
    assert one_line(RuntimeError("\nThe actor died unexpectedly.\nmore")) == "The actor died unexpectedly."


def test_strategy_info_is_recorded_and_old_saved_runs_still_load():
    measurement = replace(measured([run_of(serial_calls(), wall=1.5)], Scenario("offline")),
                          strategy_info={"ray_version": "2.60.0", "ray_startup_s": 4.2})
    info = measurement.extra_info()
    assert info["strategy_info"] == {"ray_version": "2.60.0", "ray_startup_s": 4.2}
    assert Measurement.from_extra_info(info) == measurement
    del info["strategy_info"]  # saved before the field existed, or by a strategy with nothing to say
    assert Measurement.from_extra_info(info).strategy_info == {}
    assert "strategy_info" not in Measurement.from_extra_info(info).extra_info()
