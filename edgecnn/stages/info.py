"""Info stage: what a model file is — format, inputs/outputs, quantization, metadata, size, hash, opset and ops."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.files import sha256_file
from edgecnn.core.manifest import ArtifactFormat, TensorSpec
from edgecnn.runners import artifact_format_of, open_runner


@dataclass(frozen=True)
class ModelInfo:
    path: str
    format: ArtifactFormat
    bytes: int
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    opset: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "format": self.format.value,
            "inputs": [tensor.to_dict() for tensor in self.inputs],
            "outputs": [tensor.to_dict() for tensor in self.outputs],
        }


def describe(path: Path) -> ModelInfo:
    """The runtime reads back inputs and outputs as an app will see them, and the file's metadata, opsets and operators."""
    path = Path(path)
    artifact_format = artifact_format_of(path)
    runner = open_runner(artifact_format, path)  # the format's own runtime: ONNX Runtime for .onnx, LiteRT for .tflite
    facts = runner.graph_facts()
    return ModelInfo(
        path=str(path),
        format=artifact_format,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        inputs=(runner.input_spec(),),
        outputs=(runner.output_spec(),),
        metadata=facts.metadata,
        opset=facts.opset,
        ops=facts.ops,
    )
