"""ONNX graph rewrites applied at export, each kept only when it is proven harmless.

Profiling the tf2onnx graph under ONNX Runtime (see bench/RESULTS.md) showed two costs worth removing:

* the dynamic flatten tf2onnx emits (Shape → Gather → Cast → Slice → Concat → Cast → Reshape) runs six tiny
  kernels per call; onnxslim folds it to one constant Reshape. Kept only if outputs stay bit-identical.
* MatMul + Add pairs: ONNX Runtime fuses a Gemm into one QGemm when quantized, but a MatMul/Add pair becomes two
  quantized kernels, so the int8 path rewrites them to Gemm before quantization.
* the other way for layers given per-call ranges: ONNX Runtime's dynamic quantizer takes MatMul only, so such a Gemm,
  or a 1x1 convolution, is written as MatMul (+ Add, between a Transpose to channels-last and one back for the
  convolution); ORT gives the same outputs to 1e-5 (tests/test_quantization.py).

One rewrite keeps a correct graph correct in the runtime users open it with: Keras' ZeroPadding2D before
MaxPooling2D (ResNetV2's stem) converts to a zero `Pad` feeding a `MaxPool`, and ONNX Runtime's basic optimizer
(`Pad_Fusion`, 1.31 at every opset) folds that Pad into the pool's own padding, which pads with -inf: border maxima of
signed activations change (max |Δp| 0.5 on a fitted ResNet50V2). The same pool with `auto_pad="VALID"` means exactly
"no padding of its own", and the pass leaves it alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact_details import CleanupReport
from edgecnn.core.errors import training_side


def run_model(model: Any, feed: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: feed})[0]


def slim_if_identical(model: Any, probe: np.ndarray) -> tuple[Any, CleanupReport]:
    """onnxslim's constant folding and dead-node removal, kept only if outputs on `probe` are bit-identical. A clean-up
    is an optimisation, never a requirement: when onnxslim raises (its importer fails on ConvNeXt's binary attributes,
    say), the converted graph is kept and the report says why."""
    from edgecnn.core.errors import first_line
    from edgecnn.core.provenance import package_version

    with training_side("ONNX export's graph clean-up"):
        import onnxslim

    try:
        slimmed = onnxslim.slim(model)
        identical = np.array_equal(run_model(model, probe), run_model(slimmed, probe))
        reason = "outputs bit-identical on the probe images" if identical else "outputs changed; original graph kept"
    except Exception as exc:  # any failure of an optional clean-up keeps the converted graph
        slimmed, identical = model, False
        reason = f"onnxslim raised {type(exc).__name__}: {first_line(exc)}; original graph kept"
    kept = slimmed if identical else model
    report = CleanupReport(
        tool=f"onnxslim {package_version('onnxslim')}",
        applied=identical,
        nodes_before=len(model.graph.node),
        nodes_after=len(kept.graph.node),
        bytes_before=model.ByteSize(),
        bytes_after=kept.ByteSize(),
        reason=reason,
    )
    return kept, report


def valid_pools_after_zero_pads(model: Any) -> list[str]:
    """Every MaxPool fed only by a constant-zero Pad, and padding nothing itself, gets `auto_pad="VALID"` in place of
    its all-zero `pads` (the same computation), so ONNX Runtime's Pad_Fusion cannot fold the zeros into -inf padding.
    Returns the pools rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    rewritten = []
    for pool in graph.node:
        pad = producers.get(pool.input[0]) if pool.op_type == "MaxPool" else None
        if pad is None or pad.op_type != "Pad" or readers.get(pad.output[0]) != 1 or not zero_constant_pad(pad, constants):
            continue
        attributes = node_attributes(pool)
        if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or any(attributes.get("pads", [])):
            continue
        kept = [attribute for attribute in pool.attribute if attribute.name not in ("pads", "auto_pad")]
        del pool.attribute[:]
        pool.attribute.extend([*kept, helper.make_attribute("auto_pad", "VALID")])
        rewritten.append(pool.name)
    return rewritten


