"""The reference: the saved Keras model. The only runner that imports TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact import INPUT_NAME, OUTPUT_NAME, TensorSpec
from edgecnn.core.description import ModelDescription
from edgecnn.runners.base import Backend, Runner

KERAS = Backend("Keras (TensorFlow, CPU)", "Keras")


class KerasRunner(Runner):
    """The reference: the saved Keras model (safe mode), called directly. The only runner that imports TensorFlow."""

    runtime = KERAS

    def _load(self) -> Any:
        from edgecnn.core.backend import load_model

        return load_model(self.path)

    def __init__(self, path: Path, description: ModelDescription) -> None:
        super().__init__(path, description)

    def input_spec(self) -> TensorSpec:
        return TensorSpec(name=INPUT_NAME, shape=(None, *self.description.image_shape), dtype="float32")

    def output_spec(self) -> TensorSpec:
        return TensorSpec(name=OUTPUT_NAME, shape=(None, self.description.num_classes), dtype="float32")

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        return np.asarray(self.handle(feed, training=False))

    def bound_call(self, feed: np.ndarray) -> Callable[[], Any]:
        model = self.handle
        return lambda: model(feed, training=False)
