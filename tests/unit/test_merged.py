"""The graph merge behind `merged`: one graph, one shared input, each model's outputs unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, compose, helper, numpy_helper

from fixtures.models import ModelSpec, build_model, write_model
from strategies import ModelInput, StrategyUnavailable, ThreadSettings, Workload, get_strategy
from strategies.runtime import make_session, merge
from strategies.runtime.merge import MergeError, merge_models
from tests.helpers.equivalence import assert_equal_to_serial
from tests.helpers.workloads import frames_array, tiny_workload

ONE_THREAD = ThreadSettings(intra_op=1, inter_op=1, spinning=False)


def run_alone(paths: list[Path], frames: np.ndarray) -> list[list[tuple[np.ndarray, ...]]]:
    outputs = []
    for path in paths:
        session = make_session(path, ONE_THREAD)
        name = session.get_inputs()[0].name
        outputs.append([tuple(session.run(None, {name: frame})) for frame in frames])
    return outputs


specs = st.builds(ModelSpec, width=st.integers(2, 6), stages=st.integers(1, 3), blocks=st.integers(0, 2),
                  classes=st.integers(1, 12), height=st.just(16), width_px=st.just(16), seed=st.integers(0, 1000))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model_specs=st.lists(specs, min_size=1, max_size=4), frame_count=st.integers(1, 3), batch=st.integers(1, 3))
def test_merged_equals_the_separate_models(tmp_path_factory, model_specs, frame_count, batch):
    directory = tmp_path_factory.mktemp("merge")
    paths = [write_model(spec, directory) for spec in model_specs]
    names = [f"m{index}" for index in range(len(paths))]
    merged = merge_models([onnx.load(path) for path in paths], names)
    graph = merged.model.graph
    assert [value.name for value in graph.input] == ["frames"]
    assert len(graph.output) == len(paths)
    # Every model's initializers are there under their own prefix: none collide, none are shared.
    initializer_names = [init.name for init in graph.initializer]
    assert len(initializer_names) == len(set(initializer_names)) == sum(
        len(build_model(spec).graph.initializer) for spec in model_specs)
    assert all(name.startswith(f"model{i}/") for i, names_ in enumerate(merged.outputs) for name in names_)

    path = directory / "merged.onnx"
    onnx.save(merged.model, path)
    frames = frames_array(frame_count, batch, 16, seed=frame_count)
    session = make_session(path, ONE_THREAD)
    order = [output.name for output in session.get_outputs()]
    got = [[tuple(results[order.index(name)] for name in names_) for results in
            (session.run(None, {"frames": frame}) for frame in frames)] for names_ in merged.outputs]
    separate = Workload(tuple(ModelInput(name, path, frames) for name, path in zip(names, paths, strict=True)))
    assert_equal_to_serial(separate, run_alone(paths, frames), got)


def if_model(scale: float) -> onnx.ModelProto:
    """A model whose If branches read an initializer of the outer graph, named 'w' in every copy."""
    w = numpy_helper.from_array(np.array(scale, np.float32), "w")
    cond = numpy_helper.from_array(np.array(True), "cond")
    then = helper.make_graph([helper.make_node("Mul", ["frames", "w"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Add", ["frames", "w"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["out"], then_branch=then, else_branch=other)], "if_model",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["b", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 3])], initializer=[w, cond])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def test_subgraphs_keep_their_own_models_outer_initializers(tmp_path):
    # onnx.compose.add_prefix leaves the branch's 'w' unprefixed (why merge.py renames itself):
    prefixed = compose.add_prefix(if_model(2.0), "model0/")
    assert list(prefixed.graph.node[0].attribute[0].g.node[0].input) == ["model0/frames", "w"]

    merged = merge_models([if_model(2.0), if_model(3.0)], ["double", "triple"])
    path = tmp_path / "merged.onnx"
    onnx.save(merged.model, path)
    session = make_session(path, ONE_THREAD)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    results = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"frames": x}), strict=True))
    np.testing.assert_array_equal(results[merged.outputs[0][0]], x * 2)
    np.testing.assert_array_equal(results[merged.outputs[1][0]], x * 3)


def test_different_opsets_cannot_merge():
    first, second = (build_model(ModelSpec(width=2, stages=1, height=8, width_px=8, seed=seed)) for seed in (0, 1))
    second.opset_import[0].version = 13
    with pytest.raises(MergeError, match=r"opset 17 of ai\.onnx and model 'b' uses opset 13"):
        merge_models([first, second], ["a", "b"])


def test_a_model_with_two_inputs_cannot_merge():
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "two",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy"],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(MergeError, match=r"model 'two' has 2 inputs \(x, y\)"):
        merge_models([model], ["two"])


def test_inputs_of_different_rank_cannot_share_one_input():
    with pytest.raises(MergeError, match="different input type or rank"):
        merge_models([build_model(ModelSpec(width=2, stages=1, height=8, width_px=8)), if_model(1.0)], ["cnn", "if"])


def test_merged_strategy_maps_outputs_back_per_model(tmp_path):
    specs_ = [ModelSpec(width=3, stages=1, classes=5, height=16, width_px=16, seed=1),
              ModelSpec(width=5, stages=2, blocks=1, classes=9, height=16, width_px=16, seed=2)]
    frames = frames_array(3, 2, 16)
    workload = Workload(tuple(ModelInput(spec.name, write_model(spec, tmp_path), frames) for spec in specs_))
    with get_strategy("merged")(workload) as merged:
        result = merged.run()
        directory = merged.directory
        assert directory.exists()
    assert not directory.exists()  # the merged file is removed on close
    assert [out[0].shape for out in (result.outputs[0][0], result.outputs[1][0])] == [(2, 5), (2, 9)]
    assert_equal_to_serial(workload, run_alone([model.path for model in workload.models], frames), result.outputs)


def test_models_over_protobufs_2_gib_limit_skip_merged_with_the_reason(tmp_path, monkeypatch):
    """Sizes faked (writing 2 GB of weights would prove nothing more): onnx.save raised
    protobuf's EncodeError, a traceback in every merged benchmark."""
    workload = tiny_workload(tmp_path, models=2, frames=1, batch=1, size=8)
    monkeypatch.setattr(merge, "serialised_size", lambda model: 1_100_000_000)
    with pytest.raises(StrategyUnavailable, match=r"^merged: the models \('.+' 1\.10 GB, '.+' 1\.10 GB\) take 2\.20 GB, "
                                                  r"over protobuf's limit of 2 GiB for one model, so one merged graph "
                                                  r"cannot be saved\.$"), get_strategy("merged")(workload):
        pass
