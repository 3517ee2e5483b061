"""ONNX converters: fp32 (tf2onnx), fp16 (ONNX Runtime's float16 converter) and static int8 (onnxruntime.quantization),
whose matrix products may take per-call activation ranges instead (its dynamic quantization).

Each takes the frozen `ExportInputs` (and, for derived precisions, the fp32 file it converts from) and returns the
staged file with the details the manifest records about how it was made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn.core.artifact import INPUT_NAME, OUTPUT_NAME
from edgecnn.core.artifact_details import ArtifactDetails, Float16Record, QuantizationRecord, SessionCheck
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import ConversionRefused, EdgecnnError, converter_refusal, training_side
from edgecnn.core.layers import keras_layer_names, onnx_node_layers, with_orphans
from edgecnn.core.manifest import Precision
from edgecnn.core.records import encode
from edgecnn.stages.export.artifacts import ArtifactSpec, ExportOptions, Quantizer
from edgecnn.stages.export.inputs import Converted, ExportInputs

INT16_PER_LAYER = True  # A16W8 per node: ONNX Runtime's QDQ quantizer mixes uint16 and uint8 activations


def convert(spec: ArtifactSpec, inputs: ExportInputs, base: Path | None) -> Converted:
    """fp32 from the Keras model; fp16 and int8 from `base`, the fp32 file the format table names as their base."""
    if spec.precision is Precision.FP32:
        return convert_fp32(spec, inputs)
    if base is None:
        raise ValueError(f"{spec.name} is converted from its fp32 base, and none was given")
    if spec.precision is Precision.INT8:
        return quantize_int8(spec, inputs, base)
    return convert_fp16(spec, inputs, base)


def convert_fp32(spec: ArtifactSpec, inputs: ExportInputs) -> Converted:
    with training_side("ONNX export"):
        import tf2onnx

    from edgecnn.core.onnx_graph import identity_reshapes_removed, slim_if_identical, valid_pools_after_zero_pads

    description = inputs.description
    tf_function, signature = serving_function(inputs.keras_model, description, uint8_input=spec.uint8_input)
    from tensorflow.python.util import deprecation

    with deprecation.silence():  # TF1 freezing helpers tf2onnx calls on this path warn on every export; nothing to act on
        graph_def, input_name, output_name = frozen_graph(tf_function, signature)
    with converter_refusal("tf2onnx"), deprecation.silence():
        model_proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[input_name], output_names=[output_name], opset=inputs.options.opset,
                                                        tensors_to_rename={input_name: INPUT_NAME, output_name: OUTPUT_NAME},
                                                        custom_op_handlers=OP_HANDLERS)
    check_converted(model_proto)
    probe = raw_pixels(inputs.calibration[:64], description) if spec.uint8_input else description.model_input(inputs.calibration[:64])
    model_proto, cleanup = slim_if_identical(model_proto, probe)
    rewritten = valid_pools_after_zero_pads(model_proto)
    model_proto, reshapes = identity_reshapes_removed(model_proto)
    metadata = inputs.metadata | (
        {"input_layout": f"[{', '.join(map(str, ('batch', *raw_pixel_shape(description))))}]",
         "input_scaling": f"uint8 raw pixels 0-255; the graph computes {description.scaling_text()}"} if spec.uint8_input else {}
    )
    details = ArtifactDetails(graph_cleanup=cleanup, valid_pools_after_zero_pads=tuple(rewritten), identity_reshapes_removed=tuple(reshapes))
    converted = save_checked(model_proto, spec, inputs, metadata, details)
    return default_session_check(converted, probe, inputs)


def default_session_check(converted: Converted, probe: np.ndarray, inputs: ExportInputs) -> Converted:
    """The fp32 file must agree with Keras as apps open it: under ONNX Runtime's default session options. On the probe
    images its max |Δp| must meet verify's fp32 bound; when it does not, the responsible optimizer pass is bisected and
    the smallest graph that shows it is written beside the file for an upstream report (verify then FAILs the file
    with that reason)."""
    from edgecnn.measure.thresholds import thresholds_for
    from edgecnn.runners.base import Arithmetic
    from edgecnn.runners.onnxrt_passes import diagnose, run_cpu

    bound = thresholds_for(Precision.FP32, Arithmetic.FP32, inputs.bounds).atol or 0.0
    expected = inputs.keras_probabilities(inputs.calibration[: len(probe)])
    description = inputs.description

    def max_abs_diff(output: np.ndarray) -> float:
        return float(np.abs(description.probabilities(output).astype(np.float64) - expected).max())

    feeds = {INPUT_NAME: probe}
    measured = max_abs_diff(run_cpu(str(converted.path), feeds)[0])
    check = SessionCheck(measured, bound, len(probe), measured <= bound)
    extras = converted.extras
    if measured > bound:
        finding = diagnose(converted.path, feeds, max_abs_diff, bound, converted.path.parent)
        check = replace(check, finding=finding)
        if finding.reproduction:
            reproduction = converted.path.parent / finding.reproduction
            extras = (*extras, reproduction, reproduction.with_suffix(".npz"))
    return replace(converted, details=replace(converted.details, default_session_check=check), extras=extras)


REMOVABLE_ACTIVATIONS = ("Relu", "Clip")  # what ORT's QDQ quantizer folds into the node before (QDQKeepRemovableActivations)
QUANTIZATION_NODES = ("QuantizeLinear", "DequantizeLinear")


def node_groups(model: Any, layers: list[str]) -> dict[str, str | None]:
    """Each node's layer for keeping layers in float, alike in the graph the quantizer reads and in the QDQ file it
    writes: every node has one (`with_orphans`); a removable activation goes with the node before it, as the quantizer
    folds it there (else keeping a convolution in float would still quantize its output, before the Relu); and a
    (de)quantization node goes with what it reads, so that a QDQ file groups as the float graph did."""
    nodes = list(model.graph.node)
    joins = frozenset(node.name for node in nodes if node.op_type in REMOVABLE_ACTIVATIONS + QUANTIZATION_NODES)
    return with_orphans(((node.name, node.input, node.output) for node in nodes), onnx_node_layers(model, layers), joins)


def layers_with_nodes(path: Path, layers: list[str]) -> set[str | None]:
    """The layers whose nodes the quantizer kept (and can exclude): what the graph has, less what it fused into QDQ ranges."""
    import onnx

    model = onnx.load(str(path))
    groups = node_groups(model, layers)
    return {groups[node.name] for node in model.graph.node if node.op_type not in QUANTIZATION_NODES}


def frozen_graph(tf_function: Any, signature: list[Any]) -> tuple[Any, str, str]:
    """The serving function's graph with every captured value frozen into a constant, and its input and output tensor
    names. tf2onnx's `from_function` takes each captured non-variable tensor for an input (a Keras 3 `Normalization`
    built with a mean and variance, as EfficientNet's, gave files that asked apps for the mean and variance); frozen,
    the only placeholder left is the image."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with converter_refusal("TensorFlow's graph freezing"):
        frozen = convert_variables_to_constants_v2(tf_function.get_concrete_function(*signature), aggressive_inlining=True)
    inputs, outputs = [tensor.name for tensor in frozen.inputs], [tensor.name for tensor in frozen.outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConversionRefused(f"the frozen serving graph has inputs {inputs} and outputs {outputs}; edgecnn writes files with one image input and one output")
    return inlinable(frozen.graph.as_graph_def()), inputs[0], outputs[0]


def inlinable(graph_def: Any) -> Any:
    """Keras 3 runs grouped convolutions (ConvNeXt's depthwise 7x7) through a `jit_compile=True` function, which
    TensorFlow never inlines: tf2onnx then leaves a StatefulPartitionedCall no runtime knows. Without the XLA marks
    the function inliner tf2onnx runs (grappler's `function` pass) puts the plain Conv2D in its place."""
    marks = ("_XlaMustCompile", "_noinline")
    for holder in [*graph_def.node, *graph_def.library.function]:
        for mark in marks:
            if mark in holder.attr:
                del holder.attr[mark]
    return graph_def


def complementary_error_function(ctx: Any, node: Any, name: str, args: Any) -> None:
    """tf2onnx handler for TensorFlow's Erfc, which it lacks (Keras' exact GELU, as in ConvNeXt): erfc(x) = 1 - erf(x)."""
    from onnx import helper

    dtype = helper.tensor_dtype_to_np_dtype(ctx.get_dtype(node.input[0]))
    erf = ctx.make_node("Erf", [node.input[0]])
    one = ctx.make_const(f"{node.name}/one", np.ones((), dtype=dtype))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


OP_HANDLERS: dict[str, tuple[Callable[..., None], list[Any]]] = {"Erfc": (complementary_error_function, [])}


def check_converted(model_proto: Any) -> None:
    """What tf2onnx gives must be a file an app can run with the image alone: every op an ONNX operator (an op it could
    not convert is named, with the layer it came from), and no input but the image (a captured constant never
    becomes an input)."""
    import onnx

    from edgecnn.core.onnx_graph import graph_inputs

    opset = next(entry.version for entry in model_proto.opset_import if entry.domain in ("", "ai.onnx"))
    for node in model_proto.graph.node:
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type, max_inclusive_version=opset):
            raise ConversionRefused(f"tf2onnx cannot convert TensorFlow's {node.op_type} op (at {node.name.rsplit('/', 1)[0]})")
    names = graph_inputs(model_proto)
    if names != [INPUT_NAME]:
        extra = [name for name in names if name != INPUT_NAME]
        raise ConversionRefused(f"tf2onnx gave a graph with inputs {names}: {', '.join(extra)} should have been constants")


