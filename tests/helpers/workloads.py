"""Workload builders for the tests of the strategies beyond the classics (no fixtures here:
each test module wraps them in its own, so they work beside any tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from fixtures.models import ModelSpec, model_set, write_model
from strategies import ModelInput, Workload

TINY = ModelSpec(width=4, stages=2, blocks=0, classes=10)


def frames_array(frames: int, batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Random frames (frames, batch, 3, size, size): every frame differs, so reordering shows."""
    return np.random.default_rng(seed).normal(size=(frames, batch, 3, size, size)).astype(np.float32)


def tiny_workload(directory: Path, models: int = 3, frames: int = 5, batch: int = 2, size: int = 16,
                  spec: ModelSpec = TINY, seed: int = 0) -> Workload:
    """`models` tiny CNNs sharing one frames array (as the benchmark's workload does)."""
    sized = ModelSpec(width=spec.width, stages=spec.stages, blocks=spec.blocks, classes=spec.classes,
                      height=size, width_px=size, seed=spec.seed)
    tensor = frames_array(frames, batch, size, seed)
    return Workload(tuple(ModelInput(s.name, write_model(s, directory), tensor) for s in model_set(sized, models)))


def failing_model(directory: Path, size: int = 16) -> Path:
    """A valid model with the usual input that fails inside `session.run`: it reshapes the
    input to rows of 7 values, which no batch of 3 x size x size floats divides into."""
    path = directory / f"fails_at_run_{size}.onnx"
    if not path.exists():
        shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 7])
        graph = helper.make_graph(
            [helper.make_node("Reshape", ["frames", "shape"], ["logits"])], "fails_at_run",
            [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["batch", 3, size, size])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", 7])], initializer=[shape])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9
        onnx.checker.check_model(model)
        onnx.save(model, path)
    return path


def with_failing_model(workload: Workload, directory: Path, at: int = 1) -> Workload:
    """`workload` with a model that fails at run time inserted at position `at`."""
    size = workload.models[0].frames.shape[-1]
    bad = ModelInput("fails_at_run", failing_model(directory, size), workload.models[0].frames)
    models = list(workload.models)
    models.insert(at, bad)
    return Workload(tuple(models), workload.provider)
