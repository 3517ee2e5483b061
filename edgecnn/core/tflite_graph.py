"""Rewrites of a .tflite file's graph, with the flatbuffer schema that ships with LiteRT: which operators are matrix
products, and giving those that stayed float int8 weights, which LiteRT then runs with its hybrid kernels (the input
quantized with its range measured on each call) — the TFLite form of ONNX Runtime's dynamic quantization
(`core.onnx_graph.as_matmuls`); and the int8 operators XNNPACK does not take written as ones it does (`delegable_int8`).

Operators are named by their first output tensor, as the converter's quantization debugger names them.
"""

from __future__ import annotations

from typing import Any

INT8_LIMIT = 127  # symmetric int8 weights, zero point 0: what LiteRT's dynamic-range quantizer writes for its hybrid kernels


def matrix_products(flatbuffer: bytes) -> list[str]:
    """The operators that are matrix products, in execution order: FULLY_CONNECTED, or a pointwise (1x1) CONV_2D over a
    map of any size, each with constant weights. LiteRT's hybrid CONV_2D computes a pointwise convolution as one int8
    matrix product too (as ONNX files' pointwise convolutions become MatMuls: `core.onnx_graph.as_matmuls`), and
    measured faster than float: EfficientNetB0's searched file with its 14 float pointwise convolutions (over 2x2 and
    4x4 maps) hybrid ran 357 µs against 390 µs, 31% of fp32 instead of 43%, at the same agreement (bench/RESULTS.md)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    graph = model.subgraphs[0]
    found = []
    for operator in graph.operators:
        kind = operator_kind(model, operator)
        if kind not in (schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.CONV_2D) or len(operator.inputs) < 2:
            continue
        image, weights = (graph.tensors[index] for index in operator.inputs[:2])
        # a grouped convolution's weights see a slice of the input's channels: not one matrix product
        pointwise = kind == schema.BuiltinOperator.FULLY_CONNECTED or (list(weights.shape[1:3]) == [1, 1] and weights.shape[-1] == image.shape[-1])
        if pointwise and model.buffers[weights.buffer].data is not None:
            found.append(graph.tensors[operator.outputs[0]].name.decode())
    return found


def with_per_call_ranges(flatbuffer: bytes, operators: list[str]) -> bytes:
    """The file with the named float matrix products' weights in int8, symmetric per output channel (zero point 0,
    scale max|w| / 127), as LiteRT's dynamic-range quantizer writes them. LiteRT's CONV_2D and FULLY_CONNECTED kernels
    take float input with int8 weights as hybrid operators: each call quantizes the input with its own range, computes
    in int8 and gives float, so the file keeps int8 weights where a calibrated range would cost too much accuracy."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from edgecnn.core.tflite_metadata import packed

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    graph = model.subgraphs[0]
    wanted = set(operators)
    replaced: set[int] = set()
    for operator in graph.operators:
        if graph.tensors[operator.outputs[0]].name.decode() not in wanted:
            continue
        weights = graph.tensors[operator.inputs[1]]
        if weights.type != schema.TensorType.FLOAT32 or graph.tensors[operator.inputs[0]].type != schema.TensorType.FLOAT32:
            raise ValueError(f"operator {graph.tensors[operator.outputs[0]].name.decode()!r} is not a float matrix product")
        rows = np.frombuffer(bytes(model.buffers[weights.buffer].data), dtype=np.float32).reshape(weights.shape[0], -1)
        peaks = np.abs(rows).max(axis=1)
        scales = np.where(peaks > 0, peaks / INT8_LIMIT, 1.0).astype(np.float32)
        quantized = schema.BufferT()  # a buffer of its own: the converter may share one between equal constants
        quantized.data = np.frombuffer(np.clip(np.round(rows / scales[:, None]), -INT8_LIMIT, INT8_LIMIT).astype(np.int8).tobytes(), dtype=np.uint8)
        model.buffers.append(quantized)
        replaced.add(weights.buffer)
        weights.buffer = len(model.buffers) - 1
        weights.type = schema.TensorType.INT8
        weights.quantization = schema.QuantizationParametersT()
        weights.quantization.scale = scales.tolist()
        weights.quantization.zeroPoint = [0] * len(scales)
        weights.quantization.quantizedDimension = 0
    for index in replaced - {tensor.buffer for subgraph in model.subgraphs for tensor in subgraph.tensors}:  # float weights nothing reads now
        model.buffers[index].data = None
    return packed(model, len(flatbuffer))


