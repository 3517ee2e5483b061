"""Runners: one module per runtime over a small shared base, like Polygraphy's backends, and a registry of them.

Each runtime is a plug-in declared in `registry.py`; the stages ask the registry
which runtime reads a file, never the file's format. `open_runner` is the one path from a model file to a runner.
The Keras runner is the reference verify compares with, not a deployment runtime; only it imports TensorFlow.
The runtime modules' classes below are imported on first use, as the plug-ins are: `edgecnn predict` of an ONNX file
never loads the LiteRT or Keras runner.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.core.artifact import ArtifactFormat
from edgecnn.core.errors import EdgecnnError
from edgecnn.runners.base import Arithmetic, Backend, Runner, RuntimePlugin, RuntimeRefused, decode_output, encode_images, infer_in_batches
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

if TYPE_CHECKING:
    from edgecnn.runners.keras import KerasRunner
    from edgecnn.runners.litert import TfliteRunner
    from edgecnn.runners.onnxrt import ConvAlgoSearch, OnnxRunner, PlacementError, ProviderError, SessionConfig

RUNTIME_MODULE_CLASSES = {
    "KerasRunner": "edgecnn.runners.keras",
    "TfliteRunner": "edgecnn.runners.litert",
    **dict.fromkeys(("ConvAlgoSearch", "OnnxRunner", "PlacementError", "ProviderError", "SessionConfig"), "edgecnn.runners.onnxrt"),
}
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


def __getattr__(name: str) -> Any:
    """A runtime module's class, importing that module now (PEP 562)."""
    if name not in RUNTIME_MODULE_CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(RUNTIME_MODULE_CLASSES[name]), name)
