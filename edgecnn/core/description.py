"""What a model takes and gives: the one description every stage and every example reads.

It is made where a model first appears — `train` for the reference CNN, `export` for a user's `.keras` — recorded in
the manifest and inside every exported file (ONNX `metadata_props`, the TFLite `edgecnn` entry), and never
re-derived from constants afterwards: input height x width x channels, how uint8 pixels become the model's input,
the class names, whether the output is probabilities or logits, and the image preprocessing that `predict` and
the examples apply to a user's picture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError

METADATA_KEY = "edgecnn_description"  # the description as JSON, in every artifact's metadata


class Color(str, Enum):
    GRAY = "gray"
    RGB = "rgb"

    @property
    def channels(self) -> int:
        return 1 if self is Color.GRAY else 3

    @classmethod
    def of_channels(cls, channels: int) -> Color:
        return cls.GRAY if channels == 1 else cls.RGB


class InputScaling(str, Enum):
    """How uint8 pixels become the model's float input: model_input = (pixel - offset) / divisor, per channel."""

    UNIT = "unit"  # pixel / 255, in [0, 1]
    RAW = "raw"  # 0-255 as floats: the model rescales itself (a Rescaling/Normalization layer at its input)
    SYMMETRIC = "symmetric"  # pixel / 127.5 - 1, in [-1, 1]
    MEAN_STD = "mean-std"  # (pixel - mean[c]) / std[c], mean and std in pixel units


class OutputKind(str, Enum):
    PROBABILITIES = "probabilities"
    LOGITS = "logits"


class Preprocess(str, Enum):
    """How a user's picture becomes the model's pixels. DIGIT is MNIST's recipe (ink, crop, centre by mass), for
    models trained on digit sources; RESIZE converts the color and resizes the whole picture (area interpolation)."""

    DIGIT = "digit"
    RESIZE = "resize"


class Orientation(str, Enum):
    """Whether a picture's EXIF orientation tag is applied before anything else. Phones store a portrait photo as
    landscape pixels plus "rotate 90°"; browsers apply the tag when they decode an image, so predict, training from
    folders and the examples do too. STORED (pixels as stored) is what files exported before the field existed did."""

    EXIF = "exif"
    STORED = "stored"


RESIZE_INTERPOLATION = "area"  # an area-weighted (box-filter) resample: anti-aliased when shrinking

FIXED_AFFINE = {InputScaling.UNIT: (0.0, 255.0), InputScaling.RAW: (0.0, 1.0), InputScaling.SYMMETRIC: (127.5, 127.5)}
SCALING_TEXT = {
    InputScaling.UNIT: "pixel / 255, in [0, 1]",
    InputScaling.RAW: "raw pixel values 0-255 as floats (the model rescales them itself)",
    InputScaling.SYMMETRIC: "pixel / 127.5 - 1, in [-1, 1]",
}


