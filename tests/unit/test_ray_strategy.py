"""The cheap parts of the `ray` strategy: no Ray process is started here (tests/integration/test_ray_faults.py
and test_ray_runs.py do)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

from bench.measure.machine import WORKLOAD_KEYS, machine_info, ray_machine_info
from bench.measure.measurement import Measurement
from bench.measure.scenarios import Scenario
from bench.options import gpu_share
from strategies import StrategyError, StrategyUnavailable, Workload
from strategies.ray import RayActors, default_gpu_share, one_line
from strategies.runtime import ray_instance
from tests.helpers.runs import parse_args
from tests.unit.test_metrics import measured, run_of, serial_calls


def test_without_ray_the_strategy_is_unavailable_naming_the_extra(tiny_workload, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    strategy = RayActors(tiny_workload)
    with pytest.raises(StrategyUnavailable) as unavailable:
        strategy.open()
    strategy.close()
    assert "\n" not in str(unavailable.value)
    assert "pip install -e '.[ray]'" in str(unavailable.value)


def test_gpu_share_is_none_on_the_cpu_and_waits_for_rays_gpu_count_on_cuda(tiny_workload):
    assert RayActors(tiny_workload).gpus_per_actor == 0.0
    on_cuda = Workload(tiny_workload.models, provider="cuda")
    assert RayActors(on_cuda).gpus_per_actor is None  # default_gpu_share, once `open` sees Ray's GPUs
    assert RayActors(on_cuda, gpus_per_actor=1.0).gpus_per_actor == 1.0


@pytest.mark.parametrize(("models", "gpus", "share"), [
    (4, 1, 1 / 4),  # docs/ray.md: four models share one GPU
    (4, 2, 1 / 2),  # two to a GPU
    (4, 3, 1 / 2),  # not 3/4: two actors of 0.75 cannot share a GPU, so one would never be placed
    (4, 4, 1.0),  # a GPU each
    (4, 8, 1.0),  # never more than one GPU per actor
    (3, 2, 1 / 2),
    (4, 2.5, 1 / 2),  # a fractional GPU count (a node declaring --num-gpus 2.5): whole GPUs only
    (4, 0.5, 1 / 4),  # less than one GPU: they all share it
])
def test_default_gpu_share_spreads_the_models_over_the_gpus(models, gpus, share):
    assert default_gpu_share(models, gpus) == pytest.approx(share)


@pytest.mark.parametrize("gpus", range(1, 9))
@pytest.mark.parametrize("models", range(1, 9))
def test_default_gpu_share_places_every_actor_with_as_few_to_a_gpu_as_possible(models, gpus):
    share = default_gpu_share(models, gpus)
    per_gpu = round(1 / share)  # actors of that share one GPU holds
    assert share == pytest.approx(1 / per_gpu)  # a whole number of actors to a GPU
    assert share <= 1
    assert per_gpu * gpus >= models  # every actor is placed
    assert (per_gpu - 1) * gpus < models  # and no GPU takes more actors than needed


def ray_info(placement, address="local", version="2.60.0", startup=4.2, share=0.0) -> dict:
    """A `ray` benchmark's strategy_info, as RayActors.info() words it."""
    return {"ray_version": version, "ray_address": address, "ray_gcs_address": "10.0.0.1:6379",
            "ray_startup_s": startup, "ray_gpus_per_actor": share,
            "ray_placement": [{"model": model, "node_ip": ip, "node_id": node, "pid": pid, "gpus": gpus}
                              for model, ip, node, pid, gpus in placement]}


def test_ray_machine_info_is_none_without_a_ray_benchmark():
    assert ray_machine_info([]) is None


def test_ray_machine_info_gathers_nodes_and_placements_over_the_runs_ray_benchmarks():
    offline = ray_info([("det", "10.0.0.2", "n2", 11, ["0"]), ("cls", "10.0.0.1", "n1", 12, ["0"])],
                       address="auto", share=0.5)
    # The streaming benchmark's actors: new pids, `det` placed elsewhere, `cls` where it was.
    stream = ray_info([("det", "10.0.0.1", "n1", 21, ["1"]), ("cls", "10.0.0.1", "n1", 22, ["0"])],
                      address="auto", startup=None, share=0.5)
    assert ray_machine_info([offline, stream]) == {
        "version": "2.60.0", "address": "10.0.0.1:6379", "joined": True, "requested_address": "auto",
        "startup_s": 4.2, "gpus_per_actor": 0.5,
        "nodes": [{"node_ip": "10.0.0.1", "node_id": "n1"}, {"node_ip": "10.0.0.2", "node_id": "n2"}],
        "placement": {"det": [{"node_ip": "10.0.0.2", "node_id": "n2", "gpus": ["0"]},
                              {"node_ip": "10.0.0.1", "node_id": "n1", "gpus": ["1"]}],
                      "cls": [{"node_ip": "10.0.0.1", "node_id": "n1", "gpus": ["0"]}]}}


def test_a_local_instance_is_not_joined():
    info = ray_machine_info([ray_info([("det", "10.0.0.1", "n1", 11, [])])])
    assert info is not None
    assert info["joined"] is False
    assert info["requested_address"] == "local"


def test_machine_info_always_has_the_ray_entry():
    workload = {key: 1 for key in WORKLOAD_KEYS}
    assert machine_info(workload, {})["ray"] is None
    recorded = ray_machine_info([ray_info([("det", "10.0.0.1", "n1", 11, [])])])
    assert machine_info(workload, {}, recorded)["ray"] == recorded


def test_a_cluster_that_cannot_be_joined_fails_in_one_line_with_the_token_advice(monkeypatch):
    def refused(**options):
        raise ConnectionError(f"Failed to connect to Ray cluster at {options['address']}\nretried 60 times")
    monkeypatch.setattr(ray_instance, "_instance", None)
    monkeypatch.delenv(ray_instance.AUTH_MODE, raising=False)
    with pytest.raises(StrategyError) as failed:
        ray_instance.ray_instance(SimpleNamespace(init=refused), "10.0.0.1:6379")
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("ray: could not join the Ray cluster at '10.0.0.1:6379': Failed to connect")
    assert "RAY_AUTH_MODE=token" in message
    monkeypatch.setenv(ray_instance.AUTH_MODE, "token")  # already set: the advice would not help
    with pytest.raises(StrategyError) as failed:
        ray_instance.ray_instance(SimpleNamespace(init=refused), "10.0.0.1:6379")
    assert "RAY_AUTH_MODE" not in str(failed.value)
    assert ray_instance._instance is None


def test_one_ray_per_process_a_joined_cluster_is_not_mixed_with_a_local_instance(monkeypatch):
    joined = ray_instance.RayInstance(None, 0.1, "10.0.0.1:6379")
    monkeypatch.setattr(ray_instance, "_instance", joined)
    never = SimpleNamespace(init=lambda **_: pytest.fail("Ray started twice"))
    assert ray_instance.ray_instance(never, "auto") is joined  # every later benchmark: the same Ray
    with pytest.raises(StrategyError, match="already joined a cluster"):
        ray_instance.ray_instance(never, None)


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
