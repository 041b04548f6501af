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

from bench.harness import opened
from strategies import STRATEGIES, ModelInput, StrategyError, StrategyUnavailable, Workload, get_strategy
from strategies.base import wait_for_lanes
from strategies.cuda_graph import CudaGraph
from strategies.device_frames import Cancelled, DeviceFrames
from strategies.equivalence import first_mismatch, tolerance_for
from strategies.iobinding import IOBinding


class CudaGraphBuffersOnCpu(CudaGraph):
    """cuda_graph's pre-allocated, bound-once, updated-in-place buffers, on the CPU provider."""

    name = "cuda_graph_buffers_on_cpu"
    needs_cuda = False


def serial_outputs(workload: Workload):
    with get_strategy("serial")(workload) as serial:
        return serial.run().outputs


def mixed_inputs(make_workload) -> Workload:
    """Two models reading one frames array, a third reading another (different batch)."""
    shared = make_workload(models=3, frames=6, batch=2)
    other = make_workload(models=1, frames=6, batch=3)
    third = ModelInput(other.models[0].name + "-own-input", other.models[0].path, other.models[0].frames)
    return Workload((shared.models[0], shared.models[1], third), "cpu")


@pytest.mark.parametrize("strategy", [IOBinding, CudaGraphBuffersOnCpu], ids=["iobinding", "cuda_graph-buffers"])
@pytest.mark.parametrize("shape", ["shared-input", "mixed-inputs"])
def test_equals_serial_on_the_cpu(strategy, shape, make_workload):
    workload = make_workload(models=3, frames=6) if shape == "shared-input" else mixed_inputs(make_workload)
    before = [model.frames.copy() for model in workload.models]
    reference = serial_outputs(workload)
    with strategy(workload) as running:
        assert running.providers_used == ["cpu"] * 3
        for _ in range(2):  # a second run reuses bindings and buffers
            result = running.run()
            assert first_mismatch(reference, result.outputs, workload.names) is None
            assert sorted((call.model, call.first_frame) for call in result.calls) == [
                (model, frame) for model in range(3) for frame in range(6)]
    for model, frames in zip(workload.models, before, strict=True):
        np.testing.assert_array_equal(model.frames, frames)  # in-place updates never touch the workload


def test_a_strategy_that_reorders_frames_is_caught(make_workload):
    """The equivalence check these tests rely on does see a wrong frame (guards the test itself)."""
    workload = make_workload(models=2, frames=4)
    reference = serial_outputs(workload)
    with IOBinding(workload) as running:
        outputs = running.run().outputs
    outputs[1][1], outputs[1][2] = outputs[1][2], outputs[1][1]
    assert "frame 1" in first_mismatch(reference, outputs, workload.names)


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
    from strategies import cuda_graph

    real = cuda_graph.make_session

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
    from strategies import cuda_graph

    workload = make_workload(models=3, frames=2)
    monkeypatch.setattr(cuda_graph, "make_session", refuse_graphs_for(workload.models[1].path, message))
    with pytest.raises(pytest.skip.Exception) as skipped:
        with opened(CudaGraphBuffersOnCpu, workload):
            pass
    assert str(skipped.value.msg) == (f"cuda_graph_buffers_on_cpu: onnxruntime cannot run model "
                                      f"{workload.names[1]!r} as a CUDA graph: [ONNXRuntimeError] : 1 : FAIL : {message}")


def test_cuda_graph_lets_other_session_errors_fail(make_workload, monkeypatch):
    from strategies import cuda_graph

    workload = make_workload(models=2, frames=2)
    monkeypatch.setattr(cuda_graph, "make_session", refuse_graphs_for(workload.models[0].path, "out of memory"))
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


# --- on a GPU (skipped here with the reason; fail under --require-gpu) ---

def on_cuda(workload: Workload) -> Workload:
    return replace(workload, provider="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_runs_on_cuda_and_equals_serial_on_the_cpu(name, make_workload):
    """Every registered strategy, the GPU ones and the classic ones alike, really on CUDA.

    The reference ran on the CPU in float32; the GPU computes in TF32 by default, hence its tolerance."""
    workload = make_workload(models=3, frames=6)
    reference = serial_outputs(workload)
    with opened(get_strategy(name), on_cuda(workload)) as running:
        assert running.providers_used == ["cuda"] * 3
        outputs = running.run().outputs
    assert first_mismatch(reference, outputs, workload.names, tolerance_for(on_cuda(workload))) is None


@pytest.mark.gpu
def test_machine_info_names_the_gpu():
    from bench.gpu_info import gpu_machine_info

    info = gpu_machine_info(0)
    assert info["gpu"] is not None, info.get("gpu_unavailable")
    assert info["gpu"]["name"]
    assert info["gpu"]["driver"]
