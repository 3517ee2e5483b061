"""The training side's commands: train, export, pipeline (they need the `train` extra: TensorFlow, tf2onnx, …)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecnn.cli.app import (
    ColorOption,
    DataOption,
    DebugOption,
    ImageSizeOption,
    OutOption,
    PreprocessOption,
    ReplaceOption,
    command,
    description_options,
    runtime_options,
)
from edgecnn.core.description import DescriptionOverrides, parse_image_size
from edgecnn.core.manifest import FailedArtifact
from edgecnn.core.train_report import Distribution, LearningRateSchedule
from edgecnn.runners import RunOptions
from edgecnn.stages.export import CalibrationMethod, ExportOptions, FormatChoice, IoType, Quantize
from edgecnn.stages.train import TrainOptions

FormatOption = Annotated[
    Optional[FormatChoice],
    typer.Option(
        "--format",
        help="onnx | tflite | all. Default: all, or, with --quantize/--uint8-input/--io-type, every format that has that variant.",
        show_default=False,
    ),
]


@command()
def train(
    data: DataOption = None,
    image_size: ImageSizeOption = None,
    color: ColorOption = None,
    preprocess: PreprocessOption = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per training step.")] = 128,
    learning_rate: Annotated[
        Optional[float],
        typer.Option(help="Adam learning rate (peak, with a schedule). Default: 0.001 constant, 0.002 with cosine.", show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for weights, shuffling and augmentation.")] = 0,
    validation_split: Annotated[float, typer.Option(help="Fraction of training images held out for validation curves.")] = 0.1,
    augment: Annotated[bool, typer.Option("--augment", help="Random shifts, rotations and zoom during training only.")] = False,
    lr_schedule: Annotated[
        Optional[LearningRateSchedule],
        typer.Option("--lr-schedule", help="Learning-rate schedule (default: cosine with --augment, else constant)."),
    ] = None,
    distribute: Annotated[
        Distribution, typer.Option(help="tf.distribute: mirrored (local GPUs/CPUs) or multi-worker (TF_CONFIG).")
    ] = Distribution.NONE,
    out: OutOption = Path("exports"),
    debug: DebugOption = False,
) -> None:
    """Train the reference CNN for the data's image shape and classes; write <source>_cnn.keras, train.json, train_curves.png."""
    from edgecnn.stages.train import train as run_training

    options = TrainOptions(
        data=data,
        image_size=parse_image_size(image_size),
        color=color,
        preprocess=preprocess,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        validation_split=validation_split,
        augment=augment,
        schedule=lr_schedule,
        distribute=distribute,
        out=out,
    )
    result = run_training(options)
    report = result.report
    typer.echo(
        f"test accuracy {report.test_accuracy:.2%} (loss {report.test_loss:.4f}) on {report.data.test_size:,} test images "
        f"from {report.data.spec}; trained on {report.data.fit_size:,} images at {report.images_per_second:,.0f} images/s"
    )
    typer.echo(f"wrote {result.model_path}, {result.report_path}, {result.curves_path}")


