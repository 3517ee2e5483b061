"""TFLite converter: fp32, fp16 weights, dynamic-range and full-integer int8 (representative dataset), with chosen layers
kept float or given per-call ranges (LiteRT's hybrid kernels), and int8 operators XNNPACK does not take written as ones it does."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgecnn.core.artifact_details import ArtifactDetails, QuantizationRecord
from edgecnn.core.errors import EdgecnnError, converter_refusal
from edgecnn.core.layers import LayerMap, keras_layer_names, with_orphans
from edgecnn.core.manifest import Precision
from edgecnn.core.native_output import quiet_native_output
from edgecnn.core.records import encode
from edgecnn.core.tflite_graph import delegable_int8
from edgecnn.core.tflite_metadata import embed, io_quantization, operator_tensors
from edgecnn.stages.export.artifacts import ArtifactSpec, ExportOptions, IoType
from edgecnn.stages.export.inputs import Converted, ExportInputs

INT16_PER_LAYER = False  # LiteRT's 16x8 mode is the whole file: a layer cannot leave 8-bit alone
CONVERTER_CALIBRATION = "minmax (the converter's own; no choice)"


def convert(spec: ArtifactSpec, inputs: ExportInputs, base: Path | None) -> Converted:
    from edgecnn.core.backend import import_tensorflow

    tf = import_tensorflow()
    converter = keras_converter(tf, inputs)
    calibration_record = None
    if spec.precision is not Precision.FP32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.precision is Precision.FP16:
        converter.target_spec.supported_types = [tf.float16]
    quantization: QuantizationRecord | None = None
    if spec.precision is Precision.INT8:
        calibration = inputs.description.model_input(inputs.calibration)
        converter.representative_dataset = lambda: ([calibration[index : index + 1]] for index in range(len(calibration)))
        quantization = int8_mode(tf, converter, spec, inputs.options)
        calibration_record = inputs.calibration_record()
        if (quantization.kept_float_layers or quantization.dynamic_layers) and spec.io_type is IoType.UINT8:
            raise EdgecnnError("int8 files with layers kept out of int8 take and give int8 (the converter's debugger has no uint8 I/O)",
                               "--keep-dynamic" if quantization.dynamic_layers else "--keep-float")
    with quiet_native_output((1, 2)), converter_refusal("the TFLite converter"):
        if quantization and (quantization.kept_float_layers or quantization.dynamic_layers):
            flatbuffer, kept_nodes = convert_keeping_float(tf, converter, inputs, quantization)
            quantization = replace(quantization, kept_float_nodes=kept_nodes)
        else:
            flatbuffer = converter.convert()
    rewritten: list[str] = []
    metadata = inputs.metadata_for(spec.precision)
    if quantization is not None:
        flatbuffer, rewritten = delegable_int8(flatbuffer)  # int8 only: 16x8 activations are int16, left as they are
        metadata = metadata | {"quantization": json.dumps(encode(quantization), sort_keys=True)}
    path = inputs.staging / spec.filename(inputs.model_entry.stem)
    path.write_bytes(embed(flatbuffer, tflite_facts(metadata, io_quantization(flatbuffer)[0])))
    return Converted(path, ArtifactDetails(quantization=quantization, calibration=calibration_record, metadata="edgecnn entry in the model's metadata table",
                                           rewritten_for_xnnpack=tuple(rewritten)))


def int8_mode(tf: Any, converter: Any, spec: ArtifactSpec, options: ExportOptions) -> QuantizationRecord:
    """Full-integer int8 (8-bit activations, the I/O type the row names), or, when layers are to keep 16-bit
    activations, the converter's 16x8 mode for the whole file: LiteRT has no per-operator mix of 16x8 and 8x8 kernels,
    and its 16x8 files take and give int16."""
    if options.keep_int16:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int16
        return QuantizationRecord(weights="int8 per-channel", calibration_method=CONVERTER_CALIBRATION, activations="int16 (the whole file: 16x8)",
                                  int16_layers=options.keep_int16)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8 if spec.io_type is IoType.UINT8 else tf.int8
    kept_layers = tuple(options.keep_float or ())  # nothing by default: the seed model's file as it always was
    per_call = "int8 (ranges per call in the dynamic layers: LiteRT's hybrid kernels)" if options.keep_dynamic else None
    return QuantizationRecord(weights="int8 per-channel", calibration_method=CONVERTER_CALIBRATION, activations=per_call,
                              kept_float_layers=kept_layers, dynamic_layers=options.keep_dynamic)


def matrix_product_layers(path: Path, layers: list[str], options: ExportOptions) -> set[str | None]:
    """The layers that own a matrix product (`core.tflite_graph.matrix_products`) in the file at `path`: those the search
    gives per-call ranges (LiteRT's hybrid kernels) when they leave int8."""
    from edgecnn.core.tflite_graph import matrix_products

    flatbuffer = path.read_bytes()
    return owning_layers(flatbuffer, layers, matrix_products(flatbuffer))


def layers_with_nodes(path: Path, layers: list[str]) -> set[str | None]:
    """The layers that own an operator's output in the file (the converter's debugger can keep those in float)."""
    from edgecnn.core.tflite_metadata import op_output_names

    flatbuffer = path.read_bytes()
    return owning_layers(flatbuffer, layers, op_output_names(flatbuffer))


def owning_layers(flatbuffer: bytes, layers: list[str], operators: list[str]) -> set[str | None]:
    """The Keras layers that own the named operators (by output tensor), mapped over every operator of the file."""
    from edgecnn.core.tflite_metadata import op_output_names

    layer_map = LayerMap.build(op_output_names(flatbuffer), layers)
    return {layer_map.layer_of(name) for name in operators}


def keras_converter(tf: Any, inputs: ExportInputs) -> Any:
    """The TFLite converter for the model; a model built for any image size is converted at the size its description
    records (from a concrete function), as the ONNX files are, so every file takes the same fixed-size images."""
    model = inputs.keras_model
    if all(dim is not None for dim in tuple(model.inputs[0].shape)[1:]):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    serve = tf.function(lambda image: model(image, training=False))
    concrete = serve.get_concrete_function(tf.TensorSpec([None, *inputs.description.image_shape], tf.float32))
    return tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(concrete)])


