"""Export stage: turn the trained Keras model into the files apps embed (ONNX and TFLite), and record them.

One table, `ARTIFACTS`, lists every variant; a request (`--format`, `--quantize`, …) selects rows from it and each
row's format picks its converter. All files of one run are converted into a staging folder first and moved into
place together only when every conversion succeeded, then merged into the manifest under a lock: a run that fails
midway leaves the previous artifacts and manifest untouched.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn.data import IMAGE_SHAPE, load_dataset, to_model_input
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, ensure_output_dir, read_json, sha256_file
from edgecnn.manifest import (
    ArtifactEntry,
    ArtifactFormat,
    ModelEntry,
    Precision,
    TensorSpec,
    update_manifest,
)
from edgecnn.provenance import library_versions, utc_now

CLASS_LABELS = [str(digit) for digit in range(10)]
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
FLOAT_INPUT_MEANING = "grayscale pixels scaled to [0, 1] (pixel / 255), white digit on black, NHWC"
RAW_INPUT_MEANING = "raw grayscale pixels 0-255 (uint8), white digit on black; the graph scales and reshapes"
OUTPUT_MEANING = "softmax probabilities for digits 0-9"


class FormatChoice(str, Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    ALL = "all"


class Quantize(str, Enum):
    NONE = "none"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"


class IoType(str, Enum):
    INT8 = "int8"
    UINT8 = "uint8"


QUANTIZE_PRECISION = {
    Quantize.NONE: Precision.FP32,
    Quantize.FP16: Precision.FP16,
    Quantize.DYNAMIC: Precision.DYNAMIC,
    Quantize.INT8: Precision.INT8,
}


@dataclass(frozen=True)
class ArtifactSpec:
    """One row of the format table: a file edgecnn can produce."""

    name: str
    format: ArtifactFormat
    precision: Precision
    filename: str
    uint8_input: bool = False
    io_type: IoType | None = None
    in_all: bool = True


ARTIFACTS: tuple[ArtifactSpec, ...] = (
    ArtifactSpec("onnx-fp32", ArtifactFormat.ONNX, Precision.FP32, "mnist_cnn.onnx"),
    ArtifactSpec("onnx-fp32-uint8-input", ArtifactFormat.ONNX, Precision.FP32, "mnist_cnn_uint8_input.onnx", uint8_input=True),
    ArtifactSpec("onnx-fp16", ArtifactFormat.ONNX, Precision.FP16, "mnist_cnn_fp16.onnx"),
    ArtifactSpec("onnx-int8", ArtifactFormat.ONNX, Precision.INT8, "mnist_cnn_int8.onnx"),
    ArtifactSpec("tflite-fp32", ArtifactFormat.TFLITE, Precision.FP32, "mnist_cnn_fp32.tflite"),
    ArtifactSpec("tflite-fp16", ArtifactFormat.TFLITE, Precision.FP16, "mnist_cnn_fp16.tflite"),
    ArtifactSpec("tflite-dynamic", ArtifactFormat.TFLITE, Precision.DYNAMIC, "mnist_cnn_dynamic.tflite"),
    ArtifactSpec("tflite-int8", ArtifactFormat.TFLITE, Precision.INT8, "mnist_cnn_int8.tflite", io_type=IoType.INT8),
    ArtifactSpec(
        "tflite-int8-uint8-io", ArtifactFormat.TFLITE, Precision.INT8, "mnist_cnn_int8_uint8io.tflite", io_type=IoType.UINT8, in_all=False
    ),
)

FP32_ONNX = next(spec for spec in ARTIFACTS if spec.name == "onnx-fp32")  # what int8 ONNX is quantized from

@dataclass(frozen=True)
class ExportOptions:
    model: Path = Path("exports/mnist_cnn.keras")
    format: FormatChoice | None = None  # None: all formats, narrowed to those that have the requested variant
    quantize: Quantize = Quantize.NONE
    uint8_input: bool = False
    io_type: IoType | None = None
    opset: int = 17
    out: Path = Path("exports")
    data: str | None = None
    calibration_images: int = 500
    seed: int = 0


@dataclass(frozen=True)
class ExportResult:
    manifest_path: Path
    model: ModelEntry
    artifacts: tuple[ArtifactEntry, ...]
    seconds: float


@dataclass
class ExportContext:
    """What every converter needs, loaded once per run."""

    keras_model: Any
    model_entry: ModelEntry
    options: ExportOptions
    staging: Path
    calibration: np.ndarray
    metadata: dict[str, str]
    produced: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)


def select_artifacts(options: ExportOptions) -> list[ArtifactSpec]:
    """The table rows a request names. Without --format every format that has the requested variant is exported
    (`--quantize int8` alone gives int8 ONNX and int8 TFLite); a combination no row has is a user error naming
    the option and what exists."""
    if options.opset < 13 or options.opset > 21:
        raise EdgecnnError(f"opset {options.opset} is outside the supported range 13-21", "--opset")
    formats = tuple(ArtifactFormat) if options.format in (None, FormatChoice.ALL) else (ArtifactFormat(options.format.value),)
    variant_requested = options.quantize is not Quantize.NONE or options.uint8_input or options.io_type is not None
    if not variant_requested:
        if len(formats) > 1:
            return [spec for spec in ARTIFACTS if spec.in_all]
        return [spec for spec in ARTIFACTS if spec.format is formats[0] and spec.precision is Precision.FP32 and not spec.uint8_input]
    implied_int8 = options.io_type is not None and options.quantize is Quantize.NONE  # --io-type exists for int8 only
    precision = Precision.INT8 if implied_int8 else QUANTIZE_PRECISION[options.quantize]
    same_precision = [spec for spec in ARTIFACTS if spec.format in formats and spec.precision is precision]
    if not same_precision:
        raise EdgecnnError(f"--quantize {options.quantize.value} is not available for {formats[0].value} (use: {available_quantizations(formats[0])})", "--quantize")
    if options.uint8_input:
        matches = [spec for spec in same_precision if spec.uint8_input]
        if not matches or options.io_type is not None:
            raise EdgecnnError("--uint8-input applies to fp32 ONNX only (int8 TFLite has --io-type uint8)", "--uint8-input")
        return matches
    if options.io_type is not None:
        matches = [spec for spec in same_precision if spec.io_type is options.io_type]
        if not matches:
            raise EdgecnnError("--io-type applies to --format tflite --quantize int8 only", "--io-type")
        return matches
    return [spec for spec in same_precision if not spec.uint8_input and spec.io_type in (None, IoType.INT8)]


def available_quantizations(artifact_format: ArtifactFormat) -> str:
    """The --quantize values a format has, read off the one artifact table."""
    precisions = dict.fromkeys(spec.precision for spec in ARTIFACTS if spec.format is artifact_format)
    names = {value: key.value for key, value in QUANTIZE_PRECISION.items()}
    return ", ".join(names[precision] for precision in precisions)


def export(options: ExportOptions, progress: Callable[[str], None] | None = None) -> ExportResult:
    started = time.perf_counter()
    specs = select_artifacts(options)
    out = ensure_output_dir(options.out)
    from edgecnn.model import load_model

    keras_model = load_model(options.model)
    model_entry = describe_source_model(options.model, out)
    calibration = calibration_images(options, model_entry)
    staging = Path(tempfile.mkdtemp(prefix=".export-staging-", dir=out))
    try:
        context = ExportContext(
            keras_model=keras_model,
            model_entry=model_entry,
            options=options,
            staging=staging,
            calibration=calibration,
            metadata=onnx_metadata(model_entry),
        )
        staged = []
        for spec in specs:
            if progress:
                progress(spec.name)
            staged.append(convert(spec, context))
        bundle_model(options.model, out)
        entries = [publish(spec, staged_path, out, context, seconds) for spec, staged_path, seconds in staged]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = update_manifest(out, model_entry, entries)
    return ExportResult(manifest.path, model_entry, tuple(entries), time.perf_counter() - started)


def convert(spec: ArtifactSpec, context: ExportContext) -> tuple[ArtifactSpec, Path, float]:
    started = time.perf_counter()
    converter = CONVERTERS[spec.format]
    path = converter(spec, context)
    context.produced[spec.name] = path
    return spec, path, time.perf_counter() - started


def publish(spec: ArtifactSpec, staged: Path, out: Path, context: ExportContext, seconds: float) -> ArtifactEntry:
    """Move a staged file into place (atomic rename within the folder) and describe it for the manifest."""
    destination = out / spec.filename
    staged.replace(destination)
    inputs, outputs, details = describe_artifact(spec, destination)
    return ArtifactEntry(
        name=spec.name,
        path=spec.filename,
        format=spec.format,
        precision=spec.precision,
        input=inputs,
        output=outputs,
        bytes=destination.stat().st_size,
        sha256=sha256_file(destination),
        source_model_sha256=context.model_entry.sha256,
        converter=converter_versions(spec.format),
        export_seconds=round(seconds, 3),
        created=utc_now(),
        details=details | export_details(spec, context),
    )


def describe_source_model(model_path: Path, out: Path) -> ModelEntry:
    """The manifest's `model` entry; accuracy and data come from the train.json beside the model when it exists."""
    model_path = Path(model_path)
    report_path = model_path.parent / "train.json"
    report = read_json(report_path, "training report") if report_path.is_file() else {}
    sha = sha256_file(model_path)
    if report.get("model", {}).get("sha256") != sha:
        report = {}  # the report describes another model; do not borrow its accuracy
    return ModelEntry(path=model_path.name, sha256=sha, test_accuracy=report.get("test_accuracy"), data=report.get("data", {}))


