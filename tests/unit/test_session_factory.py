"""Every session a strategy opens comes from the run's session factory (`Workload.sessions`), so it gets
the run's provider and provider options; none can forget them (`merged` did: it dropped the CUDA options)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.measure.harness import opened
from strategies import STRATEGIES, ThreadSettings, get_strategy
from strategies.runtime import SessionFactory
from tests.helpers.cuda_on_cpu import CudaGraphBuffersOnCpu, streams_on_cpu
from tests.helpers.recording_sessions import RecordingFactory

IN_OTHER_PROCESSES = {"processes", "processes_shm", "ray"}
# cuda_graph's own logic on the CPU (the registered one skips without CUDA), with and without its per-lane streams.
ON_CPU = {"cuda_graph-buffers": lambda: CudaGraphBuffersOnCpu, "cuda_graph-streams": streams_on_cpu}
RUN_OPTIONS = (("cudnn_conv_algo_search", "HEURISTIC"), ("device_id", "0"))


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] if name in IN_OTHER_PROCESSES else [])
                                  for name in [*STRATEGIES, *ON_CPU]])
def test_every_session_a_strategy_opens_comes_from_the_runs_factory(name, tiny_workload, tmp_path):
    factory = RecordingFactory("cpu", RUN_OPTIONS, log=str(tmp_path / "sessions.jsonl"))
    workload = replace(tiny_workload, session_factory=factory)
    strategy = ON_CPU[name]() if name in ON_CPU else get_strategy(name)
    with opened(strategy, workload) as running:
        sessions = len(running.providers_used)
    recorded = factory.opened()
    assert sessions >= 1
    assert len(recorded) == sessions, f"{name} opened {sessions} session(s), {len(recorded)} through the run's factory"
    for each in recorded:
        assert each["provider"] == "cpu"
        assert each["options"] == dict(RUN_OPTIONS)
        assert not set(each["extra"]) & set(each["options"])  # a strategy's own options never replace the run's


def test_the_factory_gives_cuda_sessions_the_runs_options_and_the_strategys_own_on_top(monkeypatch):
    made = []
    monkeypatch.setattr("strategies.runtime.sessions.make_session",
                        lambda model, settings, provider, options: made.append((provider, options)))
    settings = ThreadSettings(intra_op=1)
    SessionFactory("cuda", RUN_OPTIONS).open("m.onnx", settings, enable_cuda_graph="1")
    SessionFactory("cpu", RUN_OPTIONS).open("m.onnx", settings, enable_cuda_graph="1")  # options are CUDA's only
    assert made == [("cuda", {**dict(RUN_OPTIONS), "enable_cuda_graph": "1"}), ("cpu", None)]


def test_a_workload_without_a_factory_of_its_own_opens_sessions_with_its_provider_and_cuda_options(tiny_workload):
    on_cuda = replace(tiny_workload, provider="cuda", cuda_options=RUN_OPTIONS)
    assert on_cuda.sessions == SessionFactory("cuda", RUN_OPTIONS)
    assert tiny_workload.sessions == SessionFactory("cpu", ())