def identity_reshapes_removed(model: Any) -> tuple[Any, list[str]]:
    """The graph without the Reshapes whose constant target is the shape their input already has (a batch of -1 or 0,
    every other dimension equal to the input's static one), their readers reading the input instead, and the names of
    those removed. tf2onnx writes such Reshapes where a Keras model's feature map is 1x1 (MobileNetV2's last blocks at
    32x32); each one costs a float file a layout reorder on each side and an int8 file two Transposes out of and back
    into ONNX Runtime's NHWC int8 chain. The computation is the same (bit for bit with ORT's optimizations off)."""
    from onnx import numpy_helper, shape_inference

    graph = model.graph
    inferred = shape_inference.infer_shapes(model)
    shapes = {info.name: [dim.dim_value if dim.HasField("dim_value") else None for dim in info.type.tensor_type.shape.dim]
              for info in [*inferred.graph.value_info, *inferred.graph.input] if info.type.tensor_type.HasField("shape")}
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    outputs = {output.name for output in graph.output}
    replaced: dict[str, str] = {}
    removed: dict[int, str] = {}  # index in the graph: name
    for index, node in enumerate(graph.node):
        if node.op_type != "Reshape" or node.output[0] in outputs or node.input[1] not in constants:
            continue
        source, target = shapes.get(node.input[0]), constants[node.input[1]].tolist()
        allows_zero = any(attribute.name == "allowzero" and attribute.i for attribute in node.attribute)
        if allows_zero or source is None or len(source) != len(target) or target[0] not in (-1, 0) or None in source[1:] or source[1:] != target[1:]:
            continue
        replaced[node.output[0]] = replaced.get(node.input[0], node.input[0])
        removed[index] = node.name
    if not removed:
        return model, []
    kept = [node for index, node in enumerate(graph.node) if index not in removed]
    for node in kept:
        for position, name in enumerate(node.input):
            if name in replaced:
                node.input[position] = replaced[name]
    del graph.node[:]
    graph.node.extend(kept)
    read = {name for node in kept for name in node.input}
    unread = [tensor for tensor in graph.initializer if tensor.name not in read]
    for tensor in unread:
        graph.initializer.remove(tensor)
    return model, list(removed.values())


def zero_constant_pad(pad: Any, constants: dict[str, np.ndarray]) -> bool:
    """A Pad in constant mode whose fill value is 0 (the default when the input is absent)."""
    mode = node_attributes(pad).get("mode", b"constant")
    if mode not in (b"constant", "constant"):
        return False
    if len(pad.input) < 3 or not pad.input[2]:
        return True
    value = constants.get(pad.input[2])
    return value is not None and not np.any(value)


def graph_inputs(model: Any) -> list[str]:
    """The inputs an app must feed: graph inputs that are not initializers."""
    initialized = {tensor.name for tensor in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name not in initialized]


def fuse_matmul_add_into_gemm(model: Any) -> Any:
    """MatMul(x, W) followed only by Add(·, b), with W and b constants, becomes Gemm(x, W, b)."""
    from onnx import helper

    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    fused, absorbed = [], set()
    for node in graph.node:
        if id(node) in absorbed:
            continue
        users = consumers.get(node.output[0], []) if node.op_type == "MatMul" else []
        if node.op_type == "MatMul" and node.input[1] in constants and len(users) == 1:
            add = users[0]
            bias = [name for name in add.input if name != node.output[0]]
            if add.op_type == "Add" and len(bias) == 1 and bias[0] in constants:
                fused.append(helper.make_node("Gemm", [node.input[0], node.input[1], bias[0]], [add.output[0]], name=f"{node.name}_gemm"))
                absorbed.add(id(add))
                continue
        fused.append(node)
    del graph.node[:]
    graph.node.extend(fused)
    return model


def matrix_products(model: Any) -> list[str]:
    """Nodes that multiply their input by a constant matrix: MatMul and Gemm (not transposing the input) with constant
    weights, and a pointwise convolution (1x1 kernel, stride 1, no padding, one group: a matrix product over every
    pixel, as MobileNet's expand and project convolutions and MobileNetV3's Dense-like head are)."""
    constant = {initializer.name: initializer for initializer in model.graph.initializer}

    def pointwise(node: Any) -> bool:
        kernel = constant[node.input[1]].dims[2:]
        attributes = node_attributes(node)
        return (len(kernel) > 0 and all(size == 1 for size in kernel) and attributes.get("group", 1) == 1 and not any(attributes.get("pads", ()))
                and all(stride == 1 for stride in attributes.get("strides", ())))

    def multiplies(node: Any) -> bool:
        if len(node.input) < 2 or node.input[1] not in constant:
            return False
        if node.op_type == "MatMul":
            return len(constant[node.input[1]].dims) == 2
        if node.op_type == "Gemm":
            attributes = node_attributes(node)
            return (attributes.get("transA", 0) == 0 and attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0
                    and (len(node.input) < 3 or node.input[2] in constant))
        return node.op_type == "Conv" and (len(node.input) < 3 or node.input[2] in constant) and pointwise(node)

    return [node.name for node in model.graph.node if multiplies(node)]


