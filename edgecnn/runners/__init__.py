"""Runners: one module per runtime (ONNX Runtime, LiteRT, Keras) over a small shared base, like Polygraphy's backends.

`open_runner` is the one path from a model file to a runner; verify, bench, predict and info all use it.
Only the Keras runner imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.manifest import ArtifactFormat
from edgecnn.runners.base import Backend, Runner, decode_output, encode_images, infer_in_batches
from edgecnn.runners.keras import KerasRunner
from edgecnn.runners.litert import TfliteRunner
from edgecnn.runners.onnxrt import ConvAlgoSearch, OnnxRunner, PlacementError, Provider, ProviderError, SessionConfig

MODEL_SUFFIXES = {".onnx": ArtifactFormat.ONNX, ".tflite": ArtifactFormat.TFLITE}

__all__ = [
    "Backend", "ConvAlgoSearch", "KerasRunner", "OnnxRunner", "PlacementError", "Provider", "ProviderError", "Runner", "SessionConfig", "TfliteRunner",
    "artifact_format_of", "decode_output", "encode_images", "infer_in_batches", "open_runner",
]


def artifact_format_of(path: Path) -> ArtifactFormat:
    """The format of a model file a user names, or a user error saying why it cannot be one."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError("model file not found", path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise EdgecnnError("unsupported model file: expected .onnx or .tflite", path)
    return MODEL_SUFFIXES[path.suffix.lower()]


def open_runner(
    artifact_format: ArtifactFormat, path: Path, config: SessionConfig = SessionConfig(), description: ModelDescription | None = None
) -> OnnxRunner | TfliteRunner:
    """ONNX files under ONNX Runtime with `config`; TFLite files under LiteRT (CPU) with the same thread count.
    `description` is the manifest's; without it the runner reads the one the file carries."""
    if artifact_format is ArtifactFormat.ONNX:
        return OnnxRunner(path, config, description)
    return TfliteRunner(path, config.threads or None, description)
