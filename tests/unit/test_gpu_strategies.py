"""`iobinding` and `cuda_graph`: equal to `serial`, on the CPU here and on CUDA where there is a GPU.

Both strategies run their whole logic on the CPU provider too (OrtValues on 'cpu'); only
the CUDA graph itself needs a GPU, so `cuda_graph`'s buffer handling is checked here through
a subclass that lifts the CUDA requirement.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from bench.measure.equivalence import first_mismatch
from bench.measure.harness import opened
from strategies import STRATEGIES, ModelInput, StrategyError, StrategyUnavailable, Workload, get_strategy
from strategies.cuda_graph import CudaGraph
from strategies.iobinding import IOBinding
from strategies.lanes import wait_for_lanes
from strategies.runtime.device_frames import Cancelled, DeviceFrames
from tests.helpers.cuda_on_cpu import CudaGraphBuffersOnCpu, streams_on_cpu
from tests.helpers.equivalence import fixed_tolerance, mismatch_with_serial


def serial_outputs(workload: Workload):
    with get_strategy("serial")(workload) as serial:
        return serial.run().outputs


def mixed_inputs(make_workload) -> Workload:
    """Two models reading one frames array, a third reading another (different batch)."""
    shared = make_workload(models=3, frames=6, batch=2)
    other = make_workload(models=1, frames=6, batch=3)
    third = ModelInput(other.models[0].name + "-own-input", other.models[0].path, other.models[0].frames)
    return Workload((shared.models[0], shared.models[1], third), "cpu")


@pytest.mark.parametrize("strategy", [IOBinding, CudaGraphBuffersOnCpu, "streams"],
                         ids=["iobinding", "cuda_graph-buffers", "cuda_graph-streams"])
@pytest.mark.parametrize("shape", ["shared-input", "mixed-inputs"])
def test_equals_serial_on_the_cpu(strategy, shape, make_workload):
    strategy = streams_on_cpu() if strategy == "streams" else strategy
    workload = make_workload(models=3, frames=6) if shape == "shared-input" else mixed_inputs(make_workload)
    before = [model.frames.copy() for model in workload.models]
    reference = serial_outputs(workload)
    with strategy(workload) as running:
        assert running.providers_used == ["cpu"] * 3
        for _ in range(2):  # a second run reuses bindings and buffers
            result = running.run()
            assert mismatch_with_serial(workload, reference, result.outputs) is None
            assert sorted((call.model, call.first_frame) for call in result.calls) == [
                (model, frame) for model in range(3) for frame in range(6)]
    for model, frames in zip(workload.models, before, strict=True):
        np.testing.assert_array_equal(model.frames, frames)  # in-place updates never touch the workload


def test_cuda_graph_lanes_copy_replay_and_wait_on_their_own_streams_and_release_them(make_workload):
    """Per frame, on the lane's own stream: frame in, outputs out, then that stream alone is waited for
    (never the device); every stream is destroyed and every page-locked buffer released on close."""
    workload = make_workload(models=3, frames=4)
    strategy = streams_on_cpu()
    cudart = strategy.cudart
    with strategy(workload) as running:
        assert len(cudart.streams) == 3
        assert len(cudart.pinned) == 1 + 3  # the shared frames array once, one output buffer per lane
        del cudart.calls[:]
        running.run()
        per_stream: dict[int, list[str]] = {}
        for call, stream in cudart.calls:
            per_stream.setdefault(stream, []).append(call)
    assert sorted(per_stream) == sorted({stream for _, stream in cudart.calls})
    assert len(per_stream) == 3
    assert all(calls == ["to_device", "to_host", "synchronize"] * 4 for calls in per_stream.values())
    assert cudart.streams == set()
    assert cudart.pinned == set()


def test_a_strategy_that_reorders_frames_is_caught(make_workload):
    """The equivalence check these tests rely on does see a wrong frame (guards the test itself)."""
    workload = make_workload(models=2, frames=4)
    reference = serial_outputs(workload)
    with IOBinding(workload) as running:
        outputs = running.run().outputs
    outputs[1][1], outputs[1][2] = outputs[1][2], outputs[1][1]
    assert "frame 1" in mismatch_with_serial(workload, reference, outputs)


def test_cuda_graph_is_unavailable_without_cuda(tiny_workload):
    with pytest.raises(StrategyUnavailable, match=r"cuda_graph needs the CUDA provider.*provider is 'cpu'"):
        with CudaGraph(tiny_workload):
            pass


def test_cuda_graph_is_skipped_with_its_reason_by_the_benchmark_harness(tiny_workload):
    with pytest.raises(pytest.skip.Exception, match=r"^cuda_graph needs the CUDA provider"):
        with opened(CudaGraph, tiny_workload):
            pass


def refuse_graphs_for(model_path, message: str):
    """make_session as onnxruntime behaves for a model it cannot capture (its own words)."""
    from strategies.runtime import sessions

    real = sessions.make_session

    def make_session(path, *args, **kwargs):
        if path == model_path:
            raise RuntimeError(f"[ONNXRuntimeError] : 1 : FAIL : {message}")
        return real(path, *args, **kwargs)

    return make_session


@pytest.mark.parametrize("message", [
    "This session cannot use the CUDA Graph feature as requested by the user  as all compute graph nodes have not "
    "been partitioned to the CUDA EP.",
    "This session cannot use the CUDA Graph feature as requested by the user as the model has control flow nodes "
    "which can't be supported by CUDA Graphs.",
])
def test_cuda_graph_is_skipped_with_onnxruntimes_reason_for_a_model_it_cannot_capture(make_workload, monkeypatch,
                                                                                       message):
    from strategies.runtime import sessions

    workload = make_workload(models=3, frames=2)
    monkeypatch.setattr(sessions, "make_session", refuse_graphs_for(workload.models[1].path, message))
    with pytest.raises(pytest.skip.Exception) as skipped:
        with opened(CudaGraphBuffersOnCpu, workload):
            pass
    assert str(skipped.value.msg) == (f"cuda_graph_buffers_on_cpu: onnxruntime cannot run model "
                                      f"{workload.names[1]!r} as a CUDA graph: [ONNXRuntimeError] : 1 : FAIL : {message}")


def test_cuda_graph_lets_other_session_errors_fail(make_workload, monkeypatch):
    from strategies.runtime import sessions

    workload = make_workload(models=2, frames=2)
    monkeypatch.setattr(sessions, "make_session", refuse_graphs_for(workload.models[0].path, "out of memory"))
    with pytest.raises(RuntimeError, match="out of memory"):
        with opened(CudaGraphBuffersOnCpu, workload):
            pass


class FailingSession:
    """Delegates to a real session, raising on one frame (counted by calls)."""

    def __init__(self, session: Any, fail_on_call: int):
        self.session, self.fail_on_call, self.calls = session, fail_on_call, 0

    def run_with_iobinding(self, binding: Any, *args: Any) -> None:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("device lost")
        self.session.run_with_iobinding(binding, *args)


@pytest.mark.parametrize("strategy", [IOBinding, CudaGraphBuffersOnCpu], ids=["iobinding", "cuda_graph-buffers"])
def test_a_failing_model_stops_the_run_and_names_model_and_frame(strategy, make_workload):
    workload = make_workload(models=3, frames=8)
    with strategy(workload) as running:
        running.sessions[1] = FailingSession(running.sessions[1], fail_on_call=3)
        with pytest.raises(StrategyError, match=rf"{strategy.name}: model '{workload.names[1]}' failed on frame 2: "
                                                r"device lost"):
            running.run()
    assert [name for name in (thread.name for thread in threading.enumerate())
            if name.startswith(f"fanbench-{strategy.name}")] == []  # closing after a failed run ends the lanes


def test_device_frames_uploads_each_frame_once_per_input_array_and_frees_it():
    shared, other = np.arange(12, dtype=np.float32).reshape(3, 4), np.ones((3, 2), np.float32)
    frames = DeviceFrames([shared, shared, other], "cpu", ahead=3)
    for frame in range(3):
        for model in range(3):
            value = frames.get(model, frame)
            expected = (shared if model < 2 else other)[frame]
            np.testing.assert_array_equal(value.numpy(), expected)
    assert frames.uploads == 6  # 3 frames x 2 distinct arrays, not 3 frames x 3 models
    assert frames.held == 6
    for frame in range(3):
        for model in range(3):
            frames.release(model, frame)
    assert frames.held == 0


def test_device_frames_keeps_the_fastest_model_within_ahead_frames_of_the_slowest():
    frames = DeviceFrames([np.zeros((6, 2), np.float32)] * 2, "cpu", ahead=2)
    for frame in range(2):  # model 0 runs two frames ahead; model 1 has done none
        frames.get(0, frame)
        frames.release(0, frame)
    got = threading.Event()

    def third_frame() -> None:
        frames.get(0, 2)
        got.set()

    waiter = threading.Thread(target=third_frame)
    waiter.start()
    try:
        assert not got.wait(0.2), "model 0 got frame 2 while model 1 had not finished frame 0"
        frames.get(1, 0)
        frames.release(1, 0)  # the slowest model moves: frame 2 is now within reach
        assert got.wait(10)
    finally:
        frames.cancel()
        waiter.join(10)
    assert not waiter.is_alive()


def test_device_frames_cancel_wakes_a_waiting_lane_with_cancelled():
    frames = DeviceFrames([np.zeros((4, 2), np.float32)] * 2, "cpu", ahead=1)
    frames.get(0, 0)
    frames.release(0, 0)
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            frames.get(0, 1)
        except Cancelled as error:
            errors.append(error)

    waiter = threading.Thread(target=blocked)
    waiter.start()
    frames.cancel()
    waiter.join(10)
    assert not waiter.is_alive()
    assert len(errors) == 1
    frames.release(1, 0)  # a lane finishing after the cancel does not fail on the dropped copy


def test_device_frames_refuses_a_zero_lookahead():
    with pytest.raises(ValueError, match="ahead must be at least 1, got 0"):
        DeviceFrames([np.zeros((1, 1), np.float32)], "cpu", ahead=0)


def test_wait_for_lanes_cancels_the_others_and_raises_the_first_error():
    from concurrent.futures import ThreadPoolExecutor

    cancelled = threading.Event()
    finished: list[int] = []

    def lane(index: int) -> None:
        if index == 1:
            raise ValueError("lane 1 broke")
        assert cancelled.wait(10)  # the others run until told to stop
        finished.append(index)

    with ThreadPoolExecutor(3) as pool, pytest.raises(ValueError, match="lane 1 broke"):
        wait_for_lanes([pool.submit(lane, index) for index in range(3)], cancelled.set)
    assert sorted(finished) == [0, 2]  # both had returned before wait_for_lanes raised


class GraphRecorder:
    """What a fake graph session saw: the thread of every run, and how many captures overlapped."""

    def __init__(self, warmup_runs: int) -> None:
        self.warmup_runs = warmup_runs
        self.lock = threading.Lock()
        self.created_on: dict[int, threading.Thread] = {}
        self.ran_on: dict[int, set[threading.Thread]] = {}
        self.capturing: set[int] = set()
        self.most_capturing_at_once = 0

    def created(self, model: int) -> None:
        with self.lock:
            self.created_on[model] = threading.current_thread()
            self.ran_on[model] = set()
            self.capturing.add(model)  # from creation to the end of its warm-up (capture) runs
            self.most_capturing_at_once = max(self.most_capturing_at_once, len(self.capturing))


class RecordingGraphSession:
    """A real CPU session that records, for cuda_graph's logic, on which thread each run happens."""

    def __init__(self, session: Any, model: int, recorder: GraphRecorder) -> None:
        self.session, self.model, self.recorder, self.runs = session, model, recorder, 0
        recorder.created(model)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def run_with_iobinding(self, binding: Any, *args: Any) -> None:
        recorder = self.recorder
        with recorder.lock:
            recorder.ran_on[self.model].add(threading.current_thread())
        self.runs += 1
        if self.runs <= recorder.warmup_runs:
            threading.Event().wait(0.01)  # a capture that takes a while: others would overlap it without the lock
        self.session.run_with_iobinding(binding, *args)
        if self.runs == recorder.warmup_runs:
            with recorder.lock:
                recorder.capturing.discard(self.model)