@dataclass(frozen=True)
class ModelDescription:
    height: int
    width: int
    channels: int
    scaling: InputScaling
    class_names: tuple[str, ...]
    output: OutputKind
    preprocess: Preprocess
    mean: tuple[float, ...] = ()  # MEAN_STD only, one per channel, in pixel units (0-255)
    std: tuple[float, ...] = ()
    interpolation: str = RESIZE_INTERPOLATION
    orientation: Orientation = Orientation.EXIF

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def color(self) -> Color:
        return Color.of_channels(self.channels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def shape_text(self) -> str:
        return f"{self.height}x{self.width}x{self.channels}"

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(offset, divisor) per channel, float32: model_input = (pixel - offset) / divisor."""
        if self.scaling is InputScaling.MEAN_STD:
            offset, divisor = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        else:
            fixed_offset, fixed_divisor = FIXED_AFFINE[self.scaling]
            offset, divisor = np.full(self.channels, fixed_offset, np.float32), np.full(self.channels, fixed_divisor, np.float32)
        return offset, divisor

    def model_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) pixels → the float32 input the model was trained on."""
        offset, divisor = self.affine()
        return (np.asarray(images, dtype=np.float32) - offset) / divisor

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """The model's outputs as probabilities: softmax when it gives logits, unchanged otherwise."""
        outputs = np.asarray(outputs, dtype=np.float32)
        if self.output is OutputKind.PROBABILITIES:
            return outputs
        shifted = np.exp(outputs.astype(np.float64) - outputs.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)

    def scaling_text(self) -> str:
        if self.scaling is InputScaling.MEAN_STD:
            return f"(pixel - mean) / std per channel, mean {list(self.mean)}, std {list(self.std)}"
        return SCALING_TEXT[self.scaling]

    def input_text(self) -> str:
        """One line for people: what the float input holds."""
        colors = "grayscale" if self.channels == 1 else "RGB"
        recipe = "white digit on black, MNIST-style" if self.preprocess is Preprocess.DIGIT else "whole image resized"
        if self.orientation is Orientation.EXIF:
            recipe += ", upright by its EXIF orientation"
        return f"{colors} pixels, {self.scaling_text()}; {recipe}; NHWC [batch, {self.height}, {self.width}, {self.channels}]"

    def classes_text(self, shown: int = 12) -> str:
        """The class names for people: the first `shown`, then an ellipsis."""
        return ", ".join(self.class_names[:shown]) + (", …" if self.num_classes > shown else "")

    def output_text(self) -> str:
        kind = "softmax probabilities" if self.output is OutputKind.PROBABILITIES else "logits (apply softmax for probabilities)"
        return f"{kind} for {self.num_classes} classes: {self.classes_text()}"

    def metadata(self) -> dict[str, str]:
        """What every exported file carries about its input and output (string values, as ONNX and TFLite store them)."""
        return {
            METADATA_KEY: json.dumps(self.to_dict(), sort_keys=True),
            "class_labels": json.dumps(list(self.class_names)),
            "input_layout": f"NHWC [batch, {self.height}, {self.width}, {self.channels}]",
            "input_scaling": f"float32 {self.scaling_text()}",
            "output_kind": self.output.value,
            "preprocess": self.preprocess.value,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height, "width": self.width, "channels": self.channels, "scaling": self.scaling.value,
            "mean": list(self.mean), "std": list(self.std), "class_names": list(self.class_names), "output": self.output.value,
            "preprocess": self.preprocess.value, "interpolation": self.interpolation,
            "orientation": self.orientation.value,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelDescription:
        return cls(
            height=int(raw["height"]), width=int(raw["width"]), channels=int(raw["channels"]), scaling=InputScaling(raw["scaling"]),
            mean=tuple(float(value) for value in raw.get("mean", ())), std=tuple(float(value) for value in raw.get("std", ())),
            class_names=tuple(str(name) for name in raw["class_names"]), output=OutputKind(raw["output"]),
            preprocess=Preprocess(raw["preprocess"]), interpolation=str(raw.get("interpolation", RESIZE_INTERPOLATION)),
            orientation=Orientation(raw.get("orientation", Orientation.STORED.value)),
        ).checked("model description")

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelDescription | None:
        """The description a file carries, or None for a file edgecnn did not export."""
        raw = metadata.get(METADATA_KEY)
        if not raw:
            return None
        try:
            return cls.from_dict(json.loads(raw))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EdgecnnError(f"the file's {METADATA_KEY} metadata is malformed: {type(exc).__name__}: {exc}") from None

    def checked(self, where: object) -> ModelDescription:
        if self.height < 1 or self.width < 1 or self.channels not in (1, 3):
            raise EdgecnnError(f"unsupported input {self.shape_text()}: edgecnn takes HxWx1 or HxWx3 images", where)
        if self.num_classes < 2:
            raise EdgecnnError(f"a classifier needs at least 2 classes, got {self.num_classes}", where)
        if self.scaling is InputScaling.MEAN_STD:
            if len(self.mean) != self.channels or len(self.std) != self.channels:
                raise EdgecnnError(f"mean-std scaling needs {self.channels} mean and {self.channels} std values (one per channel)", "--mean/--std")
            if not all(value > 0 for value in self.std):
                raise EdgecnnError("every std value must be positive", "--std")
        return self


@dataclass(frozen=True)
class DescriptionOverrides:
    """What a user says about their model where detection cannot know (all optional)."""

    scaling: InputScaling | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    output: OutputKind | None = None
    preprocess: Preprocess | None = None

    def check(self) -> None:
        if (self.mean or self.std) and self.scaling is not InputScaling.MEAN_STD:
            raise EdgecnnError("--mean/--std go with --input-scaling mean-std", "--mean/--std")
        if self.scaling is InputScaling.MEAN_STD and not (self.mean and self.std):
            raise EdgecnnError("--input-scaling mean-std needs --mean and --std (one value per channel, in pixel units 0-255)", "--input-scaling")

    def applied(self, description: ModelDescription) -> ModelDescription:
        changed: dict[str, Any] = {}
        if self.scaling is not None:
            changed |= {"scaling": self.scaling, "mean": self.mean, "std": self.std}
        if self.output is not None:
            changed["output"] = self.output
        if self.preprocess is not None:
            changed["preprocess"] = self.preprocess
        return replace(description, **changed).checked("--input-scaling/--mean/--std")


def parse_numbers(text: str | None, option: str) -> tuple[float, ...]:
    """'123.7,116.3,103.5' → (123.7, 116.3, 103.5); a user error naming the option otherwise."""
    if not text:
        return ()
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise EdgecnnError(f"expected comma-separated numbers, got {text!r}", option) from None


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """'32x24' → (32, 24) as (height, width); a single number means a square."""
    if not text:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 1 or max(size) > 4096:
        raise EdgecnnError(f"expected HxW in pixels (e.g. 32x32), got {text!r}", "--image-size")
    return (size[0], size[1])
