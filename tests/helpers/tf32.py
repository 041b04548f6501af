"""TF32 arithmetic emulated on the CPU, to size the equivalence tolerance for GPU runs.

TF32 keeps float32's exponent and 10 of its 23 mantissa bits: tensor cores round the operands
of a convolution or GEMM to it and accumulate in float32. Here the weights are rounded to 10
mantissa bits exactly (bit arithmetic), and each Conv's and Gemm's data input through a
float16 round trip (float16 also has 10 mantissa bits; the activations of fanbench's models lie
well inside its range). What differs between two TF32 GPU kernels is of this order.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def round_to_tf32(array: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest value with 10 mantissa bits."""
    bits = np.ascontiguousarray(array, np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)  # half of the 13 dropped bits, then drop them
    return rounded.view(np.float32)


def tf32_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose Conv and Gemm operands are rounded as TF32 tensor cores round them."""
    emulated = onnx.ModelProto()
    emulated.CopyFrom(model)
    graph = emulated.graph
    for initializer in graph.initializer:
        values = numpy_helper.to_array(initializer)
        if values.ndim >= 2:  # weights; biases are added in float32
            initializer.CopyFrom(numpy_helper.from_array(round_to_tf32(values), initializer.name))
    nodes = []
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm"):
            data = node.input[0]
            nodes += [helper.make_node("Cast", [data], [f"{data}.f16"], to=TensorProto.FLOAT16),
                      helper.make_node("Cast", [f"{data}.f16"], [f"{data}.tf32"], to=TensorProto.FLOAT)]
            node.input[0] = f"{data}.tf32"
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(emulated, full_check=True)
    return emulated
