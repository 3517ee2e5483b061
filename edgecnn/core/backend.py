"""Lazy TensorFlow/Keras import. TensorFlow costs ~5 s and ~600 MB, so only the stages that need it call this."""

from __future__ import annotations

import os
import sys
from types import ModuleType

from edgecnn.core.native_output import quiet_native_output


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
