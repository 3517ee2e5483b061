"""LiteRT (the TFLite runtime) on the CPU, with its default XNNPACK delegate."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact import TensorSpec
from edgecnn.core.artifact_details import ArtifactDetails, WeightCounts
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError, first_line
from edgecnn.core.native_output import quiet_native_output
from edgecnn.runners.base import Backend, GraphFacts, Runner, encode_images, thread_counts
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
        return ArtifactDetails(signatures=tuple(self.interpreter.get_signature_list()), weights=self.weight_counts())

    def operators(self) -> list[dict[str, Any]] | None:
        """The file's operators (name, input and output tensor indices); None where this LiteRT cannot list them."""
        try:
            return list(self.interpreter._get_ops_details())  # LiteRT has no public op list
        except (AttributeError, KeyError):
            return None

    def weight_counts(self) -> WeightCounts | None:
        """The constant tensors (what operators read that no operator writes and the caller does not feed): all elements,
        and those stored in 8 bits; None where this LiteRT cannot list its operators."""
        interpreter = self.interpreter
        operators = self.operators()
        if operators is None:
            return None
        written = {index for operator in operators for index in operator["outputs"]}
        fed = {detail["index"] for detail in interpreter.get_input_details()}
        constants = {index for operator in operators for index in operator["inputs"] if index >= 0 and index not in written | fed}
        sizes = [(np.dtype(detail["dtype"]), int(np.prod(detail["shape"]))) for detail in interpreter.get_tensor_details() if detail["index"] in constants]
        return WeightCounts(sum(size for _, size in sizes), sum(size for kind, size in sizes if kind in (np.int8, np.uint8)))

    def graph_facts(self) -> GraphFacts:
        from collections import Counter

        from edgecnn.core.tflite_metadata import METADATA_NAME, read

        interpreter = self.interpreter
        ops = dict(Counter(operator["op_name"] for operator in self.operators() or ()))
        entries = read(self.path.read_bytes())
        metadata = dict(entries.pop(METADATA_NAME, {})) | entries | {"signatures": ", ".join(interpreter.get_signature_list())}
        return GraphFacts(metadata=metadata, ops=ops)

    layer_outputs_note = "LiteRT with its reference kernels: XNNPACK is off while intermediate tensors are preserved"

    def layer_outputs(self, images: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        """Each layer's last operator output, read from LiteRT's preserved tensors and dequantized where it is integer (its
        reference kernels: XNNPACK is off while intermediate tensors are preserved)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from edgecnn.core.layers import LayerMap

        interpreter = Interpreter(model_path=str(self.path), experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [len(images), *detail["shape"][1:]])
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], encode_images(images, tensor_spec(interpreter.get_input_details()[0]), self.description))
        interpreter.invoke()
        tensors: dict[str, int] = {}
        names = {int(item["index"]): item["name"] for item in interpreter.get_tensor_details()}
        layer_map = LayerMap.build(names.values(), layers)
        for operator in interpreter._get_ops_details():  # LiteRT has no public list of operators and their outputs
            for index in operator["outputs"]:
                layer = layer_map.layer_of(names[int(index)])
                if layer is not None:
                    tensors[layer] = int(index)
        if layers:  # the model's output is its last layer's (TFLite names a final softmax after the signature, not the layer)
            tensors[layers[-1]] = int(interpreter.get_output_details()[0]["index"])
        details = {int(item["index"]): item for item in interpreter.get_tensor_details()}
        found = {}
        for layer, index in tensors.items():
            value = interpreter.get_tensor(index)
            scale, zero_point = details[index]["quantization"]
            found[layer] = ((value.astype(np.float32) - zero_point) * scale) if scale else value.astype(np.float32)
        return found


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