def convert_keeping_float(tf: Any, converter: Any, inputs: ExportInputs, record: QuantizationRecord) -> tuple[bytes, tuple[str, ...]]:
    """Selective int8 through the converter's quantization debugger (`denylisted_nodes`): the kept layers' operators
    stay float builtins, everything else int8, and the file's input and output stay integer. The dynamic layers' matrix
    products are kept float too, then given int8 weights (`core.tflite_graph.with_per_call_ranges`): LiteRT runs them as
    hybrid kernels, quantizing their input on each call. Returns the file and the nodes kept in float.

    The debugger names nodes by their output tensors, which are read from a float conversion of the same model."""
    from edgecnn.core.tflite_graph import matrix_products, with_per_call_ranges

    float_file = keras_converter(tf, inputs).convert()
    operators = operator_tensors(float_file)
    names = [name for _, _, outputs in operators for name in outputs]
    layer_map = LayerMap.build(names, keras_layer_names(inputs.keras_model))
    owners = {name: layer_map.layer_of(name) for name, _, _ in operators}
    for option, layers in (("--keep-float", record.kept_float_layers), ("--keep-dynamic", record.dynamic_layers)):
        empty = [layer for layer in layers if layer not in owners.values()]
        if empty:
            raise EdgecnnError(f"layer {empty[0]!r} has no node of its own in the TFLite graph (the converter folded it into a neighbour)", option)
    grouped = with_orphans(operators, owners)
    per_call = [name for name in matrix_products(float_file) if grouped[name] in record.dynamic_layers]
    lacking = [layer for layer in record.dynamic_layers if not any(grouped[name] == layer for name in per_call)]
    if lacking:
        raise EdgecnnError(f"layer {lacking[0]!r} has no matrix product (a Dense layer or a 1x1 convolution): LiteRT's hybrid kernels take "
                           "per-call ranges only there", "--keep-dynamic")
    denylisted = [name for name, layer in grouped.items() if layer in record.kept_float_layers or layer in record.dynamic_layers]
    if len(denylisted) == len(grouped):
        raise EdgecnnError("every operator would stay float: an int8 file needs at least one layer quantized", "--keep-float")
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted, fully_quantize=True),  # int8 I/O too
    )
    flatbuffer = with_per_call_ranges(bytes(debugger.get_nondebug_quantized_model()), per_call)
    return flatbuffer, tuple(name for name in denylisted if name not in per_call)


def tflite_facts(metadata: dict[str, str], quantization: tuple[float, int] | None) -> dict[str, str]:
    """The facts the ONNX files carry, with the input's quantization when the model takes integers."""
    if quantization is None:
        return metadata
    scale, zero_point = quantization
    return metadata | {
        "input_scaling": f"quantized: q = round(x / {scale:.9g}) + {zero_point} where x = {metadata['input_scaling'].removeprefix('float32 ')}",
        "input_scale": f"{scale:.9g}",
        "input_zero_point": str(zero_point),
    }