def bundle_model(model_path: Path, out: Path) -> None:
    """Copy a model from outside the output folder in, so the folder is self-contained and manifest paths stay inside."""
    bundled = Path(out) / Path(model_path).name
    if not bundled.exists() or not bundled.samefile(model_path):
        with atomic_path(bundled) as temp:
            shutil.copyfile(model_path, temp)


def calibration_images(options: ExportOptions, model_entry: ModelEntry) -> np.ndarray:
    """A seeded random subset of training images (uint8), from --data or the source recorded at training."""
    spec = options.data or model_entry.data.get("spec")
    dataset = load_dataset(spec)
    rng = np.random.default_rng(options.seed)
    count = min(options.calibration_images, len(dataset.x_train))
    return dataset.x_train[np.sort(rng.choice(len(dataset.x_train), size=count, replace=False))]


def onnx_metadata(model_entry: ModelEntry) -> dict[str, str]:
    return {
        "class_labels": json.dumps(CLASS_LABELS),
        "input_layout": "NHWC [batch, 28, 28, 1]",
        "input_scaling": "float32 pixel / 255 in [0, 1], white digit on black background (MNIST)",
        "source_model_sha256": model_entry.sha256,
        "edgecnn_version": __version__,
        "keras_test_accuracy": "" if model_entry.test_accuracy is None else f"{model_entry.test_accuracy:.4f}",
        "data_source": model_entry.data.get("spec", ""),
    }


