"""What one exported file is: its format, its tensors and the names apps code against, and the name of the manifest
beside it. The runners and predict need no more, and the manifest's model, data and reference records
(`manifest.py`) would cost predict's start-up more than its inference of one picture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

MANIFEST_FILENAME = "manifest.json"
INPUT_NAME = "image"  # every artifact's input and output names: part of the contract apps code against
OUTPUT_NAME = "probabilities"  # the name stays when a model gives logits: its description says which


class ArtifactFormat(str, Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    KERAS = "keras"  # the source model (bench's baseline); never an exported artifact

    @property
    def is_artifact(self) -> bool:
        return self is not ArtifactFormat.KERAS


@dataclass(frozen=True)
class TensorSpec:
    """How to feed or read one tensor. `scale`/`zero_point` are set for quantized tensors: real = scale * (q - zero_point)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None
    layout: str = ""
    meaning: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"shape": list(self.shape)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TensorSpec:
        return cls(**(raw | {"shape": tuple(raw["shape"])}))
