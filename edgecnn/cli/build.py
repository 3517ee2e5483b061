"""The training side's commands: train, export, pipeline (they need the `train` extra: TensorFlow, tf2onnx, …)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import typer

from edgecnn.cli.app import Values, command
from edgecnn.cli.options import (
    COLOR_OPTION,
    DATA_OPTION,
    DESCRIPTION_OPTIONS,
    IMAGE_SIZE_OPTION,
    OUT_OPTION,
    PREPROCESS_OPTION,
    REPLACE_OPTION,
    RUNTIME_OPTIONS,
    Declared,
    description_overrides,
    run_options,
)
from edgecnn.core.description import parse_image_size
from edgecnn.core.manifest import FailedArtifact
from edgecnn.core.train_report import Distribution, LearningRateSchedule
from edgecnn.stages.export import CalibrationMethod, ExportOptions, FormatChoice, IoType, Quantize, Quantizer
from edgecnn.stages.train import TrainOptions

FORMAT_OPTION = Declared(
    "format", "--format", FormatChoice, None,
    help="onnx | tflite | all. Default: all, or, with --quantize/--uint8-input/--io-type, every format that has that variant.")
TRAIN_OPTIONS = (
    DATA_OPTION,
    IMAGE_SIZE_OPTION,
    COLOR_OPTION,
    PREPROCESS_OPTION,
    Declared("epochs", "--epochs", int, 10, help="Training epochs."),
    Declared("batch_size", "--batch-size", int, 128, help="Images per training step."),
    Declared("learning_rate", "--learning-rate", float, None,
             help="Adam learning rate (peak, with a schedule). Default: 0.001 constant, 0.002 with cosine."),
    Declared("seed", "--seed", int, 0, help="Seed for weights, shuffling and augmentation."),
    Declared("validation_split", "--validation-split", float, 0.1, help="Fraction of training images held out for validation curves."),
    Declared("augment", "--augment", bool, False, help="Random shifts, rotations and zoom during training only."),
    Declared("lr_schedule", "--lr-schedule", LearningRateSchedule, None,
             help="Learning-rate schedule (default: cosine with --augment, else constant)."),
    Declared("distribute", "--distribute", Distribution, Distribution.NONE,
             help="tf.distribute: mirrored (local GPUs/CPUs) or multi-worker (TF_CONFIG)."),
    OUT_OPTION,
)


@command("train", TRAIN_OPTIONS)
def train_command(values: Values) -> None:
    """Train the reference CNN for the data's image shape and classes; write <source>_cnn.keras, train.json, train_curves.png."""
    from edgecnn.stages.train import train as run_training

    options = TrainOptions(
        data=values["data"],
        image_size=parse_image_size(values["image_size"]),
        color=values["color"],
        preprocess=values["preprocess"],
        epochs=values["epochs"],
        batch_size=values["batch_size"],
        learning_rate=values["learning_rate"],
        seed=values["seed"],
        validation_split=values["validation_split"],
        augment=values["augment"],
        schedule=values["lr_schedule"],
        distribute=values["distribute"],
        out=values["out"],
    )
    result = run_training(options)
    report = result.report
    typer.echo(
        f"test accuracy {report.test_accuracy:.2%} (loss {report.test_loss:.4f}) on {report.data.test_size:,} test images "
        f"from {report.data.spec}; trained on {report.data.fit_size:,} images at {report.images_per_second:,.0f} images/s"
    )
    typer.echo(f"wrote {result.model_path}, {result.report_path}, {result.curves_path}")


