"""Combining several single-input ONNX models into one graph that feeds them one shared input.

Not `onnx.compose.add_prefix` (onnx 1.23): it prefixes a subgraph before collecting the outer graph's
initializer names, so a subgraph reading an outer initializer could bind to another model's one of the
same name. Here every name of a model, in every subgraph, goes through one mapping."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import onnx
from onnx import GraphProto, ModelProto, helper


class MergeError(ValueError):
    """The models cannot be combined into one graph."""


# protobuf cannot serialise a message of 2 GiB or more (onnx.save raises EncodeError, onnx.checker
# refuses it), and a merged model holds every model's weights.
MAX_MODEL_BYTES = onnx.checker.MAXIMUM_PROTOBUF


def serialised_size(model: ModelProto) -> int:  # weights included, without serialising it
    return model.ByteSize()


def _check_size(sizes: Sequence[int], what: str) -> None:
    if sum(sizes) > MAX_MODEL_BYTES:
        raise MergeError(f"{what} {sum(sizes) / 1e9:.2f} GB, over protobuf's limit of {MAX_MODEL_BYTES / 2**30:g} GiB "
                         "for one model, so one merged graph cannot be saved.")


@dataclass(frozen=True)
class MergedModel:
    model: ModelProto
    input_name: str
    outputs: tuple[tuple[str, ...], ...]  # outputs[i]: the merged graph's output names for model i, in order


def prefix_for(index: int) -> str:
    return f"model{index}/"


def _rename_graph(graph: GraphProto, rename: Callable[[str], str], node_prefix: str,
                  numbers: Iterator[int] | None = None) -> None:
    """`rename` every tensor name in `graph` and its subgraphs, in place (an empty one, an omitted optional
    input, stays). Nodes get `node_prefix` and unnamed ones a number, so onnxruntime's errors name the model."""
    numbers = numbers if numbers is not None else itertools.count()

    def mapped(name: str) -> str:
        return rename(name) if name else name

    for collection in (graph.input, graph.output, graph.value_info):
        for value in collection:
            value.name = mapped(value.name)
    for initializer in graph.initializer:
        initializer.name = mapped(initializer.name)
    for sparse in graph.sparse_initializer:
        sparse.values.name = mapped(sparse.values.name)
        sparse.indices.name = mapped(sparse.indices.name)
    for node in graph.node:
        node.name = node_prefix + (node.name or f"{node.op_type}_{next(numbers)}")
        node.input[:] = [mapped(name) for name in node.input]
        node.output[:] = [mapped(name) for name in node.output]
        for attribute in node.attribute:
            if attribute.HasField("g"):
                _rename_graph(attribute.g, rename, node_prefix, numbers)
            for subgraph in attribute.graphs:
                _rename_graph(subgraph, rename, node_prefix, numbers)


def _opsets(models: Sequence[ModelProto], names: Sequence[str]) -> list[onnx.OperatorSetIdProto]:
    versions: dict[str, tuple[int, str]] = {}
    for model, name in zip(models, names, strict=True):
        for opset in model.opset_import:
            seen = versions.setdefault(opset.domain, (opset.version, name))
            if seen[0] != opset.version:
                domain = opset.domain or "ai.onnx"
                raise MergeError(f"model {seen[1]!r} uses opset {seen[0]} of {domain} and model {name!r} uses "
                                 f"opset {opset.version}; one graph needs one opset per domain (convert the models "
                                 "with onnx.version_converter first).")
    return [helper.make_opsetid(domain, version) for domain, (version, _) in versions.items()]


def _shared_input(models: Sequence[ModelProto], names: Sequence[str]) -> onnx.ValueInfoProto:
    """The first model's input, every dimension on which the models disagree made symbolic."""
    real_inputs = []
    for model, name in zip(models, names, strict=True):
        initializers = {init.name for init in model.graph.initializer}
        inputs = [value for value in model.graph.input if value.name not in initializers]
        if len(inputs) != 1:
            raise MergeError(f"model {name!r} has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}); "
                             "merging needs exactly one input per model.")
        real_inputs.append(inputs[0])
    shared = onnx.ValueInfoProto()
    shared.CopyFrom(real_inputs[0])
    tensor = shared.type.tensor_type
    for value, name in zip(real_inputs[1:], names[1:], strict=True):
        other = value.type.tensor_type
        if other.elem_type != tensor.elem_type or len(other.shape.dim) != len(tensor.shape.dim):
            raise MergeError(f"model {name!r} takes a different input type or rank than model {names[0]!r}; "
                             "one shared input needs the same type and rank.")
        for axis, (mine, theirs) in enumerate(zip(tensor.shape.dim, other.shape.dim, strict=True)):
            if mine != theirs:
                mine.Clear()
                mine.dim_param = f"merged_dim{axis}"
    return shared


def merge_models(models: Sequence[ModelProto], names: Sequence[str], input_name: str = "frames") -> MergedModel:
    """One model computing every model's outputs from one shared input; model i's names prefixed `model{i}/`."""
    if not models:
        raise MergeError("merging needs at least one model.")
    if input_name.startswith("model") and "/" in input_name:
        raise MergeError(f"the shared input name {input_name!r} could clash with the per-model prefixes; choose another.")
    sizes = [serialised_size(model) for model in models]
    listed = ", ".join(f"{name!r} {size / 1e9:.2f} GB" for name, size in zip(names, sizes, strict=True))
    _check_size(sizes, f"the models ({listed}) take")  # before copying every weight
    shared = _shared_input(models, names)
    opsets = _opsets(models, names)
    graph = helper.make_graph([], "merged", [], [])
    functions = []
    outputs = []
    for index, original in enumerate(models):
        model = ModelProto()
        model.CopyFrom(original)
        initializers = {init.name for init in model.graph.initializer}
        own_input = next(value.name for value in model.graph.input if value.name not in initializers)
        prefix = prefix_for(index)

        def rename(tensor: str, own_input: str = own_input, prefix: str = prefix) -> str:
            return input_name if tensor == own_input else prefix + tensor

        _rename_graph(model.graph, rename, prefix)
        local = {(function.domain, function.name) for function in model.functions}
        for function in model.functions:
            function.name = prefix + function.name
        for node in itertools.chain(_all_nodes(model.graph), *(function.node for function in model.functions)):
            if (node.domain, node.op_type) in local:
                node.op_type = prefix + node.op_type
        functions.extend(model.functions)
        graph.node.extend(model.graph.node)
        graph.initializer.extend(model.graph.initializer)
        graph.sparse_initializer.extend(model.graph.sparse_initializer)
        graph.value_info.extend(value for value in model.graph.value_info if value.name != input_name)
        # Initializers listed as inputs (older exporters) stay inputs, now prefixed.
        graph.input.extend(value for value in model.graph.input if value.name != input_name)
        graph.output.extend(model.graph.output)
        outputs.append(tuple(value.name for value in model.graph.output))
    shared.name = input_name
    graph.input.insert(0, shared)
    merged = helper.make_model(graph, opset_imports=opsets, functions=functions, producer_name="fanbench-merged")
    merged.ir_version = max(model.ir_version for model in models)
    _check_size([serialised_size(merged)], "the merged graph takes")  # the prefixed names add a little
    try:
        onnx.checker.check_model(merged)
    except onnx.checker.ValidationError as error:
        raise MergeError(f"the merged graph does not pass onnx.checker: {error}") from error
    return MergedModel(merged, input_name, tuple(outputs))


def _all_nodes(graph: GraphProto):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_nodes(subgraph)
