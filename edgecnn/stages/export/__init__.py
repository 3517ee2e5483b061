"""Export stage: turn the trained Keras model into the files apps embed (ONNX and TFLite), and record them.

`artifacts` holds the one format table and the request → rows selection; `onnx` and `tflite` the converters, each
returning a value (file + how it was made); `run` stages, publishes and merges the manifest. The CLI needs only the
table's enums to parse options, so `run` (and the converters behind it) load on first use.
"""

from typing import Any

from edgecnn.stages.export.artifacts import (
    ARTIFACTS,
    ArtifactSpec,
    CalibrationMethod,
    ExportOptions,
    FormatChoice,
    IoType,
    Quantize,
    Quantizer,
    select_artifacts,
)

__all__ = [
    "ARTIFACTS", "ArtifactSpec", "CalibrationMethod", "ExportOptions", "ExportResult", "FormatChoice", "IoType", "Quantize", "Quantizer", "export",
    "select_artifacts",
]


def __getattr__(name: str) -> Any:
    if name in ("ExportResult", "export"):
        from edgecnn.stages.export import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
