"""Keep native libraries' chatter (TensorFlow, LiteRT, ONNX Runtime provider loading) off the user's terminal.

These libraries write straight to file descriptors 1 and 2 from C++; our own messages say what matters in one line.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator


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
