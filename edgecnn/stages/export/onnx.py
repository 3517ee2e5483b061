"""ONNX converters: fp32 (tf2onnx), fp16 (ONNX Runtime's float16 converter) and static int8 (onnxruntime.quantization).

Each takes the frozen `ExportInputs` (and, for derived precisions, the fp32 file it converts from) and returns the
staged file with the details the manifest records about how it was made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn.core.artifact import INPUT_NAME, OUTPUT_NAME
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError, training_side
from edgecnn.core.layers import keras_layer_names, onnx_node_layers, with_orphans
from edgecnn.core.manifest import Precision
from edgecnn.stages.export.artifacts import ArtifactSpec
from edgecnn.stages.export.inputs import Converted, ExportInputs


def convert(spec: ArtifactSpec, inputs: ExportInputs, base: Path | None) -> Converted:
    """fp32 from the Keras model; fp16 and int8 from `base`, the fp32 file the format table names as their base."""
    if spec.precision is Precision.FP32:
        return convert_fp32(spec, inputs)
    if base is None:
        raise ValueError(f"{spec.name} is converted from its fp32 base, and none was given")
    if spec.precision is Precision.INT8:
        return quantize_int8(spec, inputs, base)
    return convert_fp16(spec, inputs, base)


def convert_fp32(spec: ArtifactSpec, inputs: ExportInputs) -> Converted:
    with training_side("ONNX export"):
        import tf2onnx

    from edgecnn.core.onnx_graph import slim_if_identical

    description = inputs.description
    tf_function, signature = serving_function(inputs.keras_model, description, uint8_input=spec.uint8_input)
    model_proto, _ = tf2onnx.convert.from_function(tf_function, input_signature=signature, opset=inputs.options.opset)
    probe = raw_pixels(inputs.calibration[:64], description) if spec.uint8_input else description.model_input(inputs.calibration[:64])
    model_proto, cleanup = slim_if_identical(model_proto, probe)
    metadata = inputs.metadata | (
        {"input_layout": f"[{', '.join(map(str, ('batch', *raw_pixel_shape(description))))}]",
         "input_scaling": f"uint8 raw pixels 0-255; the graph computes {description.scaling_text()}"} if spec.uint8_input else {}
    )
    return save_checked(model_proto, spec, inputs, metadata, {"graph_cleanup": cleanup.to_dict()})


def convert_fp16(spec: ArtifactSpec, inputs: ExportInputs, base: Path) -> Converted:
    """fp16 weights and compute for GPUs (ONNX Runtime's float16 converter); input and output stay fp32, so an app
    feeds it exactly like the fp32 file. On an H200 it ran 1.7x the fp32 throughput at -0.01 points (see RESULTS)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgecnn.core.onnx_graph import topologically_sorted

    model_proto = topologically_sorted(convert_float_to_float16(onnx.load(base), keep_io_types=True))
    details = {"float16": {"converter": "onnxruntime.transformers.float16", "keep_io_types": True}}
    return save_checked(model_proto, spec, inputs, inputs.metadata, details)


def quantize_int8(spec: ArtifactSpec, inputs: ExportInputs, base: Path) -> Converted:
    """Static int8 (QDQ) with onnxruntime.quantization, calibrated on training images, with the calibration method,
    weight granularity and the Keras layers kept in float that the options name (recorded in the file and manifest).

    Without --keep-float the model's first convolution stays fp32 (the search's first candidate): on the seed CNN it
    has one input channel (a 9-tap dot product), holds 320 of the 600k weights, and ONNX Runtime's int8 kernel for it
    measured slower than fp32 (25 vs 29 µs per image at batch 1).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod as OrtCalibrationMethod
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgecnn.core.onnx_graph import fuse_matmul_add_into_gemm

    fused = inputs.staging / "int8-fused.onnx"
    onnx.save(fuse_matmul_add_into_gemm(onnx.load(base)), fused)
    prepared = inputs.staging / "int8-prepared.onnx"
    quant_pre_process(str(fused), str(prepared), skip_symbolic_shape=True)
    prepared_model = onnx.load(prepared)
    node_layers = onnx_node_layers(prepared_model, keras_layer_names(inputs.keras_model))
    kept_layers = list(inputs.options.keep_float) if inputs.options.keep_float is not None else first_float_candidate(prepared_model, node_layers)
    kept_nodes = nodes_of_layers(prepared_model, kept_layers, node_layers)
    options = inputs.options
    quantized = inputs.staging / f"int8-quantized-{spec.filename(inputs.model_entry.stem)}"
    quantize_static(
        str(prepared),
        str(quantized),
        ImageCalibrationReader(inputs.calibration, description=inputs.description),
        quant_format=QuantFormat.QDQ,
        per_channel=options.per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept_nodes,
        calibrate_method=getattr(OrtCalibrationMethod, {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}[options.calibration_method.value]),
    )
    quantization = {
        "format": "QDQ", "activations": "uint8", "weights": f"int8 {'per-channel' if options.per_channel else 'per-tensor'}",
        "calibration_method": options.calibration_method.value, "kept_float_layers": kept_layers, "kept_float_nodes": kept_nodes,
    }
    details = {"quantization": quantization, "calibration": inputs.calibration_details()}
    return save_checked(onnx.load(quantized), spec, inputs, inputs.metadata | {"quantization": json.dumps(quantization, sort_keys=True)}, details)


def first_float_candidate(model: Any, node_layers: dict[str, str | None]) -> list[str]:
    """The layer of the model's first convolution: what int8 ONNX files keep in float unless --keep-float says otherwise."""
    from edgecnn.core.onnx_graph import first_node_of_type

    first_conv = first_node_of_type(model, "Conv")
    layer = node_layers.get(first_conv) if first_conv else None
    return [layer] if layer else []


def nodes_of_layers(model: Any, kept_layers: list[str], node_layers: dict[str, str | None]) -> list[str]:
    """The graph's nodes that belong to the kept Keras layers, with the nodes of no layer that read their outputs
    (`with_orphans`); a named layer without a node of its own is a user error."""
    empty = [layer for layer in kept_layers if layer not in node_layers.values()]
    if empty:
        raise EdgecnnError(f"layer {empty[0]!r} has no node of its own in the ONNX graph (the converter folded it into a neighbour)",
                           "--keep-float")
    grouped = with_orphans(((node.name, node.input, node.output) for node in model.graph.node), node_layers)
    return [node for node, layer in grouped.items() if layer in kept_layers]


def save_checked(model_proto: Any, spec: ArtifactSpec, inputs: ExportInputs, metadata: dict[str, str], details: dict[str, Any]) -> Converted:
    """Stamp metadata (with the goldens and bound of the file's precision) and producer, save into the staging folder, and refuse anything the ONNX checker refuses."""
    import onnx

    del model_proto.metadata_props[:]
    for key, value in (inputs.metadata_for(spec.precision) | metadata).items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    model_proto.producer_name = "edgecnn"
    model_proto.producer_version = __version__
    model_proto.doc_string = f"edgecnn {spec.name}"
    path = inputs.staging / spec.filename(inputs.model_entry.stem)
    onnx.save(model_proto, path)
    onnx.checker.check_model(str(path), full_check=True)
    return Converted(path, details | {"opset": inputs.options.opset})


class ImageCalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol over uint8 images: yields {'image': float batch} until exhausted."""

    def __init__(self, images: np.ndarray, description: ModelDescription, batch_size: int = 50) -> None:
        self.images = images
        self.description = description
        self.batch_size = batch_size
        self.rewind()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images), self.batch_size):
            yield {INPUT_NAME: self.description.model_input(self.images[start : start + self.batch_size])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = self._batches()


def raw_pixel_shape(description: ModelDescription) -> tuple[int, ...]:
    """What the uint8-input file takes per image: [H, W] for gray (like a gray PIL image), [H, W, 3] for RGB."""
    return description.image_shape[:2] if description.channels == 1 else description.image_shape


def raw_pixels(images: np.ndarray, description: ModelDescription) -> np.ndarray:
    return images.reshape(len(images), *raw_pixel_shape(description))


def serving_function(keras_model: Any, description: ModelDescription, uint8_input: bool) -> tuple[Any, list[Any]]:
    """A tf.function with named input/output (tf2onnx's from_keras breaks on Keras 3; from_function works). The
    uint8 variant applies the description's scaling inside the graph, as `ModelDescription.model_input` does."""
    from edgecnn.core.backend import import_tensorflow

    tf = import_tensorflow()
    if uint8_input:
        signature = [tf.TensorSpec([None, *raw_pixel_shape(description)], tf.uint8, name=INPUT_NAME)]
        offset, divisor = description.affine()
        uniform = len(set(divisor.tolist())) == 1

        @tf.function(input_signature=signature)
        def serve(image):
            pixels = tf.cast(image, tf.float32)
            if offset.any():
                pixels = pixels - tf.constant(offset)
            scaled = pixels / float(divisor[0]) if uniform else pixels / tf.constant(divisor)
            if description.channels == 1:
                scaled = tf.expand_dims(scaled, -1)
            return {OUTPUT_NAME: keras_model(scaled, training=False)}

    else:
        signature = [tf.TensorSpec([None, *description.image_shape], tf.float32, name=INPUT_NAME)]

        @tf.function(input_signature=signature)
        def serve(image):
            return {OUTPUT_NAME: keras_model(image, training=False)}

    return serve, signature
