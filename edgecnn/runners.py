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
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import to_model_input
from edgecnn.errors import EdgecnnError, first_line
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
class RunnerSettings:
    """How to run: ONNX Runtime's execution provider and strictness, and the thread count every runtime uses."""

    provider: Provider = Provider.CPU
    threads: int = 0  # 0: the runtime's default
    allow_fallback: bool = False
    device_id: int = 0


class Runner:
    """One runtime behind one interface: loaded lazily (the load is timed, as an app feels it at start-up),
    fed uint8 digits, returning float probabilities."""

    runtime = ""
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


class OnnxRunner(Runner):
    """ONNX Runtime, strict about the execution provider: a silent fallback to CPU is an error unless allowed."""

    def __init__(self, path: Path, settings: RunnerSettings = RunnerSettings()) -> None:
        super().__init__(path)
        self.settings = settings

    def _load(self) -> Any:
        return create_session(self.path, self.settings)

    @property
    def session(self) -> Any:
        return self.handle

    @property
    def runtime(self) -> str:
        return self.session.get_providers()[0]

    @property
    def on_device(self) -> bool:
        return self.runtime in ("CUDAExecutionProvider", "TensorrtExecutionProvider")

    @property
    def transfer_included(self) -> bool:
        return not self.on_device

    def input_spec(self) -> TensorSpec:
        return onnx_tensor_spec(self.session.get_inputs()[0])

    def output_spec(self) -> TensorSpec:
        return onnx_tensor_spec(self.session.get_outputs()[0])

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.session.get_inputs()[0].name: feed})[0]

    def bound_call(self, feed: np.ndarray) -> Callable[[], Any]:
        """IO binding with pre-allocated OrtValues; on a GPU they live on the device and each call synchronizes."""
        import onnxruntime as ort

        session = self.session
        device, device_id = ("cuda", self.settings.device_id) if self.on_device else ("cpu", 0)
        output = session.get_outputs()[0]
        output_dtype = np.dtype(ONNX_DTYPES[output.type])
        binding = session.io_binding()
        binding.bind_ortvalue_input(session.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(feed, device, device_id))
        binding.bind_ortvalue_output(
            output.name, ort.OrtValue.ortvalue_from_shape_and_type([len(feed), *output.shape[1:]], output_dtype, device, device_id)
        )
        run_with_iobinding = session.run_with_iobinding
        if not self.on_device:
            return lambda: run_with_iobinding(binding)

        def run_synchronized() -> None:
            run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run_synchronized

    def details(self) -> dict[str, Any]:
        meta = self.session.get_modelmeta()
        return {"custom_metadata": dict(meta.custom_metadata_map), "providers": self.session.get_providers()}


def onnx_tensor_spec(node: Any) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else None for dim in node.shape)
    return TensorSpec(name=node.name, shape=shape, dtype=ONNX_DTYPES.get(node.type, node.type))


def session_options(settings: RunnerSettings) -> Any:
    """ONNX Runtime's own defaults (all graph optimizations, spinning threads) plus the thread count and strictness."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    if settings.provider is not Provider.CPU and not settings.allow_fallback:
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    return options


def describe_session_options(settings: RunnerSettings) -> dict[str, Any]:
    """What a report records about the sessions: read back from the options `create_session` uses."""
    options = session_options(settings)
    return {
        "intra_op_num_threads": options.intra_op_num_threads,
        "graph_optimization_level": str(options.graph_optimization_level).rsplit(".", 1)[-1],
        "execution_mode": str(options.execution_mode).rsplit(".", 1)[-1],
        "intra_op_allow_spinning": config_entry(options, "session.intra_op.allow_spinning", "1") != "0",
        "disable_cpu_ep_fallback": config_entry(options, "session.disable_cpu_ep_fallback", "0") == "1",
    }


def config_entry(options: Any, key: str, default: str) -> str:
    """A session config entry, or ONNX Runtime's default when it was never set (ORT raises for unset keys)."""
    try:
        return options.get_session_config_entry(key)
    except RuntimeError:
        return default


def create_session(path: Path, settings: RunnerSettings) -> Any:
    import onnxruntime as ort

    options = session_options(settings)
    wanted = settings.provider.execution_provider
    if settings.provider is Provider.CPU:
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EdgecnnError(f"ONNX Runtime cannot load the model: {first_line(exc)}", path) from None
    missing = preload_gpu_libraries(ort)
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


class TfliteRunner(Runner):
    """LiteRT interpreter (CPU). The batch dimension is resized on demand; quantized I/O follows the tensor spec."""

    runtime = "LiteRT (XNNPACK, CPU)"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__(path)
        self.threads = threads
        self._batch = 0

    def _load(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        try:
            with quiet_native_output():  # LiteRT announces its XNNPACK delegate on stderr
                interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgecnnError(f"LiteRT cannot load the model: {first_line(exc)}", self.path) from None
        self._batch = int(interpreter.get_input_details()[0]["shape"][0])
        return interpreter

    @property
    def interpreter(self) -> Any:
        return self.handle

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

    def bound_call(self, feed: np.ndarray) -> Callable[[], Any]:
        self.prepare(len(feed))
        interpreter = self.interpreter
        index = interpreter.get_input_details()[0]["index"]

        def invoke() -> None:
            interpreter.set_tensor(index, feed)
            interpreter.invoke()

        return invoke

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        self.bound_call(feed)()
        return self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"])

    def details(self) -> dict[str, Any]:
        return {"signatures": list(self.interpreter.get_signature_list())}


class KerasRunner(Runner):
    """The reference: the saved Keras model (safe mode), called directly. The only runner that imports TensorFlow."""

    runtime = "Keras (TensorFlow, CPU)"

    def _load(self) -> Any:
        from edgecnn.model import load_model

        return load_model(self.path)

    def input_spec(self) -> TensorSpec:
        return TensorSpec(name="image", shape=(None, 28, 28, 1), dtype="float32")

    def output_spec(self) -> TensorSpec:
        return TensorSpec(name="probabilities", shape=(None, 10), dtype="float32")

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        return np.asarray(self.handle(feed, training=False))

    def bound_call(self, feed: np.ndarray) -> Callable[[], Any]:
        model = self.handle
        return lambda: model(feed, training=False)


MODEL_SUFFIXES = {".onnx": ArtifactFormat.ONNX, ".tflite": ArtifactFormat.TFLITE}


def artifact_format_of(path: Path) -> ArtifactFormat:
    """The format of a model file a user names, or a user error saying why it cannot be one."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError("model file not found", path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise EdgecnnError("unsupported model file: expected .onnx or .tflite", path)
    return MODEL_SUFFIXES[path.suffix.lower()]


def open_runner(artifact_format: ArtifactFormat, path: Path, settings: RunnerSettings = RunnerSettings()) -> OnnxRunner | TfliteRunner:
    if artifact_format is ArtifactFormat.ONNX:
        return OnnxRunner(path, settings)
    return TfliteRunner(path, settings.threads or None)


def infer_in_batches(runner: Runner, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    return np.concatenate([runner.infer(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])
