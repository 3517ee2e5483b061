"""The reference CNN: the classic Keras MNIST network, built for the data's image shape and classes.

For 28x28x1 with 10 classes it is exactly the seed model. Larger images get extra conv + pool stages after the
seed's pool, until the feature map is at most `MAX_FLAT_SIDE` wide, so the dense layer stays the seed's size
instead of growing with the image (a 224x224 input would otherwise flatten to 1.5M features).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgecnn.core.backend import import_keras
from edgecnn.core.errors import EdgecnnError

MAX_FLAT_SIDE = 14


@dataclass(frozen=True)
class ModelConfig:
    conv_filters: tuple[int, ...] = (32, 32)
    kernel_size: int = 3
    pool_size: int = 2
    dense_units: int = 128
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    extra_stage_filters: int = 64

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        known = {key: value for key, value in raw.items() if key in cls.__dataclass_fields__}
        return cls(**known | {"conv_filters": tuple(known.get("conv_filters", cls.conv_filters))})

    def smallest_side(self) -> int:
        """The smallest image side the network takes: its valid convolutions and one pool must leave a pixel."""
        return len(self.conv_filters) * (self.kernel_size - 1) + self.pool_size

    def extra_stages(self, height: int, width: int) -> int:
        side = (max(height, width) - len(self.conv_filters) * (self.kernel_size - 1)) // self.pool_size
        stages = 0
        while side > MAX_FLAT_SIDE:
            side //= self.pool_size
            stages += 1
        return stages


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

