"""edgecnn's facts inside a .tflite file: one entry, `edgecnn`, in the model's metadata table (a JSON object in its own
buffer), written and read with the flatbuffer schema that ships with LiteRT, so an app that has only the .tflite file
still knows the labels, the input layout and quantization, and which Keras model it came from.
"""

from __future__ import annotations

import json
from typing import Any

METADATA_NAME = "edgecnn"


def embed(flatbuffer: bytes, facts: dict[str, str]) -> bytes:
    """The model with `facts` as its `edgecnn` metadata entry (replacing an earlier one)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(facts, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [item for item in (model.metadata or []) if item.name not in (METADATA_NAME, METADATA_NAME.encode())] + [entry]
    return packed(model, len(flatbuffer) + 4096)


def packed(model: Any, size_hint: int) -> bytes:
    """A model read with the schema's object API (`ModelT`) written back as a .tflite file."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read(flatbuffer: bytes) -> dict[str, Any]:
    """Every metadata entry by name: edgecnn's decoded from JSON, the converter's own (e.g. min_runtime_version) as text."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    entries: dict[str, Any] = {}
    for index in range(model.MetadataLength()):
        item = model.Metadata(index)
        name = item.Name().decode()
        data = model.Buffers(item.Buffer()).DataAsNumpy()
        raw = data.tobytes() if hasattr(data, "tobytes") else b""
        entries[name] = json.loads(raw) if name == METADATA_NAME else printable(raw)
    return entries


def printable(raw: bytes) -> str:
    """A converter's entry as text when it is text (min_runtime_version), else its size (CONVERSION_METADATA is binary)."""
    try:
        text = raw.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes>"
    return text if text.isprintable() else f"<{len(raw)} bytes>"


def io_quantization(flatbuffer: bytes) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
    """(scale, zero point) of the first input and output tensors, None where a tensor is not quantized: what a runtime
    that reads .tflite files without exposing them (OpenVINO) needs to feed an int8 model and read its output."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(0)

    def quantization(index: int) -> tuple[float, int] | None:
        parameters = graph.Tensors(index).Quantization()
        if parameters is None or parameters.ScaleLength() == 0:
            return None
        return float(parameters.Scale(0)), int(parameters.ZeroPoint(0))

    return quantization(graph.Inputs(0)), quantization(graph.Outputs(0))


def op_output_names(flatbuffer: bytes) -> list[str]:
    """The output tensor name of every operator, in execution order: how the converter's quantization debugger names
    nodes (its `denylisted_nodes`), and what `verify --explain` maps back to Keras layers."""
    return [name for _, _, outputs in operator_tensors(flatbuffer) for name in outputs]


def operator_tensors(flatbuffer: bytes) -> list[tuple[str, list[str], list[str]]]:
    """(name, input tensor names, output tensor names) of every operator in execution order; an operator is named by
    its first output, as the quantization debugger names it."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(0)

    def tensor_names(count: int, index_of: Any) -> list[str]:
        return [graph.Tensors(index_of(position)).Name().decode() for position in range(count) if index_of(position) >= 0]

    operators = []
    for index in range(graph.OperatorsLength()):
        operator = graph.Operators(index)
        outputs = tensor_names(operator.OutputsLength(), operator.Outputs)
        operators.append((outputs[0] if outputs else f"operator {index}", tensor_names(operator.InputsLength(), operator.Inputs), outputs))
    return operators
