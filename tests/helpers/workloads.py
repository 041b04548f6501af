"""The tests' one tiny-workload builder, and a model that fails at run time (no fixtures here:
tests/conftest.py and the test modules wrap them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from fixtures.models import SIZES, ModelSpec, model_set, write_model
from fixtures.workloads import synthetic_workload
from strategies import ModelInput, Workload

TINY = SIZES["tiny"]


def frames_array(frames: int, batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Random frames (frames, batch, 3, size, size): every frame differs, so reordering shows."""
    return np.random.default_rng(seed).normal(size=(frames, batch, 3, size, size)).astype(np.float32)


def tiny_workload(directory: Path, *, models: int = 3, frames: int = 5, batch: int = 2, size: int = 16,
                  images: Sequence[np.ndarray] | None = None, seed: int = 0, spec: ModelSpec = TINY) -> Workload:
    """`models` tiny CNNs of `size` x `size` sharing one frames array (as the benchmark's workload does):
    `frames` decoded `images` (repeated as needed) preprocessed as `pytest bench` does, else random frames."""
    specs = model_set(replace(spec, height=size, width_px=size), models)
    if images is not None:
        return synthetic_workload(specs, [images[i % len(images)] for i in range(frames)], batch, directory)
    tensor = frames_array(frames, batch, size, seed)
    return Workload(tuple(ModelInput(s.name, write_model(s, directory), tensor) for s in specs))


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


def slow_model(directory: Path, nodes: int = 600, size: int = 256) -> Path:
    """A valid model with one image input (1, 3, size, size) that is slow on every call: `nodes` MatMuls by
    one orthogonal matrix in a chain (values stay bounded; 100 MFLOP each at 256), so onnxruntime can stop
    it between two."""
    path = directory / f"slow_{nodes}x{size}.onnx"
    if not path.exists():
        rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(size, size)))
        eye = helper.make_tensor("eye", TensorProto.FLOAT, [size, size], rotation.astype(np.float32).ravel())
        names = ["frames", *(f"x{i}" for i in range(1, nodes)), "out"]
        graph = helper.make_graph(
            [helper.make_node("MatMul", [names[i], "eye"], [names[i + 1]]) for i in range(nodes)], "slow",
            [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, 3, size, size])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, size, size])], initializer=[eye])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9
        onnx.checker.check_model(model)
        onnx.save(model, path)
    return path
