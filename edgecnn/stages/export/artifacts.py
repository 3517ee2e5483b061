"""The one format table: every file edgecnn can produce, and how a request (--format, --quantize, …) selects rows.

What each format supports is read off `ARTIFACTS`, never restated elsewhere (Ultralytics' export table is the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from edgecnn.core.description import Color, DescriptionOverrides
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.manifest import ArtifactFormat, Precision


class FormatChoice(str, Enum):
    """--format: one exported file format, or all of them (a test keeps it equal to ArtifactFormat's files)."""

    ONNX = ArtifactFormat.ONNX.value
    TFLITE = ArtifactFormat.TFLITE.value
    ALL = "all"


class CalibrationMethod(str, Enum):
    """How ONNX Runtime turns calibration activations into int8 ranges (its `CalibrationMethod`). The TFLite converter
    has no choice: it always uses the min/max it observes."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Quantizer(str, Enum):
    """Who quantizes an int8 ONNX file (bench/quantizers.py compares them on the same fp32 files and calibration
    images). ONNX Runtime's `quantize_static` is the default: its QDQ placement fuses into ONNX Runtime's integer CPU
    kernels. NNCF (OpenVINO's) adds bias correction and places QDQ as OpenVINO runs it fastest; under ONNX Runtime its
    files ran 3-6x slower than fp32, under OpenVINO as fast as fp32 and faster than ONNX Runtime's int8 files."""

    ONNXRUNTIME = "onnxruntime"
    NNCF = "nncf"


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
    """One row of the format table: a file edgecnn can produce, named `<model stem><suffix>`. `base` names the row it
    is converted from."""

    name: str
    format: ArtifactFormat
    precision: Precision
    suffix: str
    uint8_input: bool = False
    io_type: IoType | None = None
    in_all: bool = True
    base: str | None = None

    def filename(self, stem: str) -> str:
        return f"{stem}{self.suffix}"


ARTIFACTS: tuple[ArtifactSpec, ...] = (
    ArtifactSpec("onnx-fp32", ArtifactFormat.ONNX, Precision.FP32, ".onnx"),
    ArtifactSpec("onnx-fp32-uint8-input", ArtifactFormat.ONNX, Precision.FP32, "_uint8_input.onnx", uint8_input=True),
    ArtifactSpec("onnx-fp16", ArtifactFormat.ONNX, Precision.FP16, "_fp16.onnx", base="onnx-fp32"),
    ArtifactSpec("onnx-int8", ArtifactFormat.ONNX, Precision.INT8, "_int8.onnx", base="onnx-fp32"),
    ArtifactSpec("tflite-fp32", ArtifactFormat.TFLITE, Precision.FP32, "_fp32.tflite"),
    ArtifactSpec("tflite-fp16", ArtifactFormat.TFLITE, Precision.FP16, "_fp16.tflite"),
    ArtifactSpec("tflite-dynamic", ArtifactFormat.TFLITE, Precision.DYNAMIC, "_dynamic.tflite"),
    ArtifactSpec("tflite-int8", ArtifactFormat.TFLITE, Precision.INT8, "_int8.tflite", io_type=IoType.INT8),
    ArtifactSpec("tflite-int8-uint8-io", ArtifactFormat.TFLITE, Precision.INT8, "_int8_uint8io.tflite", io_type=IoType.UINT8, in_all=False),
)


@dataclass(frozen=True)
class ExportFormat:
    """A format's converter: the module that makes its files (its `convert` and `layers_with_nodes`, the protocol in
    `inputs.FormatConverter`) and the packages whose versions each of its files records. A new format is a row here
    and one module."""

    converter: str
    packages: tuple[str, ...]


FORMATS: dict[ArtifactFormat, ExportFormat] = {
    ArtifactFormat.ONNX: ExportFormat("edgecnn.stages.export.onnx", ("tensorflow", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu")),
    ArtifactFormat.TFLITE: ExportFormat("edgecnn.stages.export.tflite", ("tensorflow",)),
}


def spec_named(name: str) -> ArtifactSpec:
    return next(spec for spec in ARTIFACTS if spec.name == name)


@dataclass(frozen=True)
class ExportOptions:
    model: Path | None = None  # None: the model `train` wrote into --out (its train.json names it)
    format: FormatChoice | None = None  # None: all formats, narrowed to those that have the requested variant
    quantize: Quantize = Quantize.NONE
    uint8_input: bool = False
    io_type: IoType | None = None
    opset: int = 17
    out: Path = Path("exports")
    data: str | None = None
    image_size: tuple[int, int] | None = None  # bring the data to the model's size (--image-size)
    color: Color | None = None  # and channels (--color)
    describe: DescriptionOverrides = DescriptionOverrides()  # what detection cannot know about a user's model
    calibration_images: int = 500
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX  # ONNX int8 only
    per_channel: bool = True  # ONNX int8 weights: one scale per output channel (else one per tensor)
    reduce_range: bool | None = None  # ONNX int8 weights in 7 bits (ONNX Runtime's reduce_range); None: where this CPU lacks VNNI
    quantizer: Quantizer = Quantizer.ONNXRUNTIME  # ONNX int8 only
    keep_float: tuple[str, ...] | None = None  # Keras layers kept in float in int8 files; None: each format's first candidate
    keep_int16: tuple[str, ...] = ()  # Keras layers with 16-bit activations (int8 weights) in int8 files
    keep_dynamic: tuple[str, ...] = ()  # Keras layers whose matrix products take per-call activation ranges (int8 weights)
    max_drop: float | None = None  # points: search for int8 files within verify's int8 criteria on a validation split
    validation_data: str | None = None  # the images --max-drop's search judges on (default: train's hold-out, else training images)
    seed: int = 0
    replace: bool = False  # replace another model's artifacts in --out instead of refusing

    def check_quantization(self, specs: list[ArtifactSpec]) -> None:
        """Options that only some formats have, refused where no requested file uses them (one line naming the option)."""
        onnx_int8 = any(spec.format is ArtifactFormat.ONNX and spec.precision is Precision.INT8 for spec in specs)
        any_int8 = any(spec.precision is Precision.INT8 for spec in specs)
        if self.calibration_method is not CalibrationMethod.MINMAX and not onnx_int8:
            raise EdgecnnError("the TFLite converter has no calibration method choice: this option applies to ONNX int8 files only",
                               "--calibration-method")
        if not self.per_channel and not onnx_int8:
            raise EdgecnnError("applies to ONNX int8 files only (the TFLite converter quantizes weights per channel)", "--per-tensor")
        if self.quantizer is not Quantizer.ONNXRUNTIME and not onnx_int8:
            raise EdgecnnError("the TFLite converter quantizes its own files: this option applies to ONNX int8 files only", "--quantizer")
        if self.reduce_range is not None and not (onnx_int8 and self.quantizer is Quantizer.ONNXRUNTIME):
            raise EdgecnnError("7-bit weights are ONNX Runtime's quantizer's option: it applies to ONNX int8 files with --quantizer onnxruntime only",
                               "--reduce-range" if self.reduce_range else "--no-reduce-range")
        if self.quantizer is Quantizer.NNCF and (self.calibration_method is not CalibrationMethod.MINMAX or not self.per_channel):
            raise EdgecnnError("NNCF sets its own ranges and quantizes weights per channel: drop --calibration-method and --per-tensor",
                               "--quantizer")
        if self.max_drop is not None and not (self.max_drop >= 0 and any_int8):
            raise EdgecnnError(f"needs int8 files and a budget of 0 points or more, got {self.max_drop}", "--max-drop")
        if self.validation_data is not None and self.max_drop is None:
            raise EdgecnnError("the search judges on these images: add --max-drop POINTS", "--validation-data")
        if self.keep_float is not None and not any_int8:
            raise EdgecnnError("layers are kept in float in int8 files, and none is being exported (add --quantize int8)", "--keep-float")
        if self.keep_int16:
            self.check_int16(specs, any_int8)
        if self.keep_dynamic:
            self.check_dynamic(specs, any_int8)

    def check_int16(self, specs: list[ArtifactSpec], any_int8: bool) -> None:
        """--keep-int16 needs an int8 file that can hold 16-bit activations: ONNX Runtime's quantizer (NNCF places 8-bit
        only), and for TFLite int8 I/O without float layers (the converter's 16x8 mode is the whole file, int16 in and
        out, and its debugger cannot keep layers in float in it)."""
        tflite_int8 = any(spec.format is ArtifactFormat.TFLITE and spec.precision is Precision.INT8 for spec in specs)
        both = sorted(set(self.keep_int16) & set(self.keep_float or ()))
        if not any_int8:
            raise EdgecnnError("16-bit activations are a tier of int8 files, and none is being exported (add --quantize int8)", "--keep-int16")
        if both:
            raise EdgecnnError(f"layer {both[0]!r} is also given to --keep-float: a layer has one tier", "--keep-int16")
        if self.quantizer is Quantizer.NNCF:
            raise EdgecnnError("NNCF places 8-bit quantization only: 16-bit activations need --quantizer onnxruntime", "--keep-int16")
        if tflite_int8 and (self.keep_float or self.io_type is IoType.UINT8):
            raise EdgecnnError("TFLite's 16x8 mode makes the whole file 16-bit with int16 I/O: it takes neither --keep-float nor --io-type uint8 "
                               "(use --format onnx for per-layer tiers)", "--keep-int16")

    def check_dynamic(self, specs: list[ArtifactSpec], any_int8: bool) -> None:
        """--keep-dynamic gives chosen layers of a static int8 file per-call ranges: ONNX Runtime's dynamic quantization
        (its quantizer only: NNCF places static ranges) and LiteRT's hybrid kernels (8-bit files only: its 16x8 mode
        is the whole file)."""
        tflite_int8 = any(spec.format is ArtifactFormat.TFLITE and spec.precision is Precision.INT8 for spec in specs)
        onnx_int8 = any(spec.format is ArtifactFormat.ONNX and spec.precision is Precision.INT8 for spec in specs)
        both = sorted(set(self.keep_dynamic) & (set(self.keep_float or ()) | set(self.keep_int16)))
        if not any_int8:
            raise EdgecnnError("per-call activation ranges are a tier of int8 files, and none is being exported (add --quantize int8)",
                               "--keep-dynamic")
        if both:
            raise EdgecnnError(f"layer {both[0]!r} is also given to --keep-float or --keep-int16: a layer has one tier", "--keep-dynamic")
        if onnx_int8 and self.quantizer is Quantizer.NNCF:
            raise EdgecnnError("NNCF places static 8-bit quantization only: per-call ranges need --quantizer onnxruntime", "--keep-dynamic")
        if tflite_int8 and self.keep_int16:
            raise EdgecnnError("TFLite's 16x8 mode makes the whole file 16-bit: it has no per-call ranges (use --format onnx to mix them)",
                               "--keep-dynamic")


def select_artifacts(options: ExportOptions) -> list[ArtifactSpec]:
    """The table rows a request names. Without --format every format that has the requested variant is exported
    (`--quantize int8` alone gives int8 ONNX and int8 TFLite); a combination no row has is a user error naming
    the option and what exists."""
    if options.opset < 13 or options.opset > 21:
        raise EdgecnnError(f"opset {options.opset} is outside the supported range 13-21", "--opset")
    formats = tuple(f for f in ArtifactFormat if f.is_artifact) if options.format in (None, FormatChoice.ALL) else (
        ArtifactFormat(options.format.value),
    )
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
