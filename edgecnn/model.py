"""The reference CNN: the classic Keras MNIST network, hyperparameters as arguments with the seed's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgecnn.backend import import_keras
from edgecnn.data import IMAGE_SHAPE, NUM_CLASSES


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
