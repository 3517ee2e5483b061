"""The one exception type for user errors.

Anything a user can fix (a bad file, a bad option) is raised as `EdgecnnError` with *what* is wrong and
*where* (the file or option). The CLI renders it as one line, ``error: <what> (<where>)``, and exits 2.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator


class EdgecnnError(Exception):
    """A problem with the user's input, stated as what is wrong and where."""

    exit_code = 2

    def __init__(self, what: str, where: object = None) -> None:
        self.what = what
        self.where = "" if where is None else str(where)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.what} ({self.where})" if self.where else self.what


class IntegrityError(EdgecnnError):
    """A file's bytes no longer match the sha256 the manifest recorded for it."""


def first_line(exc: BaseException) -> str:
    """A library's exception, cut to its first line: enough to say what broke in a one-line error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


TRAINING_SIDE_FIX = 'pip install "edgecnn[train]"'


@contextlib.contextmanager
def training_side(needed_for: str) -> Iterator[None]:
    """Around the import of a training-side package (TensorFlow, tf2onnx, onnxslim, scikit-learn, …), which a device
    install leaves out: missing, it is the one-line error naming the extra that brings it."""
    try:
        yield
    except ImportError as exc:
        missing = (exc.name or "a training-side package").split(".")[0]
        raise EdgecnnError(f"{needed_for} needs {missing}, which the device install leaves out. Fix: {TRAINING_SIDE_FIX}") from None


class ConversionRefused(EdgecnnError):
    """A converter could not make one file. Export records that file as a failed row with this line and publishes the
    files the other converters made (exit 1)."""

    exit_code = 1


@contextlib.contextmanager
def converter_refusal(converter: str) -> Iterator[None]:
    """Around a converter's call: whatever it raises becomes one line naming the converter and, where its message
    names them, the op and the layer it refused."""
    try:
        yield
    except EdgecnnError:
        raise
    except Exception as exc:
        raise ConversionRefused(f"{converter} refused the model: {converter_reason(exc)}") from None


def converter_reason(exc: BaseException) -> str:
    """The line of a converter's message that says what it refused. MLIR-based converters (TFLite) report
    `loc(fused["Op:", "model/layer/Op@__inference_…"]): error: 'tf.Op' op is neither …` among many lines: the error and
    the layer path it names are kept."""
    for line in str(exc).splitlines():
        if "error:" in line:
            reason = re.sub(r"^loc\(.*?\)\):?\s*", "", line.split("error:", 1)[1].strip())
            paths = [name.split("@", 1)[0] for name in re.findall(r'"([^"]+)"', line.split("error:", 1)[0]) if "/" in name]
            return f"{reason} (at {paths[0]})" if paths else reason
    return f"{type(exc).__name__}: {first_line(exc)}"
