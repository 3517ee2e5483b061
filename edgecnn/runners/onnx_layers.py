"""What every runtime that reads ONNX files (ONNX Runtime, OpenVINO) reads from one with the onnx package: each Keras
layer's output made a graph output (what `verify --explain` compares with the Keras model), the graph facts `info`
prints, and how the file stores its weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgecnn.core.artifact_details import WeightCounts
from edgecnn.core.layers import onnx_node_layers
from edgecnn.runners.base import GraphFacts


def marked_graph(path: Path, layers: list[str]) -> tuple[bytes, dict[str, str]]:
    """The file's graph with each layer's last tensor (after its DequantizeLinear in a QDQ file) as an extra output, and
    which tensor is which layer's."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tensors: dict[str, str] = {}
    node_layers = onnx_node_layers(model, layers, by_weights=False)
    weights = {initializer.name for initializer in model.graph.initializer}
    for node in model.graph.node:
        layer = node_layers[node.name]
        if layer is None or node.input[0] in weights:  # a weight's (de)quantization is not the layer's output
            continue
        if node.op_type == "QuantizeLinear":  # the quantizer removed the layer's own op (a ReLU6 became the int8 range)
            tensors[layer] = dequantized(node.input[0], consumers)
        elif node.op_type != "DequantizeLinear":
            tensors[layer] = dequantized(node.output[0], consumers)
    output_names = {output.name for output in model.graph.output}
    typed = {info.name: info for info in list(model.graph.value_info) + list(model.graph.output)}
    if layers:
        tensors[layers[-1]] = model.graph.output[0].name  # the model's output is its last layer's, whatever its node is named
    for name in tensors.values():
        if name not in output_names:
            model.graph.output.append(typed.get(name) or onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            output_names.add(name)
    return model.SerializeToString(), tensors


def onnx_graph_facts(path: Path) -> GraphFacts:
    """The file's metadata properties, opsets and operator counts, read with the onnx package (any runtime that reads ONNX)."""
    from collections import Counter

    from edgecnn.core.onnx_graph import load_onnx_checked

    model = load_onnx_checked(path)  # before the runtime loads anything: refuses escaping external data
    return GraphFacts(metadata={prop.key: prop.value for prop in model.metadata_props},
                      opset={entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
                      ops=dict(Counter(node.op_type for node in model.graph.node)))


def onnx_weight_counts(path: Path) -> WeightCounts:
    """The file's initializers, less its (de)quantization scales and zero points and its int64 shapes and axes: all
    elements, and those stored in 8 bits (a QDQ file's quantized weights)."""
    import onnx

    from edgecnn.core.onnx_graph import load_onnx_checked

    graph = load_onnx_checked(path).graph
    parameters = {name for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear") for name in node.input[1:]}
    sizes = [(tensor.data_type, math.prod(tensor.dims)) for tensor in graph.initializer
             if tensor.name not in parameters and tensor.data_type != onnx.TensorProto.INT64]
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    return WeightCounts(sum(size for _, size in sizes), sum(size for kind, size in sizes if kind in eight_bit))


def dequantized(name: str, consumers: dict[str, list[Any]]) -> str:
    """What the next layer reads: a QDQ file quantizes a tensor and dequantizes it again before its consumers."""
    for quantize in (node for node in consumers.get(name, []) if node.op_type == "QuantizeLinear"):
        for dequantize in (node for node in consumers.get(quantize.output[0], []) if node.op_type == "DequantizeLinear"):
            return str(dequantize.output[0])
    return name
