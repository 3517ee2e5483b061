"""The typer app, built from the declarations in `options.py`: `command(name, declared)` registers a body that takes
the parsed values by name, so typer supplies help, completion and usage errors without a command declaring anything
for typer itself."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from types import GenericAlias
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from edgecnn import __version__
from edgecnn.cli.options import Declared, with_debug


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

Values = dict[str, Any]
CommandBody = Callable[[Values], Any]


def typer_parameter(option: Declared) -> inspect.Parameter:
    """A declared option as the parameter typer reads from a command's signature."""
    value_type: Any = GenericAlias(list, (option.kind,)) if option.repeatable else option.kind  # list[kind]
    if option.default is None:
        value_type = Optional[value_type]
    if option.action is not None:
        info = typer.Option(option.flags, help=option.help, callback=option.action, expose_value=False, is_eager=True)
    elif option.flags:
        info = typer.Option(option.flags, help=option.help, metavar=option.metavar, show_default=option.default is not None,
                            min=option.minimum, max=option.maximum)
    else:
        info = typer.Argument(help=option.help, metavar=option.metavar, show_default=False)
    return inspect.Parameter(option.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option.default,
                             annotation=Annotated[value_type, info])


def parsed_by_typer(body: CommandBody, declared: Sequence[Declared]) -> Callable[..., Any]:
    """`body` as the function typer calls: its signature is the declared options (and --debug), and the body receives
    their values as one dict (without the actions' flags, which have run)."""
    options = with_debug(declared)
    parameters = [typer_parameter(option) for option in options]
    actions = {option.name for option in options if option.action is not None}

    def parsed(**values: Any) -> Any:
        return body({name: value for name, value in values.items() if name not in actions})

    parsed.__doc__ = body.__doc__
    parsed.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    parsed.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return parsed


def command(name: str, declared: Sequence[Declared]) -> Callable[[CommandBody], CommandBody]:
    """Register `body(values)` as the command `name`, taking the `declared` options (the body's docstring is its help)."""

    def register(body: CommandBody) -> CommandBody:
        app.command(name, cls=EdgecnnCommand)(parsed_by_typer(body, declared))
        return body

    return register


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


ROOT_OPTIONS = (Declared("version", "--version", bool, False, help="Print the version and exit.", action=print_version),)


def root(values: Values) -> None:
    """The options before a command's name: their actions have run (--debug is accepted after it too)."""


app.callback()(parsed_by_typer(root, ROOT_OPTIONS))