def convert_fp16(spec: ArtifactSpec, inputs: ExportInputs, base: Path) -> Converted:
    """fp16 weights and compute for GPUs (ONNX Runtime's float16 converter); input and output stay fp32, so an app
    feeds it exactly like the fp32 file. On an H200 it ran 1.7x the fp32 throughput at -0.01 points (see RESULTS)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgecnn.core.onnx_graph import topologically_sorted

    model_proto = topologically_sorted(convert_float_to_float16(onnx.load(base), keep_io_types=True))
    details = ArtifactDetails(float16=Float16Record("onnxruntime.transformers.float16", keep_io_types=True))
    return save_checked(model_proto, spec, inputs, inputs.metadata, details)


def quantize_int8(spec: ArtifactSpec, inputs: ExportInputs, base: Path) -> Converted:
    """Static int8 (QDQ), calibrated on training images, by the quantizer the options name (ONNX Runtime's
    `quantize_static` with the calibration method and weight granularity they name, or NNCF), with the Keras layers
    kept in float, and those with 16-bit activations, that they name (recorded in the file and manifest).

    Without --keep-float the model's first convolution stays fp32 (the search's first candidate): on the seed CNN it
    has one input channel (a 9-tap dot product), holds 320 of the 600k weights, and ONNX Runtime's int8 kernel for it
    measured slower than fp32 (25 vs 29 µs per image at batch 1).
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgecnn.core.onnx_graph import fuse_matmul_add_into_gemm

    fused = inputs.staging / "int8-fused.onnx"
    onnx.save(fuse_matmul_add_into_gemm(onnx.load(base)), fused)
    prepared = inputs.staging / "int8-prepared.onnx"
    quant_pre_process(str(fused), str(prepared), skip_symbolic_shape=True)
    prepared_model = onnx.load(prepared)
    groups = node_groups(prepared_model, keras_layer_names(inputs.keras_model))
    options = inputs.options
    kept_layers = list(options.keep_float) if options.keep_float is not None else first_float_candidate(prepared_model, groups)
    kept_nodes = nodes_of_layers(kept_layers, groups, "--keep-float")
    int16_nodes = [node for node in nodes_of_layers(list(options.keep_int16), groups, "--keep-int16") if node not in kept_nodes]
    by_nncf = options.quantizer is Quantizer.NNCF  # NNCF counts its subset in dataset items: one image each
    reduce_range, reduce_range_reason = weight_range(options)
    calibration = ImageCalibrationReader(inputs.calibration, description=inputs.description, batch_size=1 if by_nncf else 50)
    if by_nncf:
        quantized, calibration_method, quantizer = quantized_by_nncf(prepared_model, calibration, kept_nodes)
    else:
        path = inputs.staging / f"int8-quantized-{spec.filename(inputs.model_entry.stem)}"
        chosen = replace(options, reduce_range=reduce_range)
        dynamic = per_call_candidates(prepared, options.keep_dynamic, groups)
        quantized, calibration_method, quantizer = quantized_by_onnxruntime(dynamic.prepared, calibration, kept_nodes + dynamic.nodes, int16_nodes,
                                                                            path, chosen)
        if dynamic.matmuls:
            quantized = with_per_call_ranges(path, dynamic.matmuls, chosen)
    activations = "uint8" + (" (uint16 in the int16 layers)" if int16_nodes else "") + (
        " (ranges per call in the dynamic layers)" if options.keep_dynamic else "")
    quantization = QuantizationRecord(weights=f"int8 {'per-channel' if options.per_channel else 'per-tensor'}",
                                      calibration_method=calibration_method, kept_float_layers=tuple(kept_layers),
                                      kept_float_nodes=tuple(kept_nodes), format="QDQ", activations=activations, quantizer=quantizer,
                                      int16_layers=options.keep_int16, reduce_range=reduce_range, reduce_range_reason=reduce_range_reason,
                                      dynamic_layers=options.keep_dynamic)
    details = ArtifactDetails(quantization=quantization, calibration=inputs.calibration_record())
    return save_checked(quantized, spec, inputs, inputs.metadata | {"quantization": json.dumps(encode(quantization), sort_keys=True)}, details)


