"""What every runner shares: lazy timed loading, and one uint8-digits → probabilities path.

Every runner takes uint8 images (N, 28, 28) and returns float32 probabilities (N, 10); how the images become the
artifact's input (scale, reshape, quantize) follows its `TensorSpec`, so verify, bench and predict share one path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import to_model_input
from edgecnn.manifest import TensorSpec


class Backend(str, Enum):
    """What actually ran a model: an ONNX Runtime execution provider, LiteRT or Keras. Values are the runtimes' own
    names (ORT's provider names), `label` is the short form tables print."""

    ORT_CPU = "CPUExecutionProvider"
    ORT_CUDA = "CUDAExecutionProvider"
    ORT_TENSORRT = "TensorrtExecutionProvider"
    LITERT = "LiteRT (XNNPACK, CPU)"
    KERAS = "Keras (TensorFlow, CPU)"

    @property
    def label(self) -> str:
        return {"CPUExecutionProvider": "ORT CPU", "CUDAExecutionProvider": "ORT CUDA", "TensorrtExecutionProvider": "ORT TensorRT",
                "LiteRT (XNNPACK, CPU)": "LiteRT CPU", "Keras (TensorFlow, CPU)": "Keras"}[self.value]

    @property
    def on_device(self) -> bool:
        return self in (Backend.ORT_CUDA, Backend.ORT_TENSORRT)


def encode_images(images: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """uint8 digits → what this input expects: raw pixels, [0, 1] floats, or quantized integers."""
    if spec.dtype == "uint8" and spec.scale is None:
        return np.ascontiguousarray(images.reshape(len(images), *[d for d in spec.shape[1:] if d is not None]))
    scaled = to_model_input(images).reshape(len(images), *spec.shape[1:])
    if spec.scale is None:
        return scaled.astype(spec.dtype, copy=False)
    info = np.iinfo(spec.dtype)
    quantized = np.round(scaled / spec.scale) + spec.zero_point
    return np.clip(quantized, info.min, info.max).astype(spec.dtype)


def decode_output(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The artifact's output as float32 probabilities (dequantized when the output is quantized)."""
    if spec.scale is None:
        return raw.astype(np.float32, copy=False)
    return ((raw.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)


class Runner:
    """One runtime behind one interface: loaded lazily (the load is timed, as an app feels it at start-up),
    fed uint8 digits, returning float probabilities."""

    runtime: Backend
    transfer_included = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._handle: Any = None
        self.session_create_ms = 0.0

    def _load(self) -> Any:
        raise NotImplementedError

    @property
    def handle(self) -> Any:
        if self._handle is None:
            started = time.perf_counter()
            self._handle = self._load()
            self.session_create_ms = (time.perf_counter() - started) * 1000
        return self._handle

    def close(self) -> None:
        """Drop the runtime, and with it the thread pool whose spinning threads would disturb the next measurement."""
        self._handle = None

    def input_spec(self) -> TensorSpec:
        raise NotImplementedError

    def output_spec(self) -> TensorSpec:
        raise NotImplementedError

    def bound_call(self, feed: np.ndarray) -> Callable[[], Any]:
        """The cheapest honest per-call path for a benchmark: input already encoded, buffers prepared once."""
        raise NotImplementedError

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def infer(self, images: np.ndarray) -> np.ndarray:
        return decode_output(self.run_encoded(encode_images(images, self.input_spec())), self.output_spec())

    def details(self) -> dict[str, Any]:
        return {}


def infer_in_batches(runner: Runner, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    return np.concatenate([runner.infer(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])
