"""TFLite converter: fp32, fp16 weights, dynamic-range and full-integer int8 (representative dataset)."""

from __future__ import annotations

from pathlib import Path

from edgecnn.core.manifest import Precision
from edgecnn.core.native_output import quiet_native_output
from edgecnn.core.tflite_metadata import embed, io_quantization
from edgecnn.stages.export.artifacts import ArtifactSpec, IoType
from edgecnn.stages.export.inputs import Converted, ExportInputs


def convert(spec: ArtifactSpec, inputs: ExportInputs, base: Path | None) -> Converted:
    from edgecnn.core.backend import import_tensorflow

    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(inputs.keras_model)
    details = {}
    if spec.precision is not Precision.FP32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.precision is Precision.FP16:
        converter.target_spec.supported_types = [tf.float16]
    if spec.precision is Precision.INT8:
        calibration = inputs.description.model_input(inputs.calibration)
        converter.representative_dataset = lambda: ([calibration[index : index + 1]] for index in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = tf.uint8 if spec.io_type is IoType.UINT8 else tf.int8
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
        details["calibration"] = inputs.calibration_details()
    with quiet_native_output((1, 2)):
        flatbuffer = converter.convert()
    path = inputs.staging / spec.filename(inputs.model_entry.stem)
    path.write_bytes(embed(flatbuffer, tflite_facts(inputs.metadata, io_quantization(flatbuffer)[0])))
    return Converted(path, details | {"metadata": "edgecnn entry in the model's metadata table"})


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
