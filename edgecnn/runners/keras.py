"""The reference: the saved Keras model. The only runner that imports TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.manifest import TensorSpec
from edgecnn.runners.base import Runner


class KerasRunner(Runner):
    """The reference: the saved Keras model (safe mode), called directly. The only runner that imports TensorFlow."""

    runtime = "Keras (TensorFlow, CPU)"

    def _load(self) -> Any:
        from edgecnn.model import load_model

        return load_model(self.path)

    def input_spec(self) -> TensorSpec:
        return TensorSpec(name="image", shape=(None, 28, 28, 1), dtype="float32")

    def output_spec(self) -> TensorSpec:
        return TensorSpec(name="probabilities", shape=(None, 10), dtype="float32")

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        return np.asarray(self.handle(feed, training=False))

    def bound_call(self, feed: np.ndarray) -> Callable[[], Any]:
        model = self.handle
        return lambda: model(feed, training=False)
