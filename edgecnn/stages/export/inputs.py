"""What every converter is given (frozen, loaded once per run) and what each one returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.description import ModelDescription
from edgecnn.core.manifest import ModelEntry
from edgecnn.stages.export.artifacts import ExportOptions


@dataclass(frozen=True)
class ExportInputs:
    keras_model: Any
    model_entry: ModelEntry
    options: ExportOptions
    staging: Path
    calibration: np.ndarray  # uint8 (N, H, W, C) training images in the model's size and color
    metadata: dict[str, str]  # the facts every file carries: description, labels, input layout and scaling, source model

    @property
    def description(self) -> ModelDescription:
        return self.model_entry.description

    @property
    def data_spec(self) -> str | None:
        """The calibration data's source: --data, else the one recorded at training."""
        return self.options.data or self.model_entry.data.spec

    def calibration_details(self) -> dict[str, object]:
        return {"images": int(len(self.calibration)), "data_source": self.data_spec, "seed": self.options.seed}


@dataclass(frozen=True)
class Converted:
    """A staged file and how it was made (recorded under the artifact's `details` in the manifest)."""

    path: Path
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