def weight_range(options: ExportOptions) -> tuple[bool, str]:
    """Whether ONNX Runtime's quantizer keeps int8 weights in 7 bits (`reduce_range`), and why ("" for NNCF, which sets
    its own ranges). Without an option it does so where the exporting CPU is x86 without VNNI: there ONNX Runtime's
    u8s8 kernels sum each pair of products in 16 bits (VPMADDUBSW), which saturates on 8-bit weights. On an AVX2 host,
    plain int8 agreement with fp32 on 5,000 unseen test images went 96.76% -> 99.38% (NASNetMobile), 98.64% -> 99.22%
    (MobileNetV2), 97.60% -> 98.36% (MobileNetV3Small), 95.94% -> 96.48% (EfficientNetB0) with 7-bit weights
    (bench/RESULTS.md). Where the CPU has VNNI (or is not x86) files keep 8-bit weights: the earlier acceptance figures
    were measured with them, and that file is what runs best there."""
    if options.quantizer is Quantizer.NNCF:
        return False, ""
    if options.reduce_range is not None:
        return options.reduce_range, "--reduce-range" if options.reduce_range else "--no-reduce-range"
    from edgecnn.core.provenance import Int8Sums, int8_dot_product

    return {
        Int8Sums.SATURATING: (True, "default: exported on an x86 CPU without VNNI, where 8-bit weights saturate ONNX Runtime's integer kernels"),
        Int8Sums.VNNI: (False, "default: exported on a CPU with VNNI"),
        Int8Sums.UNKNOWN: (False, "default: exported on a CPU that is not x86 (or whose flags are unreadable)"),
    }[int8_dot_product()]


