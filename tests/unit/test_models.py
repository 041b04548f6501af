"""The synthetic model generator: deterministic, checked, runnable, and its FLOPs counted right."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest

from fixtures.models import (
    INPUT_NAME,
    IR_VERSION,
    OPSET,
    SIZES,
    ModelSpec,
    build_model,
    file_digest,
    flops_per_image,
    model_set,
    write_model,
)
from strategies import ThreadSettings
from strategies.runtime import make_session


def test_same_spec_gives_same_bytes():
    spec = ModelSpec(width=4, stages=1, height=16, width_px=16, classes=5)
    assert build_model(spec).SerializeToString() == build_model(spec).SerializeToString()


def test_seeds_give_different_weights():
    first, second = (build_model(spec) for spec in model_set(SIZES["tiny"], 2))
    weights = [onnx.numpy_helper.to_array(model.graph.initializer[0]) for model in (first, second)]
    assert weights[0].shape == weights[1].shape
    assert not np.array_equal(weights[0], weights[1])


def test_pins_opset_and_ir_version_and_dynamic_batch():
    model = build_model(SIZES["tiny"])
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [3, 256, 256]
    onnx.checker.check_model(model, full_check=True)


def test_has_strided_conv_stages_pooling_and_gemm():
    spec = ModelSpec(width=4, stages=2, blocks=1)
    ops = [node.op_type for node in build_model(spec).graph.node]
    assert ops.count("Conv") == 1 + spec.stages * (1 + spec.blocks)
    assert ops.count("Relu") == ops.count("Conv")
    assert ops[-3:] == ["GlobalAveragePool", "Flatten", "Gemm"]
    strides = [list(n.attribute[-1].ints) for n in build_model(spec).graph.node if n.op_type == "Conv"]
    assert strides == [[2, 2], [2, 2], [1, 1], [2, 2], [1, 1]]


@pytest.mark.parametrize("batch", [1, 3])
def test_runs_in_onnxruntime_at_any_batch(tmp_path, batch):
    spec = ModelSpec(width=4, stages=2, height=32, width_px=24, classes=7)
    session = make_session(write_model(spec, tmp_path), ThreadSettings(intra_op=1))
    (logits,) = session.run(None, {INPUT_NAME: np.random.default_rng(0).random((batch, 3, 32, 24), np.float32)})
    assert logits.shape == (batch, 7)
    assert np.all(np.isfinite(logits))


def test_flops_match_a_hand_count():
    # 8x8 input. Stem: 3->2 channels, stride 2 -> 4x4. Stage: 2->4, stride 2 -> 2x2. Gemm 4->5.
    spec = ModelSpec(width=2, stages=1, blocks=0, classes=5, height=8, width_px=8)
    stem = 2 * 3 * 2 * 9 * 4 * 4
    stage = 2 * 2 * 4 * 9 * 2 * 2
    gemm = 2 * 4 * 5
    assert flops_per_image(spec) == stem + stage + gemm


def test_presets_grow_in_cost():
    costs = [flops_per_image(SIZES[name]) for name in ("tiny", "small", "medium", "large", "resnet18")]
    assert costs == sorted(costs)
    # resnet18 is meant to cost about a ResNet-18 at 256x256 (4.7 GFLOP per image).
    assert 3.5e9 < flops_per_image(SIZES["resnet18"]) < 6e9


def test_write_model_reuses_the_file_and_hash_tracks_content(tmp_path):
    spec = SIZES["tiny"]
    path = write_model(spec, tmp_path)
    stamp = path.stat().st_mtime_ns
    assert write_model(spec, tmp_path) == path
    assert path.stat().st_mtime_ns == stamp
    other = write_model(spec.with_seed(99), tmp_path)
    assert file_digest([path]) != file_digest([other])
    assert file_digest([path, other]) != file_digest([other, path])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"width": 0}, "ModelSpec.width must be at least 1, got 0.", id="zero-width"),
        pytest.param({"stages": 0}, "ModelSpec.stages must be at least 1, got 0.", id="zero-stages"),
        pytest.param({"blocks": -1}, "ModelSpec.blocks must be at least 0, got -1.", id="negative-blocks"),
        pytest.param({"height": 0}, "ModelSpec.height must be at least 1, got 0.", id="zero-height"),
    ],
)
def test_bad_specs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        ModelSpec(**kwargs)


def test_model_set_refuses_zero_models():
    with pytest.raises(ValueError, match="model count must be at least 1, got 0"):
        model_set(SIZES["tiny"], 0)


def test_a_size_resized_keeps_its_shape_and_changes_only_the_input_size():
    resized = SIZES["resnet18"].sized(128, 96)
    assert (resized.height, resized.width_px) == (128, 96)
    assert replace(resized, height=256, width_px=256) == SIZES["resnet18"]
