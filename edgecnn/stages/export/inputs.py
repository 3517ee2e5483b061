"""What every converter is given (frozen, loaded once per run) and what each one returns."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from edgecnn.core.artifact_details import ArtifactDetails, CalibrationRecord
from edgecnn.core.description import ModelDescription
from edgecnn.core.manifest import ArtifactFormat, ModelEntry, ParityBounds, Precision
from edgecnn.core.reference import Goldens
from edgecnn.runners.base import Arithmetic
from edgecnn.stages.export.artifacts import FORMATS, ArtifactSpec, ExportOptions


@dataclass(frozen=True)
class ExportInputs:
    keras_model: Any
    model_entry: ModelEntry
    options: ExportOptions
    staging: Path
    calibration: np.ndarray  # uint8 (N, H, W, C) training images in the model's size and color
    metadata: dict[str, str]  # the facts every file carries: description, labels, input layout and scaling, source model
    goldens: tuple[np.ndarray, np.ndarray] | None = None  # golden test images and their Keras probabilities (core/reference.py)
    bounds: ParityBounds | None = None  # the fp16 bound derived from this model (stages/export/bounds.py)

    @property
    def description(self) -> ModelDescription:
        return self.model_entry.description

    @property
    def data_spec(self) -> str | None:
        """The calibration data's source: --data, else the one recorded at training."""
        return self.options.data or self.model_entry.data.spec

    def keras_probabilities(self, images: np.ndarray) -> np.ndarray:
        """The in-memory Keras model's probabilities on uint8 images."""
        outputs = np.concatenate([np.asarray(self.keras_model(self.description.model_input(images[start : start + 256]), training=False))
                                  for start in range(0, len(images), 256)])
        return self.description.probabilities(outputs)

    def metadata_for(self, precision: Precision) -> dict[str, str]:
        """What a file of this precision carries: the shared facts, and the goldens with its precision's selftest bound."""
        if self.goldens is None:
            return self.metadata
        from edgecnn.measure.thresholds import thresholds_for

        thresholds = thresholds_for(precision, Arithmetic.FP32, self.bounds)
        return self.metadata | Goldens(*self.goldens, thresholds.atol, thresholds.basis).to_metadata()

    def calibration_record(self) -> CalibrationRecord:
        return CalibrationRecord(int(len(self.calibration)), self.data_spec, self.options.seed)


class FormatConverter(Protocol):
    """What a format's converter module provides (artifacts.FORMATS names it): the file for a row of the table,
    which Keras layers have operators of their own in such a file (what --max-drop's search can lift out of int8), which
    of them are matrix products that can take per-call ranges, and whether its int8 files mix 16-bit and 8-bit
    activations per layer."""

    INT16_PER_LAYER: bool

    def convert(self, spec: ArtifactSpec, inputs: ExportInputs, base: Path | None) -> Converted: ...

    def layers_with_nodes(self, path: Path, layers: list[str]) -> set[str | None]: ...

    def matrix_product_layers(self, path: Path, layers: list[str], options: ExportOptions) -> set[str | None]: ...


def converter_for(artifact_format: ArtifactFormat) -> FormatConverter:
    """The converter module of a format, imported on first use (TensorFlow and the converters load only for export)."""
    return cast(FormatConverter, importlib.import_module(FORMATS[artifact_format].converter))


@dataclass(frozen=True)
class Converted:
    """A staged file and how it was made (recorded under the artifact's `details` in the manifest)."""

    path: Path
    details: ArtifactDetails = ArtifactDetails()
    seconds: float = 0.0
    extras: tuple[Path, ...] = ()  # staged files published beside it (a minimal graph for an upstream report)
