"""Runners: one small class per runtime (ONNX Runtime, LiteRT, Keras), loaded lazily, all fed the same way.

Every runner takes uint8 images (N, 28, 28) and returns float32 probabilities (N, 10); how the images become the
artifact's input (scale, reshape, quantize) follows its `TensorSpec`, so verify, bench and predict share one path.
Only `KerasRunner` imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgecnn.data import first_line, to_model_input
from edgecnn.errors import EdgecnnError
from edgecnn.manifest import ArtifactFormat, TensorSpec
from edgecnn.native_output import quiet_native_output

log = logging.getLogger("edgecnn")

ONNX_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(float16)": "float16"}
CUDA_FIX = 'pip install "edgecnn[cuda]" (onnxruntime-gpu with its CUDA and cuDNN wheels) and check that nvidia-smi sees a GPU'


class Provider(str, Enum):
    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"

    @property
    def execution_provider(self) -> str:
        return {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[self.value]


class ProviderError(EdgecnnError):
    """The requested execution provider is not the one running the model."""


class Runner(Protocol):
    name: str

    def input_spec(self) -> TensorSpec: ...

    def output_spec(self) -> TensorSpec: ...

    def infer(self, images: np.ndarray) -> np.ndarray: ...

    def details(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


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
    if spec.scale is None:
        return raw.astype(np.float32, copy=False)
    return ((raw.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)


@dataclass(frozen=True)
class OnnxSettings:
    """Session options a benchmark may tune; the defaults are ONNX Runtime's own."""

    provider: Provider = Provider.CPU
    intra_op_threads: int = 0
    allow_fallback: bool = False
    allow_spinning: bool = True
    graph_optimization: str = "all"
    device_id: int = 0


class OnnxRunner:
    """ONNX Runtime, strict about the execution provider: a silent fallback to CPU is an error unless allowed."""

    def __init__(self, path: Path, settings: OnnxSettings = OnnxSettings()) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.settings = settings
        self._session: Any = None
        self.session_create_ms = 0.0

    @property
    def session(self) -> Any:
        if self._session is None:
            started = time.perf_counter()
            self._session = create_session(self.path, self.settings)
            self.session_create_ms = (time.perf_counter() - started) * 1000
        return self._session

    @property
    def provider_used(self) -> str:
        return self.session.get_providers()[0]

    def input_spec(self) -> TensorSpec:
        return onnx_tensor_spec(self.session.get_inputs()[0])

    def output_spec(self) -> TensorSpec:
        return onnx_tensor_spec(self.session.get_outputs()[0])

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.session.get_inputs()[0].name: feed})[0]

    def infer(self, images: np.ndarray) -> np.ndarray:
        return decode_output(self.run_encoded(encode_images(images, self.input_spec())), self.output_spec())

    def close(self) -> None:
        """Drop the session, and with it the thread pool whose spinning threads would disturb the next measurement."""
        self._session = None

    def details(self) -> dict[str, Any]:
        meta = self.session.get_modelmeta()
        return {"custom_metadata": dict(meta.custom_metadata_map), "providers": self.session.get_providers()}


def onnx_tensor_spec(node: Any) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else None for dim in node.shape)
    return TensorSpec(name=node.name, shape=shape, dtype=ONNX_DTYPES.get(node.type, node.type))


def create_session(path: Path, settings: OnnxSettings) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.graph_optimization]
    if not settings.allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    wanted = settings.provider.execution_provider
    if settings.provider is Provider.CPU:
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EdgecnnError(f"ONNX Runtime cannot load the model: {first_line(exc)}", path) from None
    missing = preload_gpu_libraries(ort)
    if not settings.allow_fallback:
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    providers = [(wanted, {"device_id": settings.device_id})] + (["CPUExecutionProvider"] if settings.allow_fallback else [])
    try:
        with quiet_native_output():  # ORT logs each failed library load; the error below says it in one line
            session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        raise provider_error(settings.provider, ort, f"session creation failed: {first_line(exc)}", missing) from None
    active = session.get_providers()
    if active[0] != wanted:
        if not settings.allow_fallback:
            raise provider_error(settings.provider, ort, f"ONNX Runtime fell back to {active[0]}", missing)
        log.warning("%s is not active (%s); running on %s instead (--allow-fallback)", wanted, missing or "provider failed to load", active[0])
    return session