A16W8_OPSET = 21  # the first opset whose QuantizeLinear/DequantizeLinear take 16-bit integers


def quantized_by_onnxruntime(prepared: Path, calibration: ImageCalibrationReader, kept_nodes: list[str], int16_nodes: list[str], path: Path,
                             options: ExportOptions) -> tuple[Any, str, str]:
    """ONNX Runtime's `quantize_static`: the quantized model, the calibration method and the quantizer's name. The
    int16 nodes' outputs are quantized to uint16 (A16W8: their weights stay int8) through its tensor overrides, which
    its mixed-precision fixer completes with the conversions at each boundary with the uint8 rest; such a file is
    written in opset 21, converted here so that ONNX Runtime need not do it with a warning."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod as OrtCalibrationMethod
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra_options = {}
    if int16_nodes:
        prepared = upgraded_for_a16w8(prepared)
        extra_options = {"TensorQuantOverrides": int16_overrides(onnx.load(prepared), int16_nodes)}
    quantize_static(
        str(prepared),
        str(path),
        calibration,
        quant_format=QuantFormat.QDQ,
        per_channel=options.per_channel,
        reduce_range=options.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept_nodes,
        calibrate_method=getattr(OrtCalibrationMethod, {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}[options.calibration_method.value]),
        extra_options=extra_options,
    )
    return onnx.load(path), options.calibration_method.value, f"onnxruntime {onnxruntime.__version__}"


def upgraded_for_a16w8(prepared: Path) -> Path:
    """The prepared graph in opset 21 (beside it), with its shapes inferred again (the converter may add nodes)."""
    import onnx
    from onnx import version_converter

    upgraded = prepared.with_name(f"{prepared.stem}-opset{A16W8_OPSET}.onnx")
    onnx.save(onnx.shape_inference.infer_shapes(version_converter.convert_version(onnx.load(prepared), A16W8_OPSET)), upgraded)
    return upgraded


@dataclass(frozen=True)
class PerCallCandidates:
    """The graph to quantize statically when layers take per-call ranges: their matrix products rewritten as MatMul
    (`prepared`), every node of those layers (kept out of the static quantizer) and the MatMuls that then take ONNX
    Runtime's dynamic quantization."""

    prepared: Path
    nodes: list[str]
    matmuls: list[str]


