"""The reference CNN: the classic Keras MNIST network, built for the data's image shape and classes.

For 28x28x1 with 10 classes it is exactly the seed model. Larger images get extra conv + pool stages after the
seed's pool, until the feature map is at most `MAX_FLAT_SIDE` (core/train_report.py) wide, so the dense layer stays the seed's size
instead of growing with the image (a 224x224 input would otherwise flatten to 1.5M features).
"""

from __future__ import annotations

from typing import Any

from edgecnn.core.backend import import_keras
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.train_report import ModelConfig


def build_model(image_shape: tuple[int, int, int], num_classes: int, name: str, config: ModelConfig = ModelConfig()) -> Any:
    """conv 32@3x3 valid + ReLU, conv 32@3x3 + ReLU, max-pool 2x2, [conv 64@3x3 same + pool]*, dropout, flatten,
    dense 128 + ReLU, dropout, softmax over the classes."""
    height, width, _ = image_shape
    if min(height, width) < config.smallest_side():
        raise EdgecnnError(
            f"the reference CNN needs images of at least {config.smallest_side()}x{config.smallest_side()}, got {height}x{width} "
            "(pass --image-size)", "--image-size",
        )
    keras = import_keras()
    layers = keras.layers
    stack = [keras.Input(shape=image_shape, name="image")]
    stack += [
        layers.Conv2D(filters, config.kernel_size, padding="valid", activation="relu", name=f"conv{index}")
        for index, filters in enumerate(config.conv_filters, start=1)
    ]
    stack.append(layers.MaxPooling2D(config.pool_size, name="pool"))
    for stage in range(1, config.extra_stages(height, width) + 1):
        stack += [
            layers.Conv2D(config.extra_stage_filters, config.kernel_size, padding="same", activation="relu", name=f"stage{stage}_conv"),
            layers.MaxPooling2D(config.pool_size, name=f"stage{stage}_pool"),
        ]
    stack += [
        layers.Dropout(config.conv_dropout, name="conv_dropout"),
        layers.Flatten(name="flatten"),
        layers.Dense(config.dense_units, activation="relu", name="dense"),
        layers.Dropout(config.dense_dropout, name="dense_dropout"),
        layers.Dense(num_classes, activation="softmax", name="probabilities"),
    ]
    return keras.Sequential(stack, name=name)

