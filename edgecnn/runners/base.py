"""The runner interface, shared by every runtime.

Every runner takes uint8 images (N, H, W, C) and returns the model's outputs (N, K) as floats: probabilities or
logits, as the model gives them (its description says which). How the images become the artifact's input (scaling,
reshape, quantization) follows the model's description and the input's `TensorSpec`, so verify, bench and predict
share one path. A runner knows its model's description: given by the caller (from the manifest), else read from
the file's own metadata, else — for a file edgecnn did not export — assumed from its input shape (pixel / 255).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgecnn.core.artifact import TensorSpec
from edgecnn.core.artifact_details import ArtifactDetails
from edgecnn.core.description import InputScaling, ModelDescription, OutputKind, Preprocess
from edgecnn.core.errors import EdgecnnError

if TYPE_CHECKING:
    from edgecnn.runners.registry import RunOptions


@dataclass(frozen=True)
class Backend:
    """What actually ran a model, as each runtime module defines it: `value` is the runtime's own name (ORT's provider
    name, say), `label` the short form tables print; `on_device` means an accelerator with its own memory, where inputs
    are bound and transfers are not timed."""

    value: str
    label: str
    on_device: bool = False


class RuntimeRefused(EdgecnnError):
    """The file is readable, but this runtime or device cannot run it (a missing kernel, a device plugin's limit): in a
    comparison that is a row saying why, not the end of the run."""


class Arithmetic(str, Enum):
    """What a runtime computed the float layers in. verify's fp32 bound depends on it (TF32 and bf16 round inputs)."""

    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"


def thread_counts(cores: int, batch_size: int) -> list[int]:
    """Thread counts `bench --tune` tries. At batch 1 every small count: one image's work is too small to split well, and
    fewer threads than cores often win (int8 ONNX on 2 cores: 69 µs with 1 thread, 95 µs with ORT's default 2); for
    throughput batches one thread, half the cores and all of them."""
    counts = {1, 2, 3, 4, cores // 2, cores} if batch_size == 1 else {1, cores // 2, cores}
    return sorted(count for count in counts if 1 <= count <= cores)


class RuntimePlugin(Protocol):
    """What a runtime module declares beside its runner (its `PLUGIN`): everything the stages need to know about it.

    `Config` is the runtime's own frozen configuration (ORT's `SessionConfig`, LiteRT's `LiteRtConfig`, …)."""

    def config(self, options: RunOptions) -> Any:
        """The runtime's configuration for the user's run options (one-line error for an option it cannot take)."""

    def open(self, path: Path, config: Any, description: ModelDescription | None) -> Runner:
        """A runner for one file (loaded lazily)."""

    def check_usable(self, config: Any) -> None:
        """Raise a one-line error with the fix when the runtime cannot run on the configured device at all."""

    def tune_candidates(self, config: Any, cores: int, batch_size: int) -> list[Any]:
        """The documented knobs `bench --tune` tries at this batch size, as configurations (`thread_counts` for threads)."""

    def parity_key(self, config: Any) -> Any:
        """Configurations with the same key compute the same numbers (verify's verdict is shared between them)."""

    def label(self, config: Any) -> str:
        """A short name for a configuration, for tables."""

    def describe(self, config: Any) -> dict[str, Any]:
        """What a report records: enough for a user to build the same session in their app."""

    def diagnose_optimizer(self, path: Path, images: np.ndarray, expected: np.ndarray, description: ModelDescription, bound: float,
                           report_folder: Path | None) -> Any:
        """For a file outside its fp32 bound: the same images with the runtime's graph optimizations off and, when that
        is right, the pass responsible (an `OptimizerFinding`). None for a runtime without switchable optimizations."""


def feed_shape(images: np.ndarray, spec: TensorSpec) -> tuple[int, ...]:
    """The input's shape for this batch: the spec's fixed dimensions (e.g. [batch, H, W] for raw gray pixels)."""
    dims = [dim for dim in spec.shape[1:] if isinstance(dim, int)]
    return (len(images), *dims) if len(dims) == len(spec.shape) - 1 else images.shape


def encode_images(images: np.ndarray, spec: TensorSpec, description: ModelDescription) -> np.ndarray:
    """uint8 (N, H, W, C) images → what this input expects: raw pixels, scaled floats, or quantized integers."""
    if spec.dtype == "uint8" and spec.scale is None:
        return np.ascontiguousarray(images.reshape(feed_shape(images, spec)))
    scaled = description.model_input(images).reshape(feed_shape(images, spec))
    if spec.scale is None:
        return scaled.astype(spec.dtype, copy=False)
    info = np.iinfo(spec.dtype)
    quantized = np.round(scaled / spec.scale) + (spec.zero_point or 0)
    return np.clip(quantized, info.min, info.max).astype(spec.dtype)


def decode_output(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The artifact's output as float32 (dequantized when the output is quantized)."""
    if spec.scale is None:
        return raw.astype(np.float32, copy=False)
    return ((raw.astype(np.float32) - (spec.zero_point or 0)) * spec.scale).astype(np.float32)


def assumed_description(inputs: TensorSpec, outputs: TensorSpec) -> ModelDescription:
    """For a file without edgecnn's metadata: its input shape (NHWC or NHW), pixel / 255, numbered classes."""
    dims = inputs.shape[1:]
    if len(dims) == 2:
        dims = (*dims, 1)
    classes = outputs.shape[-1] if outputs.shape and isinstance(outputs.shape[-1], int) else None
    if len(dims) != 3 or not all(isinstance(dim, int) for dim in dims) or dims[2] not in (1, 3) or classes is None:
        raise EdgecnnError(f"the model's input {list(inputs.shape)} and output {list(outputs.shape)} are not an NHWC image classifier's, "
                           "and the file carries no edgecnn description")
    height, width, channels = dims
    return ModelDescription(height=height, width=width, channels=channels, scaling=InputScaling.UNIT,  # type: ignore[arg-type]
                            class_names=tuple(str(index) for index in range(classes)), output=OutputKind.PROBABILITIES,
                            preprocess=Preprocess.RESIZE)


class Runner:
    """One runtime behind one interface: loaded lazily (the load is timed, as an app feels it at start-up),
    fed uint8 images, returning the model's float outputs."""

    config: Any = None  # the runtime's own configuration (see RuntimePlugin)

    def __init__(self, path: Path, description: ModelDescription | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._handle: Any = None
        self._description = description
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

    @property
    def runtime(self) -> Backend:
        """What actually ran the model (which can differ from what was asked, under --allow-fallback)."""
        raise NotImplementedError

    @property
    def on_device(self) -> bool:
        return self.runtime.on_device

    @property
    def transfer_included(self) -> bool:
        """Whether a timed call includes moving inputs and outputs (not on a device with bound buffers)."""
        return not self.on_device

    @property
    def arithmetic(self) -> Arithmetic:
        return Arithmetic.FP32

    def placement(self) -> Any:
        """Where each node ran, for runtimes that can fall back to the CPU (None: everything ran where asked)."""
        return None

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

    def embedded_metadata(self) -> dict[str, Any]:
        """The key → value metadata the file carries (ONNX metadata_props, the TFLite edgecnn entry)."""
        return {}

    @property
    def description(self) -> ModelDescription:
        if self._description is None:
            _ = self.handle  # a file the runtime cannot load is reported as such, before its metadata is read
            try:
                found = ModelDescription.from_metadata(self.embedded_metadata())
            except EdgecnnError as exc:
                raise EdgecnnError(exc.what, self.path) from None
            self._description = found or assumed_description(self.input_spec(), self.output_spec())
        return self._description

    def encode(self, images: np.ndarray) -> np.ndarray:
        return encode_images(images, self.input_spec(), self.description)

    def infer(self, images: np.ndarray) -> np.ndarray:
        """The model's outputs for uint8 images, as it gives them (probabilities or logits)."""
        return decode_output(self.run_encoded(self.encode(images)), self.output_spec())

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.description.probabilities(self.infer(images))

    def file_facts(self) -> ArtifactDetails:
        """What this runtime reads from the file that the manifest records (its metadata, signatures); none by default."""
        return ArtifactDetails()

    def graph_facts(self) -> GraphFacts:
        """What `edgecnn info` prints about the file beyond its inputs and outputs: metadata, opsets, operators."""
        return GraphFacts()

    layer_outputs_note = ""  # how layer_outputs ran the file, for verify --explain's report

    def layer_outputs(self, images: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        """Each Keras layer's output on uint8 `images` as this runtime computes it in the file (verify --explain): the
        runtime marks every layer's tensor as an output, as Polygraphy's `--mark all` does."""
        raise RuntimeRefused(f"{self.runtime.label} cannot give a file's intermediate tensors: explain it with another --runtime", self.path)


@dataclass(frozen=True)
class GraphFacts:
    """What `edgecnn info` prints about a file beyond its inputs and outputs, as its runtime reads them."""

    metadata: dict[str, str] = field(default_factory=dict)
    opset: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)


def infer_in_batches(runner: Runner, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    return np.concatenate([runner.infer(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])