EXPORT_OPTIONS = (
    FORMAT_OPTION,
    Declared("quantize", "--quantize", Quantize, Quantize.NONE, help="none | fp16 | dynamic | int8 (ONNX: none, int8)."),
    Declared("uint8_input", "--uint8-input", bool, False, help="ONNX graph takes raw uint8 pixels [batch, H, W] (gray) or [batch, H, W, 3]."),
    Declared("io_type", "--io-type", IoType, None, help="int8 TFLite input/output type (default int8)."),
    Declared("model", "--model", Path, None, help="Keras model (.keras). Default: the one train wrote into --out."),
    Declared("opset", "--opset", int, 17, help="ONNX opset."),
    DATA_OPTION,
    IMAGE_SIZE_OPTION,
    COLOR_OPTION,
    *DESCRIPTION_OPTIONS,
    Declared("calibration_images", "--calibration-images", int, 500, help="Training images used to calibrate int8."),
    Declared("calibration_method", "--calibration-method", CalibrationMethod, CalibrationMethod.MINMAX,
             help="ONNX int8 only (ORT's calibrators; the TFLite converter has no choice)."),
    Declared("per_tensor", "--per-tensor", bool, False, help="ONNX int8: one weight scale per tensor instead of per channel."),
    Declared("reduce_range", "--reduce-range/--no-reduce-range", bool, None,
             help="ONNX int8: weights in 7 bits (ONNX Runtime's reduce_range), or in 8. Default: 7 where this CPU is x86 without VNNI "
                  "(its 8-bit integer kernels saturate there; `edgecnn doctor` says), else 8. Name the CPUs you ship to."),
    Declared("quantizer", "--quantizer", Quantizer, Quantizer.ONNXRUNTIME,
             help="ONNX int8: onnxruntime (its files run fastest under ONNX Runtime) | nncf (OpenVINO's, with bias correction: "
                  "for files deployed on OpenVINO; needs the openvino extra)."),
    Declared("keep_float", "--keep-float", str, None, repeatable=True, metavar="<layer>",
             help="A Keras layer (its name in model.summary()) kept in float in the int8 files (repeatable). Default: ONNX keeps the "
                  "first convolution, TFLite nothing."),
    Declared("keep_int16", "--keep-int16", str, None, repeatable=True, metavar="<layer>",
             help="A Keras layer whose activations stay 16-bit (int8 weights) in the int8 files (repeatable): ONNX A16W8 for that "
                  "layer (opset 21); TFLite cannot mix, so the whole file goes 16x8 with int16 I/O."),
    Declared("keep_dynamic", "--keep-dynamic", str, None, repeatable=True, metavar="<layer>",
             help="A Keras Dense layer or 1x1 convolution (ONNX: stride 1, no padding) of the int8 files whose input is quantized with its "
                  "range measured on each call (int8 weights; ONNX Runtime's dynamic quantization, LiteRT's hybrid kernels), not a "
                  "calibrated one (repeatable)."),
    Declared("max_drop", "--max-drop", float, None, metavar="<points>",
             help="Search for int8 files within this accuracy drop (and verify's int8 agreement) on a validation split, keeping the "
                  "most sensitive layers in 16-bit activations, then in float (matrix products: per-call ranges instead); exit 1 when no "
                  "candidate meets it."),
    Declared("validation_data", "--validation-data", str, None, metavar="<data>",
             help="Labelled images the model never saw (as --data takes them; every image of both splits) that --max-drop's search "
                  "judges on. Default: the hold-out train recorded, else a seeded slice of --data's training images (optimistic: "
                  "the model fit them)."),
    OUT_OPTION,
    REPLACE_OPTION,
)


@command("export", EXPORT_OPTIONS)
def export_command(values: Values) -> int:
    """Convert a Keras image classifier to ONNX / TFLite files named after it and record them in <out>/manifest.json."""
    from edgecnn.report.render import export_table, search_table, stage_progress
    from edgecnn.stages.export import export

    keep_float = values["keep_float"]
    options = ExportOptions(
        model=values["model"], format=values["format"], quantize=values["quantize"], uint8_input=values["uint8_input"],
        io_type=values["io_type"], opset=values["opset"], out=values["out"], data=values["data"],
        image_size=parse_image_size(values["image_size"]), color=values["color"], describe=description_overrides(values),
        calibration_images=values["calibration_images"], replace=values["replace"], calibration_method=values["calibration_method"],
        per_channel=not values["per_tensor"], reduce_range=values["reduce_range"], quantizer=values["quantizer"], keep_float=tuple(keep_float) if keep_float is not None else None,
        keep_int16=tuple(values["keep_int16"] or ()), keep_dynamic=tuple(values["keep_dynamic"] or ()), max_drop=values["max_drop"],
        validation_data=values["validation_data"],
    )
    with stage_progress("exporting") as advance:
        result = export(options, progress=advance)
    export_table(result.artifacts)
    for base in result.unpublished_bases:
        typer.echo(f"note: {base} was converted as the base of the requested files and not written (export it with its own options)")
    for name, searched in result.searches.items():
        search_table(name, searched)
    typer.echo(f"wrote {result.manifest_path} ({len(result.artifacts)} artifacts in {result.seconds:.1f} s)")
    failed_rows(result.failed)
    missed = [name for name, searched in result.searches.items() if not searched.met]
    if missed:
        typer.echo(f"error: no int8 candidate met --max-drop for {', '.join(missed)}; the last one tried was written (see its trail)", err=True)
    return 1 if missed or result.failed else 0


