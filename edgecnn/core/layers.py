"""Which Keras layer a converter's node or tensor came from, so users name layers the way they built them.

tf2onnx names ONNX nodes and the TFLite converter names tensors after the traced TensorFlow ops, which carry the
Keras layer's name as a path segment, with Keras 3's call-scope suffix: `mnist_cnn_1/conv2_1/BiasAdd` is layer
`conv2`; TFLite fuses ops and joins their names with `;` (`mnist_cnn_1/conv1_1/Relu;mnist_cnn_1/conv1_1/BiasAdd;…`).
Nodes a converter adds on its own (`Transpose__30`) belong to no layer.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from edgecnn.core.errors import EdgecnnError

CALL_SUFFIX = re.compile(r"_\d+$")


def keras_layer_for(name: str, layer_names: Collection[str]) -> str | None:
    """The Keras layer a node or tensor name belongs to, or None. The first path segment is the model's own scope."""
    segments = name.split(";")[0].split("/")
    for segment in segments[1:] if len(segments) > 1 else segments:
        for candidate in (segment, CALL_SUFFIX.sub("", segment)):
            if candidate in layer_names:
                return candidate
    return None


def check_layer_names(wanted: Sequence[str], layer_names: Sequence[str], option: str) -> None:
    """A one-line user error for a name that is not one of the model's layers, listing some that are."""
    for name in wanted:
        if name not in layer_names:
            shown = ", ".join(layer_names[:12]) + (", …" if len(layer_names) > 12 else "")
            raise EdgecnnError(f"the model has no layer named {name!r}; its layers are {shown}", option)


def keras_layer_names(keras_model: object) -> list[str]:
    """The model's layers in order, as users see them in `model.summary()` (the input placeholder excluded)."""
    return [layer.name for layer in getattr(keras_model, "layers", []) if type(layer).__name__ != "InputLayer"]
