"""The reference CNN: the classic Keras MNIST network, hyperparameters as arguments with the seed's defaults."""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.backend import import_keras
from edgecnn.data import IMAGE_SHAPE, NUM_CLASSES
from edgecnn.errors import EdgecnnError, first_line


@dataclass(frozen=True)
class ModelConfig:
    conv_filters: tuple[int, ...] = (32, 32)
    kernel_size: int = 3
    pool_size: int = 2
    dense_units: int = 128
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    num_classes: int = NUM_CLASSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        return cls(**raw | {"conv_filters": tuple(raw["conv_filters"])})


def build_model(config: ModelConfig = ModelConfig()) -> Any:
    """conv 32@3x3 valid + ReLU, conv 32@3x3 + ReLU, max-pool 2x2, dropout, flatten, dense 128 + ReLU, dropout, softmax."""
    keras = import_keras()
    layers = keras.layers
    stack = [keras.Input(shape=(*IMAGE_SHAPE, 1), name="image")]
    stack += [
        layers.Conv2D(filters, config.kernel_size, padding="valid", activation="relu", name=f"conv{index}")
        for index, filters in enumerate(config.conv_filters, start=1)
    ]
    stack += [
        layers.MaxPooling2D(config.pool_size, name="pool"),
        layers.Dropout(config.conv_dropout, name="conv_dropout"),
        layers.Flatten(name="flatten"),
        layers.Dense(config.dense_units, activation="relu", name="dense"),
        layers.Dropout(config.dense_dropout, name="dense_dropout"),
        layers.Dense(config.num_classes, activation="softmax", name="probabilities"),
    ]
    return keras.Sequential(stack, name="mnist_cnn")


def load_model(path: Path) -> Any:
    """Load a `.keras` file in Keras safe mode: a file that would run arbitrary code (Lambda layers) is refused."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError("Keras model file not found", path)
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise EdgecnnError("not a valid .keras model file (expected the zip-based Keras 3 format)", path)
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