class RecordedCudaGraph(CudaGraphBuffersOnCpu):
    recorder: GraphRecorder
    fail_model: int | None = None
    fail_with: BaseException | None = None

    def _graph_session(self, name: str, path: Any, options: dict[str, str]) -> Any:
        model = self.workload.names.index(name)
        if model == self.fail_model:
            raise self.fail_with
        return RecordingGraphSession(super()._graph_session(name, path, options), model, self.recorder)


def lane_threads_alive() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("fanbench-cuda_graph")]


def recorded_graph(**attributes: Any) -> type[RecordedCudaGraph]:
    return type("Recorded", (RecordedCudaGraph,), {"recorder": GraphRecorder(CudaGraph.warmup_runs), **attributes})


def test_cuda_graph_creates_captures_and_replays_each_session_on_its_own_lifelong_thread(make_workload):
    """onnxruntime keeps a captured graph per thread: one thread per model does all of its runs."""
    workload = make_workload(models=3, frames=4)
    strategy = recorded_graph()
    recorder = strategy.recorder
    with strategy(workload) as running:
        for _ in range(2):  # rounds: the same threads replay
            running.run()
        lanes = dict(recorder.created_on)
        assert {model: recorder.ran_on[model] for model in lanes} == {model: {lanes[model]} for model in lanes}
    assert sorted(lanes) == [0, 1, 2]
    assert len(set(lanes.values())) == 3
    assert threading.main_thread() not in lanes.values()
    assert all(len(recorder.ran_on[model]) == 1 for model in lanes)
    assert not any(thread.is_alive() for thread in lanes.values())  # close ends the lanes


