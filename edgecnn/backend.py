"""Lazy TensorFlow/Keras import. TensorFlow costs ~5 s and ~600 MB, so only the stages that need it call this."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def quiet_native_output(descriptors: tuple[int, ...] = (2,)) -> Iterator[None]:
    """Silence chatter written straight to file descriptors by C++ code (absl logs, converter dumps)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in descriptors}
    try:
        with open(os.devnull, "wb") as devnull:
            for fd in descriptors:
                os.dup2(devnull.fileno(), fd)
        with contextlib.redirect_stdout(io.StringIO()) if 1 in descriptors else contextlib.nullcontext():
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def import_tensorflow() -> ModuleType:
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with quiet_native_output():
        import tensorflow as tf
    return tf


def import_keras() -> ModuleType:
    import_tensorflow()
    import keras

    return keras