def preload_gpu_libraries(ort: Any) -> str:
    """ORT >= 1.21 loads CUDA/cuDNN from the nvidia-* wheels of `onnxruntime-gpu[cuda,cudnn]`; returns what it missed."""
    if not hasattr(ort, "preload_dlls"):
        return ""
    printed = io.StringIO()
    try:
        with quiet_native_output(), contextlib.redirect_stdout(printed):
            ort.preload_dlls()
    except Exception as exc:  # the provider check that follows reports the consequence
        return first_line(exc)
    failed = [line.split(":")[0].replace("Failed to load ", "") for line in printed.getvalue().splitlines() if line.startswith("Failed to load")]
    return f"missing {', '.join(failed)}" if failed else ""


def provider_error(provider: Provider, ort: Any, what: str, missing: str) -> ProviderError:
    available = ", ".join(ort.get_available_providers())
    libraries = f"; {missing}" if missing else ""
    return ProviderError(
        f"execution provider {provider.execution_provider} requested but not active ({what}{libraries}; built into "
        f"this onnxruntime: {available}). Fix: {CUDA_FIX}, or pass --allow-fallback to run on CPU and record it",
        f"--provider {provider.value}",
    )


class TfliteRunner:
    """LiteRT interpreter (CPU). The batch dimension is resized on demand; quantized I/O follows the tensor spec."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.threads = threads
        self._interpreter: Any = None
        self._batch = 0
        self.session_create_ms = 0.0

    @property
    def interpreter(self) -> Any:
        if self._interpreter is None:
            from ai_edge_litert.interpreter import Interpreter

            started = time.perf_counter()
            try:
                with quiet_native_output():  # LiteRT announces its XNNPACK delegate on stderr
                    self._interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
                    self._interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise EdgecnnError(f"LiteRT cannot load the model: {first_line(exc)}", self.path) from None
            self._batch = int(self._interpreter.get_input_details()[0]["shape"][0])
            self.session_create_ms = (time.perf_counter() - started) * 1000
        return self._interpreter

    def _spec(self, detail: dict[str, Any]) -> TensorSpec:
        scale, zero_point = detail["quantization"]
        shape = tuple(None if dim < 0 else int(dim) for dim in detail["shape_signature"])
        quantized = scale != 0.0
        return TensorSpec(
            name=detail["name"],
            shape=shape,
            dtype=np.dtype(detail["dtype"]).name,
            scale=float(scale) if quantized else None,
            zero_point=int(zero_point) if quantized else None,
        )

    def input_spec(self) -> TensorSpec:
        return self._spec(self.interpreter.get_input_details()[0])

    def output_spec(self) -> TensorSpec:
        return self._spec(self.interpreter.get_output_details()[0])

    def prepare(self, batch: int) -> None:
        interpreter = self.interpreter
        if batch != self._batch:
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interpreter.allocate_tensors()
            self._batch = batch

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        self.prepare(len(feed))
        interpreter = self.interpreter
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], feed)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    def infer(self, images: np.ndarray) -> np.ndarray:
        return decode_output(self.run_encoded(encode_images(images, self.input_spec())), self.output_spec())

    def close(self) -> None:
        self._interpreter = None
        self._batch = 0

    def details(self) -> dict[str, Any]:
        return {"signatures": list(self.interpreter.get_signature_list())}


class KerasRunner:
    """The reference: the saved Keras model (safe mode), called directly."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._model: Any = None
        self.session_create_ms = 0.0

    @property
    def model(self) -> Any:
        if self._model is None:
            from edgecnn.model import load_model

            started = time.perf_counter()
            self._model = load_model(self.path)
            self.session_create_ms = (time.perf_counter() - started) * 1000
        return self._model

    def input_spec(self) -> TensorSpec:
        return TensorSpec(name="image", shape=(None, 28, 28, 1), dtype="float32")

    def output_spec(self) -> TensorSpec:
        return TensorSpec(name="probabilities", shape=(None, 10), dtype="float32")

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(feed, training=False))

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.run_encoded(encode_images(images, self.input_spec()))

    def close(self) -> None:
        self._model = None

    def details(self) -> dict[str, Any]:
        return {}


def open_runner(artifact_format: ArtifactFormat, path: Path, threads: int | None = None) -> OnnxRunner | TfliteRunner:
    if artifact_format is ArtifactFormat.ONNX:
        return OnnxRunner(path, OnnxSettings(intra_op_threads=threads or 0))
    return TfliteRunner(path, threads)


def infer_in_batches(runner: Runner, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    return np.concatenate([runner.infer(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])