def as_matmuls(model: Any, names: list[str]) -> tuple[list[str], list[str]]:
    """Rewrites the named matrix products (`matrix_products`) in place as MatMul [+ Add] (a pointwise convolution between
    a Transpose to channels-last and one back, where the MatMul multiplies every pixel's channels), the form ONNX
    Runtime's dynamic quantizer takes: it has no Gemm, and its ConvInteger ran slower than the fp32 file (MobileNetV3Small's
    head 0.85x), where the MatMul form of EfficientNetB0's 20 pointwise convolutions over 2x2 and 1x1 maps, fused into
    DynamicQuantizeMatMul, ran as fast as them in float at 72% of their size (bench/RESULTS.md). A Gemm here is often a
    MatMul + Add that `fuse_matmul_add_into_gemm` joined for the static quantizer (QGemm); the layers chosen for
    per-call ranges are split again. The outputs keep their names, and each new node is named after the node it replaces
    (so it stays with its Keras layer). Returns the new nodes and the MatMuls among them."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constant = {initializer.name: initializer for initializer in graph.initializer}
    chosen = set(names)
    nodes, added, matmuls = [], [], []
    for node in graph.node:
        if node.name not in chosen or node.op_type == "MatMul":
            nodes.append(node)
            if node.name in chosen:
                matmuls.append(node.name)
            continue
        weight = numpy_helper.to_array(constant[node.input[1]])
        attributes = node_attributes(node)
        conv = node.op_type == "Conv"
        matrix = weight.reshape(weight.shape[0], -1).T if conv else (weight.T if attributes.get("transB", 0) else weight)
        prefix, output = node.name, node.output[0]
        matrix_name = f"{node.input[1]}/matrix"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(matrix), matrix_name))
        rewritten = []
        operand = node.input[0]
        rank = weight.ndim
        if conv:
            rewritten.append(helper.make_node("Transpose", [operand], [f"{prefix}/channels_last"], name=f"{prefix}/Transpose",
                                              perm=[0, *range(2, rank), 1]))
            operand = f"{prefix}/channels_last"
        product = f"{prefix}/product" if conv or len(node.input) > 2 else output
        rewritten.append(helper.make_node("MatMul", [operand, matrix_name], [product], name=f"{prefix}/MatMul"))
        matmuls.append(f"{prefix}/MatMul")
        if len(node.input) > 2:
            summed = f"{prefix}/biased" if conv else output
            rewritten.append(helper.make_node("Add", [product, node.input[2]], [summed], name=f"{prefix}/Add"))
            product = summed
        if conv:
            rewritten.append(helper.make_node("Transpose", [product], [output], name=f"{prefix}/Transpose_back",
                                              perm=[0, rank - 1, *range(1, rank - 1)]))
        nodes += rewritten
        added += [new.name for new in rewritten]
    del graph.node[:]
    graph.node.extend(nodes)
    return added, matmuls


def node_attributes(node: Any) -> dict[str, Any]:
    """A node's attributes by name, as Python values."""
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def topologically_sorted(model: Any) -> Any:
    """Nodes reordered so each comes after the producers of its inputs, as the ONNX checker requires (ORT's float16
    converter appends its input casts at the end of the node list)."""
    graph = model.graph
    available = {tensor.name for tensor in graph.initializer} | {value.name for value in graph.input} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise ValueError("graph has a cycle or an input nothing produces")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if all(node is not done for done in ready)]
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def first_node_of_type(model: Any, op_type: str) -> str | None:
    return next((node.name for node in model.graph.node if node.op_type == op_type), None)


def load_onnx_checked(path: Path) -> Any:
    """Parse an ONNX file without loading external data, refusing external-data paths that leave its folder."""
    import onnx
    from google.protobuf.message import DecodeError

    from edgecnn.core.errors import EdgecnnError
    from edgecnn.core.manifest import inside_folder

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise EdgecnnError(f"not a valid ONNX file: {exc}", path) from None
    if not model.graph.node and not model.graph.input:
        raise EdgecnnError("not a valid ONNX file: no graph", path)
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
            inside_folder(Path(path).parent, location, path)
    return model
