"""Runners: one module per runtime over a small shared base, like Polygraphy's backends, and a registry of them.

Each runtime is a plug-in declared in `registry.py`; the stages ask the registry
which runtime reads a file, never the file's format. `open_runner` is the one path from a model file to a runner.
The Keras runner is the reference verify compares with, not a deployment runtime; only it imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.manifest import ArtifactFormat
from edgecnn.runners.base import Arithmetic, Backend, Runner, RuntimePlugin, RuntimeRefused, decode_output, encode_images, infer_in_batches
from edgecnn.runners.keras import KerasRunner
from edgecnn.runners.litert import TfliteRunner
from edgecnn.runners.onnxrt import ConvAlgoSearch, OnnxRunner, PlacementError, ProviderError, SessionConfig
from edgecnn.runners.registry import (
    RUNTIMES,
    Provider,
    RunOptions,
    RuntimeName,
    check_usable,
    open_runner,
    parse_runtimes,
    plugin,
    runtime_packages,
    runtimes_for,
)

MODEL_SUFFIXES = {".onnx": ArtifactFormat.ONNX, ".tflite": ArtifactFormat.TFLITE}

__all__ = [
    "RUNTIMES", "Arithmetic", "Backend", "ConvAlgoSearch", "KerasRunner", "OnnxRunner", "PlacementError", "Provider", "ProviderError",
    "RunOptions", "Runner", "RuntimeName", "RuntimePlugin", "RuntimeRefused", "SessionConfig", "TfliteRunner", "artifact_format_of", "check_usable",
    "decode_output", "encode_images", "infer_in_batches", "open_runner", "parse_runtimes", "plugin", "runtime_packages", "runtimes_for",
]


def artifact_format_of(path: Path) -> ArtifactFormat:
    """The format of a model file a user names, or a user error saying why it cannot be one."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError("model file not found", path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise EdgecnnError("unsupported model file: expected .onnx or .tflite", path)
    return MODEL_SUFFIXES[path.suffix.lower()]
