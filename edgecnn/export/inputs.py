"""What every converter is given (frozen, loaded once per run) and what each one returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.export.artifacts import ExportOptions
from edgecnn.manifest import ModelEntry


@dataclass(frozen=True)
class ExportInputs:
    keras_model: Any
    model_entry: ModelEntry
    options: ExportOptions
    staging: Path
    calibration: np.ndarray
    metadata: dict[str, str]  # the facts every file carries: labels, input layout and scaling, source model, version

    @property
    def data_spec(self) -> str | None:
        """The calibration data's source: --data, else the one recorded at training."""
        return self.options.data or self.model_entry.data.get("spec")


@dataclass(frozen=True)
class Converted:
    """A staged file and how it was made (recorded under the artifact's `details` in the manifest)."""

    path: Path
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
