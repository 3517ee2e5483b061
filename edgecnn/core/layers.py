"""Which Keras layer a converter's node or tensor came from, so users name layers the way they built them.

tf2onnx names ONNX nodes and the TFLite converter names tensors after the traced TensorFlow ops, which carry the
Keras layer's scope as a path segment: `mnist_cnn_1/conv2_1/BiasAdd` is layer `conv2`; TFLite fuses ops and joins
their names with `;` (`mnist_cnn_1/conv1_1/Relu;mnist_cnn_1/conv1_1/BiasAdd;…`).
Nodes a converter adds on its own (`Transpose__30`, `…/BiasAdd__6`: tf2onnx's `__<n>` suffix) belong to no layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edgecnn.core.errors import EdgecnnError

CONVERTER_MADE = re.compile(r"__\d+$")
MAX_CALLS = 10  # scope suffixes tried per layer


@dataclass(frozen=True)
class LayerMap:
    """Converter names → Keras layers for one graph. TensorFlow makes scope names unique in call order, so layer
    `re_lu` traces as `re_lu_1` and a later layer named `re_lu_1` as `re_lu_1_2`: each layer, in model order, takes the
    first of its possible scopes the graph has that no earlier layer took."""

    scopes: dict[str, str]  # scope segment → layer
    order: dict[str, int]  # layer → position in the model

    @classmethod
    def build(cls, names: Iterable[str], layer_names: Sequence[str]) -> LayerMap:
        segments = {segment for name in names for part in name.split(";") for segment in part.split("/")[1:]}
        scopes: dict[str, str] = {}
        for layer in layer_names:
            for candidate in [*(f"{layer}_{call}" for call in range(1, MAX_CALLS)), layer]:
                if candidate in segments and candidate not in scopes:
                    scopes[candidate] = layer
                    break
        return cls(scopes, {layer: index for index, layer in enumerate(layer_names)})

    def layer_of(self, name: str) -> str | None:
        """The Keras layer a node or tensor belongs to; for a fused TFLite tensor (`a;b;c`), the latest layer it holds."""
        found = None
        for part in name.split(";"):
            if CONVERTER_MADE.search(part):
                continue
            layer = next((self.scopes[segment] for segment in part.split("/")[1:] if segment in self.scopes), None)
            if layer is not None and (found is None or self.order[layer] > self.order[found]):
                found = layer
        return found


def check_layer_names(wanted: Sequence[str], layer_names: Sequence[str], option: str) -> None:
    """A one-line user error for a name that is not one of the model's layers, listing some that are."""
    for name in wanted:
        if name not in layer_names:
            shown = ", ".join(layer_names[:12]) + (", …" if len(layer_names) > 12 else "")
            raise EdgecnnError(f"the model has no layer named {name!r}; its layers are {shown}", option)


def keras_layer_names(keras_model: object) -> list[str]:
    """The model's layers in order, as users see them in `model.summary()` (the input placeholder excluded)."""
    return [layer.name for layer in getattr(keras_model, "layers", []) if type(layer).__name__ != "InputLayer"]


def onnx_node_layers(model: Any, layer_names: Sequence[str], by_weights: bool = True) -> dict[str, str | None]:
    """Each ONNX node's Keras layer. With `by_weights` (what keeping layers in float needs) a computing node goes with
    its weights' layer (a weight initializer, or its DequantizeLinear in a QDQ file), else with its own name's, never
    with its outputs' names: tf2onnx renames the convolutions it rewrites (`Conv__327`) but their weights keep the
    layer's scope (`…/conv_1/convolution/merged_input`), and ONNX Runtime's QDQ quantizer removes a Relu or Clip after a
    node and gives that node the activation's output name (`…/re_lu_2_1/Relu:0`), which must not make it the
    activation's. Without `by_weights` (`verify --explain`, which compares outputs), a node goes by its name, else its
    outputs: with a BatchNorm folded in, the output is the BatchNorm's. A (de)quantization node is named after its tensor
    only: its scale belongs to whichever layer the quantizer took it from."""
    graph = model.graph
    quantization = ("QuantizeLinear", "DequantizeLinear")
    weights = {initializer.name for initializer in graph.initializer}
    weights |= {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in weights}
    identities = {node.name: [*(name for name in node.input if name in weights and node.op_type not in quantization), node.name]
                  if by_weights else [node.name, *(name.split(":")[0] for name in node.output)]
                  for node in graph.node}
    layer_map = LayerMap.build((name for names in identities.values() for name in names), layer_names)
    return {node: next((layer for layer in map(layer_map.layer_of, names) if layer is not None), None) for node, names in identities.items()}


def with_orphans(nodes: Iterable[tuple[str, Sequence[str], Sequence[str]]], owners: dict[str, str | None],
                 joins_producer: frozenset[str] = frozenset()) -> dict[str, str | None]:
    """Owners for keeping layers in float, so that keeping every layer keeps every node. A node of no layer — a
    converter's own Transpose, or an op Keras recorded without a layer of its own (MobileNetV3's hard-sigmoid
    multiplies) — goes with the layer whose output it reads, so keeping that layer in float keeps it too; one that reads
    no layer's output (a Transpose or Cast of the model's input) goes with the first layer that reads its output. A node
    in `joins_producer` (an activation the quantizer folds into the node before it) goes with the layer it reads,
    whatever its own. `nodes`: (name, inputs, outputs) in execution order."""
    listed = list(nodes)
    produced_by: dict[str, str | None] = {}
    grouped: dict[str, str | None] = {}
    for name, inputs, outputs in listed:
        read = next((produced_by[tensor] for tensor in inputs if produced_by.get(tensor)), None)
        layer = (read or owners.get(name)) if name in joins_producer else (owners.get(name) or read)
        grouped[name] = layer
        produced_by.update(dict.fromkeys(outputs, layer))
    read_by: dict[str, str | None] = {}
    for name, inputs, outputs in reversed(listed):
        if grouped[name] is None:
            grouped[name] = next((read_by[tensor] for tensor in outputs if read_by.get(tensor)), None)
        for tensor in inputs:
            read_by[tensor] = grouped[name] or read_by.get(tensor)
    return grouped