def per_call_candidates(prepared: Path, dynamic_layers: tuple[str, ...], groups: dict[str, str | None]) -> PerCallCandidates:
    """The layers' matrix products as plain MatMuls, written beside `prepared` (unchanged when no layer is named). A
    layer without one is refused: ONNX Runtime's dynamic kernels for any other convolution (ConvInteger) measured slower
    than the fp32 file (MobileNetV3Small's head: 0.85x), where its MatMul ones gave 1.12x."""
    if not dynamic_layers:
        return PerCallCandidates(prepared, [], [])
    import onnx

    from edgecnn.core.onnx_graph import as_matmuls, matrix_products

    model = onnx.load(prepared)
    products = set(matrix_products(model))
    nodes = nodes_of_layers(list(dynamic_layers), groups, "--keep-dynamic")
    lacking = [layer for layer in dynamic_layers if not any(groups[node] == layer and node in products for node in nodes)]
    if lacking:
        raise EdgecnnError(f"layer {lacking[0]!r} has no matrix product (a Dense layer, or a 1x1 convolution with stride 1 and no "
                           "padding): ONNX Runtime computes per-call ranges fast only for those", "--keep-dynamic")
    rewritten = [node for node in nodes if node in products]
    added, matmuls = as_matmuls(model, rewritten)
    path = prepared.with_name(f"{prepared.stem}-matmuls.onnx")
    onnx.save(model, path)
    return PerCallCandidates(path, [node for node in nodes if node not in rewritten] + added, matmuls)


