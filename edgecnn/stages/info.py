"""Info stage: what a model file is — format, inputs/outputs, quantization, metadata, size, hash, opset and ops."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.files import sha256_file
from edgecnn.core.manifest import ArtifactFormat, TensorSpec
from edgecnn.runners import Runner, TfliteRunner, artifact_format_of, open_runner


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
    """The runtime reads back inputs and outputs as an app will see them; the format-specific part adds the rest."""
    path = Path(path)
    artifact_format = artifact_format_of(path)
    runner = open_runner(artifact_format, path)
    extras = FILE_FACTS[artifact_format](runner)
    return ModelInfo(
        path=str(path),
        format=artifact_format,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        inputs=(runner.input_spec(),),
        outputs=(runner.output_spec(),),
        **extras,
    )


def onnx_graph_facts(runner: Runner) -> dict[str, Any]:
    from edgecnn.core.onnx_graph import load_onnx_checked

    model = load_onnx_checked(runner.path)  # before the runtime loads anything: refuses escaping external data
    return {
        "metadata": {prop.key: prop.value for prop in model.metadata_props},
        "opset": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        "ops": dict(Counter(node.op_type for node in model.graph.node)),
    }


def tflite_graph_facts(runner: TfliteRunner) -> dict[str, Any]:
    from edgecnn.core.tflite_metadata import METADATA_NAME, read

    interpreter = runner.interpreter
    try:
        ops = dict(Counter(op["op_name"] for op in interpreter._get_ops_details()))  # LiteRT has no public op list
    except (AttributeError, KeyError):
        ops = {}
    entries = read(runner.path.read_bytes())
    metadata = dict(entries.pop(METADATA_NAME, {})) | entries | {"signatures": ", ".join(interpreter.get_signature_list())}
    return {"metadata": metadata, "ops": ops}


# the file's own facts, by format; TFLite files open under LiteRT, the registry's default runtime for them
FILE_FACTS: dict[ArtifactFormat, Callable[[Any], dict[str, Any]]] = {ArtifactFormat.ONNX: onnx_graph_facts, ArtifactFormat.TFLITE: tflite_graph_facts}
