"""LiteRT (the TFLite runtime) on the CPU, with its default XNNPACK delegate."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact import TensorSpec
from edgecnn.core.artifact_details import ArtifactDetails
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError, first_line
from edgecnn.core.native_output import quiet_native_output
from edgecnn.runners.base import Backend, Runner, thread_counts
from edgecnn.runners.registry import RunOptions

LITERT = Backend("LiteRT (XNNPACK, CPU)", "LiteRT CPU")


@dataclass(frozen=True)
class LiteRtConfig:
    """LiteRT's one knob: interpreter threads (0: LiteRT's default). It runs on the CPU whatever --provider says."""

    threads: int = 0


def tensor_spec(detail: dict[str, Any]) -> TensorSpec:
    """A LiteRT tensor detail as the spec `encode_images` feeds (with its quantization when it is integer)."""
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


class TfliteRunner(Runner):
    """LiteRT interpreter (CPU). The batch dimension is resized on demand; quantized I/O follows the tensor spec."""

    runtime = LITERT

    def __init__(self, path: Path, config: LiteRtConfig = LiteRtConfig(), description: ModelDescription | None = None) -> None:
        super().__init__(path, description)
        self.config = config
        self.threads = config.threads or None
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

    def input_spec(self) -> TensorSpec:
        return tensor_spec(self.interpreter.get_input_details()[0])

    def output_spec(self) -> TensorSpec:
        return tensor_spec(self.interpreter.get_output_details()[0])

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

    def embedded_metadata(self) -> dict[str, Any]:
        from edgecnn.core.tflite_metadata import METADATA_NAME, read

        try:
            return dict(read(self.path.read_bytes()).get(METADATA_NAME, {}))
        except (ValueError, IndexError, TypeError, struct.error):  # a flatbuffer with a broken metadata table: no description
            return {}

    def file_facts(self) -> ArtifactDetails:
        return ArtifactDetails(signatures=tuple(self.interpreter.get_signature_list()))


class LiteRtPlugin:
    """LiteRT as a registered runtime (runners/registry.py): TFLite files on the CPU with XNNPACK."""

    def config(self, options: RunOptions) -> LiteRtConfig:
        return LiteRtConfig(threads=options.threads)

    def open(self, path: Path, config: LiteRtConfig, description: ModelDescription | None) -> TfliteRunner:
        return TfliteRunner(path, config, description)

    def check_usable(self, config: LiteRtConfig) -> None:
        """The CPU is always there; the library's presence is checked by the registry."""

    def tune_candidates(self, config: LiteRtConfig, cores: int, batch_size: int) -> list[LiteRtConfig]:
        return [replace(config, threads=threads) for threads in thread_counts(cores, batch_size)]

    def parity_key(self, config: LiteRtConfig) -> LiteRtConfig:
        return replace(config, threads=0)

    def label(self, config: LiteRtConfig) -> str:
        return f"threads={config.threads or 'default'}"

    def describe(self, config: LiteRtConfig) -> dict[str, Any]:
        return {"num_threads": config.threads or None, "delegate": "XNNPACK (default)",
                "snippet": f"Interpreter(model_path='model.tflite', num_threads={config.threads or None})"}


    def diagnose_optimizer(self, path: Path, images: np.ndarray, expected: np.ndarray, description: ModelDescription, bound: float,
                           report_folder: Path | None) -> None:
        """No switch for graph optimizations here: a file outside its bound is judged as it ran."""
        return None

PLUGIN = LiteRtPlugin()
