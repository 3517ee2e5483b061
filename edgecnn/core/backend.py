"""Lazy TensorFlow/Keras import and safe Keras model loading. TensorFlow costs ~5 s and ~600 MB, so only the stages
that need it call this."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

from edgecnn.core.errors import EdgecnnError, first_line, training_side
from edgecnn.core.native_output import quiet_native_output


def import_tensorflow() -> ModuleType:
    loaded = sys.modules.get("tensorflow")
    if loaded is not None:
        return loaded
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with quiet_native_output(), training_side("training, export and running the Keras model"):
        import tensorflow as tf
    return tf


def import_keras() -> ModuleType:
    import_tensorflow()
    with training_side("training, export and running the Keras model"):
        import keras
    return keras


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def load_model(path: Path) -> Any:
    """Load a `.keras` file, or an `.h5` file saved by tf.keras 2.x (through Keras 3's legacy loader), in Keras safe
    mode: a file that would run arbitrary code (Lambda layers) is refused in either format."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError("Keras model file not found", path)
    if path.suffix in (".h5", ".hdf5"):
        with open(path, "rb") as handle:
            if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise EdgecnnError("not a valid .h5 model file (no HDF5 signature)", path)
    elif path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise EdgecnnError("not a valid .keras model file (expected the zip-based Keras 3 format; tf.keras 2.x files load as .h5)", path)
    keras = import_keras()
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError/TypeError/KeyError/OSError for broken files
        message = str(exc)
        if "safe_mode" in message or "Lambda" in message:
            raise EdgecnnError(
                "refused: the model contains a Lambda layer or other arbitrary Python code, which Keras safe mode blocks", path
            ) from None
        raise EdgecnnError(f"cannot load Keras model (corrupt or incompatible): {first_line(exc)}", path) from None
