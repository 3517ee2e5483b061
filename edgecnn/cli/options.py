"""Command-line options declared once, without typer, for the commands that must start fast.

typer builds a command's parameters from these declarations (its help, completion and usage errors: `app.py`), and
`quick.py` parses a well-formed `edgecnn predict` from the very same declarations with getopt, so the per-image
command never imports typer and its vendored click (~40 ms, a quarter of what ONNX Runtime's own import costs).
"""

from __future__ import annotations

import getopt
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.runners.registry import RUNTIMES, Provider, RunOptions, RuntimeName, parse_runtimes

REQUIRED = inspect.Parameter.empty
DEBUG_FLAG = "--debug"


class State:
    """What the root options record for `main`: --debug shows tracebacks."""

    debug = False


@dataclass(frozen=True)
class Declared:
    """One option or argument of a command, as both parsers read it."""

    name: str  # the command function's parameter
    flags: str  # "--top-k"; an on/off pair "--tf32/--no-tf32"; "" for the positional argument
    kind: type  # what each value converts to: int, float, str, Path, bool or an Enum
    default: Any  # REQUIRED for a required argument; None: optional, and the help shows no default
    help: str
    repeatable: bool = False  # given several times (an argument: one or more values), read as a list
    metavar: str | None = None


RUNTIME_OPTIONS = (
    Declared("runtime", "--runtime", str, None, repeatable=True, metavar="<name>",
             help=f"{' | '.join(name.value for name in RuntimeName)} (repeatable, or all, where several can be compared). Default: "
                  "each format's own (ONNX Runtime for .onnx, LiteRT for .tflite)."),
    Declared("provider", "--provider", Provider, Provider.CPU, help="ONNX Runtime execution provider (strict: see --allow-fallback)."),
    Declared("device", "--device", str, None,
             help="The runtime's own device name. " + "; ".join(f"{info.label}: {info.devices}" for info in RUNTIMES.values())),
    Declared("tf32", "--tf32/--no-tf32", bool, True,
             help="CUDA: let fp32 convolutions and matmuls use TF32 (ONNX Runtime's default; verify's fp32 bound follows what ran)."),
    Declared("threads", "--threads", int, None, help="Threads for every runtime (default: the runtime's own; bench: all cores)."),
    Declared("allow_fallback", "--allow-fallback", bool, False, help="Run what the provider cannot on the CPU, warn, and record where each node ran."),
)


def run_options(values: dict[str, Any], several: bool) -> RunOptions:
    """Take the runtime options out of a command's parsed `values` (removing them) and check them into one RunOptions.
    `several`: --runtime may name more than one runtime (or all), for commands that compare them."""
    given = {option.name: values.pop(option.name) for option in RUNTIME_OPTIONS}
    threads = given["threads"]
    if threads is not None and threads < 1:
        raise EdgecnnError(f"threads must be at least 1, got {threads}", "--threads")
    return RunOptions(runtimes=parse_runtimes(given["runtime"] or (), several), provider=given["provider"], device=given["device"],
                      threads=threads or 0, tf32=given["tf32"], allow_fallback=given["allow_fallback"])


def parse_quickly(declared: Sequence[Declared], args: Sequence[str]) -> dict[str, Any] | None:
    """The command's values from `args`, as typer would give them; None for anything but a well-formed invocation.

    getopt, not argparse: argparse costs predict ~8 ms a run (its regexes, gettext lookups and usage line), over 5% of
    the runtime's own import."""
    flags: dict[str, tuple[Declared | None, bool | None]] = {DEBUG_FLAG: (None, True)}  # flag → option, and the value a switch sets
    for option in declared:
        on, _, off = option.flags.partition("/")
        if option.kind is bool:
            flags[on] = (option, True)
            if off:
                flags[off] = (option, False)
        elif option.flags:
            flags[on] = (option, None)
    if any(arg.startswith("--") and arg != "--" and arg.partition("=")[0] not in flags for arg in args):
        return None  # getopt takes any unique prefix of a long option; typer takes none
    try:
        given, positional = getopt.gnu_getopt(list(args), "", [flag[2:] + ("=" if switch is None else "") for flag, (_, switch) in flags.items()])
        values: dict[str, Any] = {option.name: [] if option.repeatable else option.default for option in declared}
        for flag, text in given:
            target, switch = flags[flag]
            value = switch if switch is not None or target is None else target.kind(text)
            if target is not None and target.repeatable:
                values[target.name].append(value)
            elif target is not None:
                values[target.name] = value
        for option in declared:
            if not option.flags:
                taken, positional = (positional, []) if option.repeatable else (positional[:1], positional[1:])
                if not taken:
                    return None
                values[option.name] = [option.kind(text) for text in taken] if option.repeatable else option.kind(taken[0])
            elif option.repeatable and not values[option.name]:
                values[option.name] = option.default
    except (getopt.GetoptError, ValueError):
        return None
    if positional:
        return None
    State.debug = any(flag == DEBUG_FLAG for flag, _ in given)
    return values
