"""Export stage: turn the trained Keras model into the files apps embed (ONNX and TFLite), and record them.

`artifacts` holds the one format table and the request → rows selection; `onnx` and `tflite` the converters, each
returning a value (file + how it was made); `run` stages, publishes and merges the manifest.
"""

from edgecnn.export.artifacts import ARTIFACTS, ArtifactSpec, ExportOptions, FormatChoice, IoType, Quantize, select_artifacts
from edgecnn.export.run import CONVERTERS, ExportResult, export

__all__ = [
    "ARTIFACTS", "CONVERTERS", "ArtifactSpec", "ExportOptions", "ExportResult", "FormatChoice", "IoType", "Quantize", "export",
    "select_artifacts",
]