def converter_versions(artifact_format: ArtifactFormat) -> dict[str, str]:
    names = ("tensorflow", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu") if artifact_format is ArtifactFormat.ONNX else ("tensorflow",)
    return library_versions(names)


def export_details(spec: ArtifactSpec, context: ExportContext) -> dict[str, Any]:
    details: dict[str, Any] = dict(context.notes.get(spec.name, {}))
    if spec.format is ArtifactFormat.ONNX:
        details["opset"] = context.options.opset
    if spec.precision is Precision.INT8:
        details["calibration"] = {
            "images": int(len(context.calibration)),
            "data_source": context.options.data or context.model_entry.data.get("spec"),
            "seed": context.options.seed,
        }
    return details


# --- ONNX -------------------------------------------------------------------------------------------------------


def export_onnx(spec: ArtifactSpec, context: ExportContext) -> Path:
    if spec.precision is Precision.INT8:
        return quantize_onnx_int8(spec, context)
    if spec.precision is Precision.FP16:
        return convert_onnx_fp16(spec, context)
    import onnx
    import tf2onnx

    from edgecnn.onnx_graph import slim_if_identical

    tf_function, signature = serving_function(context.keras_model, uint8_input=spec.uint8_input)
    model_proto, _ = tf2onnx.convert.from_function(tf_function, input_signature=signature, opset=context.options.opset)
    probe = context.calibration[:64] if spec.uint8_input else to_model_input(context.calibration[:64])
    model_proto, cleanup = slim_if_identical(model_proto, probe)
    context.notes[spec.name] = {"graph_cleanup": cleanup.to_dict()}
    metadata = context.metadata | (
        {"input_layout": "[batch, 28, 28]", "input_scaling": "uint8 raw pixels 0-255; the graph divides by 255"} if spec.uint8_input else {}
    )
    finish_onnx(model_proto, metadata, doc=f"edgecnn {spec.name}")
    path = context.staging / spec.filename
    onnx.save(model_proto, path)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def convert_onnx_fp16(spec: ArtifactSpec, context: ExportContext) -> Path:
    """fp16 weights and compute for GPUs (ONNX Runtime's float16 converter); input and output stay fp32, so an app
    feeds it exactly like the fp32 file. On an H200 it ran 1.7x the fp32 throughput at -0.01 points (see RESULTS)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgecnn.onnx_graph import topologically_sorted

    fp32 = context.produced.get(FP32_ONNX.name) or export_onnx(FP32_ONNX, context)
    model_proto = topologically_sorted(convert_float_to_float16(onnx.load(fp32), keep_io_types=True))
    context.notes[spec.name] = {"float16": {"converter": "onnxruntime.transformers.float16", "keep_io_types": True}}
    finish_onnx(model_proto, context.metadata, doc=f"edgecnn {spec.name}")
    path = context.staging / spec.filename
    onnx.save(model_proto, path)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def quantize_onnx_int8(spec: ArtifactSpec, context: ExportContext) -> Path:
    """Static int8 (QDQ, per-channel weights) with onnxruntime.quantization, calibrated on training images.

    The first convolution stays fp32: it has one input channel (a 9-tap dot product), holds 320 of the 600k
    weights, and ONNX Runtime's int8 kernel for it measured slower than fp32 (25 vs 29 µs per image at batch 1).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgecnn.onnx_graph import first_node_of_type, fuse_matmul_add_into_gemm

    fp32 = context.produced.get(FP32_ONNX.name) or export_onnx(FP32_ONNX, context)
    fused = context.staging / "int8-fused.onnx"
    onnx.save(fuse_matmul_add_into_gemm(onnx.load(fp32)), fused)
    prepared = context.staging / "int8-prepared.onnx"
    quant_pre_process(str(fused), str(prepared), skip_symbolic_shape=True)
    kept_fp32 = [name for name in [first_node_of_type(onnx.load(prepared), "Conv")] if name]
    path = context.staging / spec.filename
    quantize_static(
        str(prepared),
        str(path),
        ImageCalibrationReader(context.calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept_fp32,
    )
    context.notes[spec.name] = {
        "quantization": {"format": "QDQ", "activations": "uint8", "weights": "int8 per-channel", "kept_fp32_nodes": kept_fp32}
    }
    model_proto = onnx.load(path)
    finish_onnx(model_proto, context.metadata, doc=f"edgecnn {spec.name}")
    onnx.save(model_proto, path)
    onnx.checker.check_model(str(path), full_check=True)
    return path


class ImageCalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol over uint8 images: yields {'image': float batch} until exhausted."""

    def __init__(self, images: np.ndarray, batch_size: int = 50) -> None:
        self.images = images
        self.batch_size = batch_size
        self.rewind()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images), self.batch_size):
            yield {INPUT_NAME: to_model_input(self.images[start : start + self.batch_size])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = self._batches()


def finish_onnx(model_proto: Any, metadata: dict[str, str], doc: str) -> None:
    del model_proto.metadata_props[:]
    for key, value in metadata.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    model_proto.producer_name = "edgecnn"
    model_proto.producer_version = __version__
    model_proto.doc_string = doc


def serving_function(keras_model: Any, uint8_input: bool) -> tuple[Any, list[Any]]:
    """A tf.function with named input/output (tf2onnx's from_keras breaks on Keras 3; from_function works)."""
    from edgecnn.backend import import_tensorflow

    tf = import_tensorflow()
    if uint8_input:
        signature = [tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8, name=INPUT_NAME)]

        @tf.function(input_signature=signature)
        def serve(image):
            scaled = tf.cast(image, tf.float32) / 255.0
            return {OUTPUT_NAME: keras_model(tf.expand_dims(scaled, -1), training=False)}

    else:
        signature = [tf.TensorSpec([None, *IMAGE_SHAPE, 1], tf.float32, name=INPUT_NAME)]

        @tf.function(input_signature=signature)
        def serve(image):
            return {OUTPUT_NAME: keras_model(image, training=False)}

    return serve, signature


# --- TFLite -----------------------------------------------------------------------------------------------------


def export_tflite(spec: ArtifactSpec, context: ExportContext) -> Path:
    from edgecnn.backend import import_tensorflow

    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(context.keras_model)
    if spec.precision is not Precision.FP32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.precision is Precision.FP16:
        converter.target_spec.supported_types = [tf.float16]
    if spec.precision is Precision.INT8:
        calibration = to_model_input(context.calibration)
        converter.representative_dataset = lambda: ([calibration[index : index + 1]] for index in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = tf.uint8 if spec.io_type is IoType.UINT8 else tf.int8
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
    from edgecnn.native_output import quiet_native_output

    with quiet_native_output((1, 2)):
        flatbuffer = converter.convert()
    path = context.staging / spec.filename
    path.write_bytes(flatbuffer)
    return path


CONVERTERS: dict[ArtifactFormat, Callable[[ArtifactSpec, ExportContext], Path]] = {
    ArtifactFormat.ONNX: export_onnx,
    ArtifactFormat.TFLITE: export_tflite,
}


# --- describing a written artifact --------------------------------------------------------------------------------


def describe_artifact(spec: ArtifactSpec, path: Path) -> tuple[TensorSpec, TensorSpec, dict[str, Any]]:
    """Read the input/output contract back from the file itself, as a runtime will see it."""
    from edgecnn.runners import open_runner

    runner = open_runner(spec.format, path)
    inputs, outputs = runner.input_spec(), runner.output_spec()
    meaning = RAW_INPUT_MEANING if spec.uint8_input else FLOAT_INPUT_MEANING
    if inputs.scale is not None:
        meaning = f"quantized: q = round(pixel / 255 / scale) + zero_point; {FLOAT_INPUT_MEANING}"
    inputs = replace(inputs, meaning=meaning, layout="NHW" if spec.uint8_input else "NHWC")
    return inputs, replace(outputs, meaning=OUTPUT_MEANING), runner.details()