def failed_rows(failed: Sequence[FailedArtifact]) -> None:
    """One line per file a converter refused (recorded in the manifest's `failed` rows; the other files were written)."""
    for row in failed:
        typer.echo(f"error: {row.name} not written: {row.reason}", err=True)


PIPELINE_OPTIONS = (
    DATA_OPTION,
    Declared("model", "--model", Path, None, help="Your Keras model (.keras) instead of training one."),
    IMAGE_SIZE_OPTION,
    COLOR_OPTION,
    *DESCRIPTION_OPTIONS,
    REPLACE_OPTION,
    Declared("epochs", "--epochs", int, 10, help="Training epochs."),
    Declared("augment", "--augment", bool, False, help="Train with random shifts, rotations and zoom."),
    FORMAT_OPTION,
    Declared("keep_int16", "--keep-int16", str, None, repeatable=True, metavar="<layer>",
             help="A Keras layer whose activations stay 16-bit (int8 weights) in the int8 files (repeatable): ONNX A16W8 for that "
                  "layer (opset 21); TFLite cannot mix, so the whole file goes 16x8 with int16 I/O."),
    Declared("max_drop", "--max-drop", float, None, metavar="<points>",
             help="Export searches int8 files within this accuracy drop (see export --max-drop); verify holds them to it."),
    Declared("skip_train", "--skip-train", bool, False, help="Reuse the model train wrote into --out."),
    Declared("corruptions", "--corruptions", bool, False,
             help="verify also judges every file on corrupted copies of the test images (see verify --corruptions); the report shows "
                  "a table and a chart."),
    OUT_OPTION,
    *RUNTIME_OPTIONS,
)


@command("pipeline", PIPELINE_OPTIONS)
def pipeline_command(values: Values) -> int:
    """Train → export → verify → bench (on the runtimes and provider asked for), then write <out>/report.md and report.html."""
    from edgecnn.core.corruptions import every_corruption
    from edgecnn.pipeline import STAGES, PipelineOptions, run_pipeline
    from edgecnn.report.render import bench_table, export_table, pipeline_progress, ship_table, verify_table

    describe = description_overrides(values)
    is_user_model = values["model"] is not None
    options = PipelineOptions(
        data=values["data"], model=values["model"], image_size=parse_image_size(values["image_size"]), color=values["color"],
        replace=values["replace"], describe=describe if is_user_model else dataclasses.replace(describe, preprocess=None),
        preprocess=None if is_user_model else describe.preprocess, epochs=values["epochs"], augment=values["augment"],
        format=values["format"], run=run_options(values, several=True), out=values["out"], skip_train=values["skip_train"],
        max_drop=values["max_drop"], corruptions=every_corruption() if values["corruptions"] else (),
    )
    with pipeline_progress(STAGES) as stage_started:
        result = run_pipeline(options, stage_started)
    export_table(result.export.artifacts)
    failed_rows(result.export.failed)
    verify_table(result.verify)
    if result.bench is not None:
        bench_table(result.bench.results)
    ship_table(result.ship)
    typer.echo(f"wrote {result.report_markdown} and {result.report_html}")
    return result.exit_code