def delegable_int8(flatbuffer: bytes) -> tuple[bytes, list[str]]:
    """The file with the int8 operators LiteRT's XNNPACK delegate does not take written as ones it does, and those
    operators (by output tensor, which the last new operator keeps, with the quantization the converter calibrated).
    XNNPACK is LiteRT's default CPU path on phones, boards and desktops; an operator it leaves to LiteRT's own kernels
    splits the graph there (bench/RESULTS.md):

    * HARD_SWISH (MobileNetV3): x * min(max(x + 3, 0), 6) / 6 as an ADD with a fused RELU6 and two MULs. The hard
      sigmoid in between is an int8 tensor over [0, 1] (step 1/255: half an output step at most where |x| is
      largest). MobileNetV3Small's int8 file ran in 20 partitions against 2 for fp32, and no faster than fp32.
    * RELU on its own (NASNetMobile's cells, pre-activation blocks): an ADD of 0 with a fused RELU, which requantizes
      to the output's scale as RELU does. NASNetMobile's 48 took its int8 file from 37 partitions to 29 and from 0.8x to
      1.5x fp32's speed, at the same agreement."""
    from ai_edge_litert import schema_py_generated as schema

    from edgecnn.core.tflite_metadata import packed

    kinds = (schema.BuiltinOperator.HARD_SWISH, schema.BuiltinOperator.RELU)
    codes = schema.Model.GetRootAs(flatbuffer, 0)
    if all(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) not in kinds for code in map(codes.OperatorCodes, range(codes.OperatorCodesLength()))):
        return flatbuffer, []  # nothing to rewrite: not worth unpacking a large file
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    graph = model.subgraphs[0]
    rewritten: list[Any] = []
    names: list[str] = []
    for operator in graph.operators:
        image, output = operator.inputs[0], operator.outputs[0]
        kind = operator_kind(model, operator)
        if kind not in kinds or graph.tensors[image].type != schema.TensorType.INT8 or graph.tensors[output].type != schema.TensorType.INT8:
            rewritten.append(operator)
            continue
        name = graph.tensors[output].name.decode()
        names.append(name)
        if kind == schema.BuiltinOperator.RELU:
            zero = constant(model, graph, f"{name}/zero", 0.0)
            rewritten.append(new_operator(model, schema.BuiltinOperator.ADD, [image, zero], output, schema.ActivationFunctionType.RELU))
            continue
        three = constant(model, graph, f"{name}/three", 3.0)
        sixth = constant(model, graph, f"{name}/one_sixth", 1.0 / 6.0)
        clipped = activation_like(graph, graph.tensors[image], f"{name}/relu6", 6.0)
        gate = activation_like(graph, graph.tensors[image], f"{name}/hard_sigmoid", 1.0)
        rewritten += [
            new_operator(model, schema.BuiltinOperator.ADD, [image, three], clipped, schema.ActivationFunctionType.RELU6),
            new_operator(model, schema.BuiltinOperator.MUL, [clipped, sixth], gate, schema.ActivationFunctionType.NONE),
            new_operator(model, schema.BuiltinOperator.MUL, [image, gate], output, schema.ActivationFunctionType.NONE),
        ]
    if not names:
        return flatbuffer, names
    graph.operators = rewritten
    return packed(model, len(flatbuffer) + 4096), names


def constant(model: Any, graph: Any, name: str, value: float) -> int:
    """A new int8 scalar constant that holds `value` (>= 0) exactly (127 at scale value / 127, or 0; zero point 0); its
    tensor index."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.int8(INT8_LIMIT if value else 0).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    return new_tensor(graph, name, [1], len(model.buffers) - 1, (value or 1.0) / INT8_LIMIT, 0)


def activation_like(graph: Any, like: Any, name: str, top: float) -> int:
    """A new int8 tensor of `like`'s shape over [0, top] (zero point -128: 0 is exact); its index."""
    return new_tensor(graph, name, list(like.shape), 0, top / 255.0, -128, like.shapeSignature)


def new_tensor(graph: Any, name: str, shape: list[int], buffer: int, scale: float, zero_point: int, signature: Any = None) -> int:
    """A new per-tensor int8 tensor in `graph` (buffer 0: computed, not constant); its index."""
    from ai_edge_litert import schema_py_generated as schema

    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), shape, schema.TensorType.INT8, buffer
    tensor.shapeSignature = signature
    tensor.quantization = schema.QuantizationParametersT()
    tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [zero_point]
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def new_operator(model: Any, kind: int, inputs: list[int], output: int, activation: int) -> Any:
    """An int8 ADD or MUL (operator code version 2: int8 tensors) with its fused activation."""
    from ai_edge_litert import schema_py_generated as schema

    codes = [index for index, code in enumerate(model.operatorCodes) if max(code.builtinCode, code.deprecatedBuiltinCode) == kind]
    if not codes:
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = kind, kind, 2
        model.operatorCodes.append(code)
        codes = [len(model.operatorCodes) - 1]
    is_add = kind == schema.BuiltinOperator.ADD
    options = schema.AddOptionsT() if is_add else schema.MulOptionsT()
    options.fusedActivationFunction = activation
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = codes[0], inputs, [output]
    operator.builtinOptionsType = schema.BuiltinOptions.AddOptions if is_add else schema.BuiltinOptions.MulOptions
    operator.builtinOptions = options
    return operator


def operator_kind(model: Any, operator: Any) -> int:
    """The builtin operator code (older files keep small codes in the deprecated field)."""
    code = model.operatorCodes[operator.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)
