"""Info stage: what a model file is — format, inputs/outputs, quantization, metadata, size, hash, opset and ops."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgecnnError
from edgecnn.files import sha256_file
from edgecnn.manifest import ArtifactFormat
from edgecnn.runners import OnnxRunner, TfliteRunner


@dataclass(frozen=True)
class ModelInfo:
    path: str
    format: str
    bytes: int
    sha256: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    metadata: dict[str, str] = field(default_factory=dict)
    opset: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(path: Path) -> ModelInfo:
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError("model file not found", path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return describe_onnx(path)
    if suffix == ".tflite":
        return describe_tflite(path)
    raise EdgecnnError("unsupported model file: expected .onnx or .tflite", path)


def describe_onnx(path: Path) -> ModelInfo:
    from edgecnn.onnx_graph import load_onnx_checked

    model = load_onnx_checked(path)
    runner = OnnxRunner(path)
    return ModelInfo(
        path=str(path),
        format=ArtifactFormat.ONNX.value,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        inputs=[runner.input_spec().to_dict()],
        outputs=[runner.output_spec().to_dict()],
        metadata={prop.key: prop.value for prop in model.metadata_props},
        opset={entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        ops=dict(Counter(node.op_type for node in model.graph.node)),
    )


def describe_tflite(path: Path) -> ModelInfo:
    runner = TfliteRunner(path)
    interpreter = runner.interpreter
    try:
        ops = dict(Counter(op["op_name"] for op in interpreter._get_ops_details()))  # LiteRT has no public op list
    except (AttributeError, KeyError):
        ops = {}
    return ModelInfo(
        path=str(path),
        format=ArtifactFormat.TFLITE.value,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        inputs=[runner.input_spec().to_dict()],
        outputs=[runner.output_spec().to_dict()],
        metadata={"signatures": ", ".join(interpreter.get_signature_list())},
        ops=ops,
    )