def with_per_call_ranges(path: Path, matmuls: list[str], options: ExportOptions) -> Any:
    """The statically quantized file at `path` with the MatMuls in ONNX Runtime's dynamic quantization: int8 weights
    (per channel, in 7 bits where `reduce_range` says) and the activation's range measured on each call, which ONNX
    Runtime fuses into one DynamicQuantizeMatMul. A head whose pooled features vary image by image needs no calibrated
    range then: MobileNetV3Large's `conv_2` so, on 5,000 unseen images, agreed 99.24% against 99.20% in float, at 30% of
    fp32's size against 51%, and 1.29x fp32's batch-1 speed against 1.15x (bench/RESULTS.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgecnn.core.native_output import quiet_native_output

    dynamic = path.with_name(f"{path.stem}-dynamic.onnx")
    with quiet_native_output():  # it asks for pre-processing and whether the file is already quantized: it is, on purpose
        quantize_dynamic(str(path), str(dynamic), nodes_to_quantize=matmuls, op_types_to_quantize=["MatMul"], per_channel=options.per_channel,
                         reduce_range=bool(options.reduce_range), weight_type=QuantType.QInt8)
    return onnx.load(dynamic)


def matrix_product_layers(path: Path, layers: list[str], options: ExportOptions) -> set[str | None]:
    """The layers with a matrix product (`matrix_products`) in the fp32 file at `path`: those the search gives per-call
    ranges whenever they leave static int8 (none with NNCF, which places static ranges only)."""
    if options.quantizer is not Quantizer.ONNXRUNTIME:
        return set()
    import onnx

    from edgecnn.core.onnx_graph import matrix_products

    model = onnx.load(path)
    groups = node_groups(model, layers)
    return {groups[name] for name in matrix_products(model)}


def int16_overrides(model: Any, int16_nodes: list[str]) -> dict[str, Any]:
    """ONNX Runtime's TensorQuantOverrides for uint16 float outputs of the nodes, fixed by its mixed-precision helper
    (which adds the uint8↔uint16 conversions where they meet the rest of the graph)."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.execution_providers.qnn.mixed_precision_overrides_utils import MixedPrecisionTensorQuantOverridesFixer
    from onnxruntime.quantization.tensor_quant_overrides import TensorQuantOverridesHelper

    floats = {info.name for info in [*model.graph.value_info, *model.graph.output] if info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    chosen = set(int16_nodes)
    overrides = TensorQuantOverridesHelper({output: [{"quant_type": QuantType.QUInt16}] for node in model.graph.node if node.name in chosen
                                            for output in node.output if output in floats})
    if not overrides.empty():
        MixedPrecisionTensorQuantOverridesFixer.create_from_model(overrides, model, QuantType.QUInt8).apply(QuantType.QUInt8, False)
    return overrides.get_dict()


def quantized_by_nncf(prepared_model: Any, calibration: ImageCalibrationReader, kept_nodes: list[str]) -> tuple[Any, str, str]:
    """NNCF's post-training quantization with full bias correction (its mixed preset: symmetric weights, asymmetric
    activations), the kept nodes in its ignored scope: the quantized model, the calibration method and the quantizer's
    name. Its progress bars stay off the terminal (export prints its own)."""
    try:
        import nncf
    except ImportError:
        raise EdgecnnError('NNCF is not installed: pip install "edgecnn[openvino]"', "--quantizer") from None
    from edgecnn.core.native_output import quiet_native_output

    batches = list(iter(calibration.get_next, None))
    with quiet_native_output((1, 2)):
        quantized = nncf.quantize(prepared_model, nncf.Dataset(batches), subset_size=len(batches),
                                  fast_bias_correction=False, ignored_scope=nncf.IgnoredScope(names=kept_nodes))
    return quantized, "min/max (NNCF's own) with bias correction", f"nncf {nncf.__version__}"


def first_float_candidate(model: Any, node_layers: dict[str, str | None]) -> list[str]:
    """The layer of the model's first convolution: what int8 ONNX files keep in float unless --keep-float says otherwise."""
    from edgecnn.core.onnx_graph import first_node_of_type

    first_conv = first_node_of_type(model, "Conv")
    layer = node_layers.get(first_conv) if first_conv else None
    return [layer] if layer else []


def nodes_of_layers(kept_layers: list[str], groups: dict[str, str | None], option: str) -> list[str]:
    """The graph's nodes that go with the Keras layers (`node_groups`); a layer the option names without a node of its
    own is a user error."""
    empty = [layer for layer in kept_layers if layer not in groups.values()]
    if empty:
        raise EdgecnnError(f"layer {empty[0]!r} has no node of its own in the ONNX graph (the converter folded it into a neighbour)", option)
    return [node for node, layer in groups.items() if layer in kept_layers]


def save_checked(model_proto: Any, spec: ArtifactSpec, inputs: ExportInputs, metadata: dict[str, str], details: ArtifactDetails) -> Converted:
    """Stamp metadata (with the goldens and bound of the file's precision) and producer, save into the staging folder, and refuse anything the ONNX checker refuses."""
    import onnx

    del model_proto.metadata_props[:]
    for key, value in (inputs.metadata_for(spec.precision) | metadata).items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    model_proto.producer_name = "edgecnn"
    model_proto.producer_version = __version__
    model_proto.doc_string = f"edgecnn {spec.name}"
    path = inputs.staging / spec.filename(inputs.model_entry.stem)
    onnx.save(model_proto, path)
    with converter_refusal("the ONNX checker"):
        onnx.checker.check_model(str(path), full_check=True)
    opset = next(entry.version for entry in model_proto.opset_import if entry.domain in ("", "ai.onnx"))  # 21 where A16W8 needed it
    return Converted(path, replace(details, opset=opset))


class ImageCalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol over uint8 images: yields {'image': float batch} until exhausted."""

    def __init__(self, images: np.ndarray, description: ModelDescription, batch_size: int = 50) -> None:
        self.images = images
        self.description = description
        self.batch_size = batch_size
        self.rewind()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images), self.batch_size):
            yield {INPUT_NAME: self.description.model_input(self.images[start : start + self.batch_size])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = self._batches()


def raw_pixel_shape(description: ModelDescription) -> tuple[int, ...]:
    """What the uint8-input file takes per image: [H, W] for gray (like a gray PIL image), [H, W, 3] for RGB."""
    return description.image_shape[:2] if description.channels == 1 else description.image_shape


def raw_pixels(images: np.ndarray, description: ModelDescription) -> np.ndarray:
    return images.reshape(len(images), *raw_pixel_shape(description))


def serving_function(keras_model: Any, description: ModelDescription, uint8_input: bool) -> tuple[Any, list[Any]]:
    """A tf.function with named input/output (tf2onnx's from_keras breaks on Keras 3; from_function works). The
    uint8 variant applies the description's scaling inside the graph, as `ModelDescription.model_input` does."""
    from edgecnn.core.backend import import_tensorflow

    tf = import_tensorflow()
    if uint8_input:
        signature = [tf.TensorSpec([None, *raw_pixel_shape(description)], tf.uint8, name=INPUT_NAME)]
        offset, divisor = description.affine()
        uniform = len(set(divisor.tolist())) == 1

        @tf.function(input_signature=signature)
        def serve(image):
            pixels = tf.cast(image, tf.float32)
            if offset.any():
                pixels = pixels - tf.constant(offset)
            scaled = pixels / float(divisor[0]) if uniform else pixels / tf.constant(divisor)
            if description.channels == 1:
                scaled = tf.expand_dims(scaled, -1)
            return {OUTPUT_NAME: keras_model(scaled, training=False)}

    else:
        signature = [tf.TensorSpec([None, *description.image_shape], tf.float32, name=INPUT_NAME)]

        @tf.function(input_signature=signature)
        def serve(image):
            return {OUTPUT_NAME: keras_model(image, training=False)}

    return serve, signature