@command("export")
@description_options
def export_command(
    format: FormatOption = None,
    quantize: Annotated[Quantize, typer.Option(help="none | fp16 | dynamic | int8 (ONNX: none, int8).")] = Quantize.NONE,
    uint8_input: Annotated[bool, typer.Option("--uint8-input", help="ONNX graph takes raw uint8 pixels [batch, H, W] (gray) or [batch, H, W, 3].")] = False,
    io_type: Annotated[Optional[IoType], typer.Option("--io-type", help="int8 TFLite input/output type (default int8).")] = None,
    model: Annotated[
        Optional[Path], typer.Option("--model", help="Keras model (.keras). Default: the one train wrote into --out.", show_default=False)
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    data: DataOption = None,
    image_size: ImageSizeOption = None,
    color: ColorOption = None,
    describe: DescriptionOverrides = DescriptionOverrides(),
    calibration_images: Annotated[int, typer.Option(help="Training images used to calibrate int8.")] = 500,
    calibration_method: Annotated[CalibrationMethod, typer.Option(
        "--calibration-method", help="ONNX int8 only (ORT's calibrators; the TFLite converter has no choice).")] = CalibrationMethod.MINMAX,
    per_tensor: Annotated[bool, typer.Option("--per-tensor", help="ONNX int8: one weight scale per tensor instead of per channel.")] = False,
    keep_float: Annotated[Optional[list[str]], typer.Option(
        "--keep-float", metavar="<layer>", show_default=False,
        help="A Keras layer (its name in model.summary()) kept in float in the int8 files (repeatable). Default: ONNX keeps the "
             "first convolution, TFLite nothing.")] = None,
    max_drop: Annotated[Optional[float], typer.Option(
        "--max-drop", metavar="<points>", show_default=False,
        help="Search for int8 files within this accuracy drop (and verify's int8 agreement) on a validation split, keeping "
             "the most sensitive layers in float; exit 1 when no candidate meets it.")] = None,
    out: OutOption = Path("exports"),
    replace: ReplaceOption = False,
    debug: DebugOption = False,
) -> int:
    """Convert a Keras image classifier to ONNX / TFLite files named after it and record them in <out>/manifest.json."""
    from edgecnn.report.render import export_table, search_table, stage_progress
    from edgecnn.stages.export import export

    options = ExportOptions(
        model=model, format=format, quantize=quantize, uint8_input=uint8_input, io_type=io_type, opset=opset,
        out=out, data=data, image_size=parse_image_size(image_size), color=color,
        describe=describe, calibration_images=calibration_images, replace=replace,
        calibration_method=calibration_method, per_channel=not per_tensor, keep_float=tuple(keep_float) if keep_float is not None else None,
        max_drop=max_drop,
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


@command("pipeline")
@runtime_options(several=True)
@description_options
def pipeline_command(
    data: DataOption = None,
    model: Annotated[
        Optional[Path], typer.Option("--model", help="Your Keras model (.keras) instead of training one.", show_default=False)
    ] = None,
    image_size: ImageSizeOption = None,
    color: ColorOption = None,
    describe: DescriptionOverrides = DescriptionOverrides(),
    replace: ReplaceOption = False,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    augment: Annotated[bool, typer.Option("--augment", help="Train with random shifts, rotations and zoom.")] = False,
    format: FormatOption = None,
    max_drop: Annotated[Optional[float], typer.Option(
        "--max-drop", metavar="<points>", show_default=False,
        help="Export searches int8 files within this accuracy drop (see export --max-drop); verify holds them to it.")] = None,
    skip_train: Annotated[bool, typer.Option("--skip-train", help="Reuse the model train wrote into --out.")] = False,
    corruptions: Annotated[bool, typer.Option(
        "--corruptions", help="verify also judges every file on corrupted copies of the test images (see verify --corruptions); "
                              "the report shows a table and a chart.")] = False,
    out: OutOption = Path("exports"),
    run: RunOptions = RunOptions(),
    debug: DebugOption = False,
) -> int:
    """Train → export → verify → bench (on the runtimes and provider asked for), then write <out>/report.md and report.html."""
    from edgecnn.core.corruptions import every_corruption
    from edgecnn.pipeline import STAGES, PipelineOptions, run_pipeline
    from edgecnn.report.render import bench_table, export_table, pipeline_progress, ship_table, verify_table

    is_user_model = model is not None
    options = PipelineOptions(
        data=data, model=model, image_size=parse_image_size(image_size), color=color, replace=replace,
        describe=describe if is_user_model else dataclasses.replace(describe, preprocess=None),
        preprocess=None if is_user_model else describe.preprocess, epochs=epochs, augment=augment, format=format, run=run,
        out=out, skip_train=skip_train, max_drop=max_drop, corruptions=every_corruption() if corruptions else (),
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