def test_cuda_graph_captures_one_session_at_a_time_before_any_lane_is_timed(make_workload):
    workload = make_workload(models=3, frames=2)
    strategy = recorded_graph()
    with strategy(workload) as running:
        assert strategy.recorder.capturing == set()  # every capture finished when open returns
        running.run()
    assert strategy.recorder.most_capturing_at_once == 1


@pytest.mark.parametrize("error", [RuntimeError("out of memory"), KeyboardInterrupt()], ids=["failure", "interrupt"])
def test_cuda_graph_releases_its_lane_threads_when_a_setup_fails(make_workload, error):
    workload = make_workload(models=3, frames=2)
    with pytest.raises(type(error)):
        with recorded_graph(fail_model=1, fail_with=error)(workload):
            pass
    assert lane_threads_alive() == []


# --- on a GPU (skipped here with the reason; fail under --require-gpu) ---

def on_cuda(workload: Workload) -> Workload:
    return replace(workload, provider="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_runs_on_cuda_and_equals_serial_on_the_cpu(name, make_workload):
    """Every registered strategy, the GPU ones and the classic ones alike, really on CUDA.

    Sessions per strategy differ (one per model, one merged session, one per worker process):
    every session it built must run on CUDA, however many there are. Two runs, as the benchmark
    makes rounds: what a strategy prepared once (bindings, captured graphs) must hold for both.
    The reference ran on the CPU in float32; the GPU computes in TF32 by default, hence its tolerance."""
    workload = make_workload(models=3, frames=6)
    reference = serial_outputs(workload)
    with opened(get_strategy(name), on_cuda(workload)) as running:
        assert running.providers_used, f"{name} reports no session's provider"
        assert set(running.providers_used) == {"cuda"}, running.providers_used
        runs = [running.run().outputs for _ in range(2)]
    for outputs in runs:
        assert first_mismatch(reference, outputs, workload.names, fixed_tolerance(on_cuda(workload))) is None


@pytest.mark.gpu
def test_machine_info_names_the_gpu():
    from bench.measure.machine import gpu_machine_info

    info = gpu_machine_info(0)
    assert info["gpu"] is not None, info.get("gpu_unavailable")
    assert info["gpu"]["name"]
    assert info["gpu"]["driver"]
