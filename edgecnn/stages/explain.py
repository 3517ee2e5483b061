"""`verify --explain ARTIFACT`: where an artifact's numbers part from the Keras model's, layer by layer.

Each Keras layer's output is compared with the artifact's tensor for that layer on a few hundred test images: ONNX
through extra graph outputs (for a QDQ file the dequantized value the next layer reads), TFLite through LiteRT's
preserved intermediate tensors (which needs the reference kernels: XNNPACK is off for this run, and the output says
so). Converter names are mapped back to Keras layers (core/layers.py); a layer with no tensor of its own (Dropout,
a folded BatchNorm) shows what it was folded into. The table gives SQNR in dB, max |Δ| and the first layer whose SQNR
falls below the floor for the artifact's precision: in an fp32 file that is a conversion bug, in an int8 file the
place quantization hurts first — the layers `--keep-float` should name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.data import load_dataset
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.files import write_json_atomic
from edgecnn.core.layers import LayerMap, keras_layer_names, onnx_node_layers
from edgecnn.core.manifest import ArtifactEntry, ArtifactFormat, Manifest, Precision, load_manifest
from edgecnn.core.provenance import library_versions, utc_now
from edgecnn.core.records import encode
from edgecnn.runners import encode_images, runtime_packages

# SQNR below which a layer's output no longer looks like the Keras layer's, per precision: fp32 conversions measure
# above 60 dB on every layer of the seed CNN; fp16 keeps ~11 bits (≈ 66 dB ideal, 40 leaves room); int8 keeps 8 bits
# of range (≈ 48 dB ideal), and under 20 dB one part in ten of the signal is noise.
SQNR_FLOORS_DB = {Precision.FP32: 60.0, Precision.FP16: 40.0, Precision.DYNAMIC: 20.0, Precision.INT8: 20.0}
# layers a converter folds into the tensor of the layer before them (or that compute nothing at inference)
FOLDABLE = {"BatchNormalization", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ReLU",
            "Activation", "ZeroPadding2D", "Identity"}
SQNR_CAP_DB = 200.0  # identical tensors: reported as this, not as infinity (JSON has no infinity)
DEFAULT_IMAGES = 300


@dataclass(frozen=True)
class ExplainOptions:
    manifest: Path = Path("exports/manifest.json")
    artifact: str = ""
    data: str | None = None
    images: int = DEFAULT_IMAGES


@dataclass(frozen=True)
class LayerComparison:
    layer: str
    kind: str  # the Keras layer class
    sqnr_db: float | None = None  # None: no tensor of its own in the artifact
    max_abs_diff: float | None = None
    folded_into: str | None = None
    below_floor: bool = False
    note: str = ""


@dataclass(frozen=True)
class ExplainResult:
    artifact: str
    precision: Precision
    images: int
    floor_db: float
    rows: tuple[LayerComparison, ...]
    note: str
    report_path: Path
    chart_path: Path

    @property
    def first_below_floor(self) -> LayerComparison | None:
        return next((row for row in self.rows if row.below_floor), None)

    def worst(self, count: int) -> list[LayerComparison]:
        measured = [row for row in self.rows if row.sqnr_db is not None]
        return sorted(measured, key=lambda row: row.sqnr_db if row.sqnr_db is not None else SQNR_CAP_DB)[:count]


def explain(options: ExplainOptions) -> ExplainResult:
    if options.images < 1:
        raise EdgecnnError(f"must be at least 1, got {options.images}", "--explain-images")
    manifest = load_manifest(options.manifest)
    entry = find_artifact(manifest, options.artifact)
    model = manifest.source_model()
    dataset = load_dataset(model.data_request(options.data))
    images = dataset.x_test[: options.images]
    keras_model = load_keras(manifest)
    layers = keras_layer_names(keras_model)
    kinds = {layer.name: type(layer).__name__ for layer in keras_model.layers}
    reference = keras_layer_outputs(keras_model, model.description.model_input(images))
    artifact_path = manifest.open(entry, True)
    if entry.format is ArtifactFormat.ONNX:
        found, note = onnx_layer_outputs(artifact_path, images, model.description, layers), "ONNX Runtime, CPU"
    else:
        found, note = tflite_layer_outputs(artifact_path, images, model.description, layers), (
            "LiteRT with its reference kernels: XNNPACK is off while intermediate tensors are preserved")
    floor = SQNR_FLOORS_DB[entry.precision]
    rows = tuple(compare_layers(layers, kinds, reference, found, floor))
    out = manifest.folder
    report_path, chart_path = out / f"explain_{entry.name}.json", out / f"explain_{entry.name}.png"
    result = ExplainResult(entry.name, entry.precision, int(len(images)), floor, rows, note, report_path, chart_path)
    write_json_atomic(report_path, {
        "created": utc_now(), "artifact": entry.name, "sha256": entry.sha256, "precision": entry.precision.value, "runtime": note,
        "images": result.images, "data": encode(dataset.describe()), "floor_db": floor,
        "first_below_floor": result.first_below_floor.layer if result.first_below_floor else None,
        "layers": [asdict(row) for row in rows], "versions": library_versions(runtime_packages()),
    })
    from edgecnn.core.plots import plot_layer_sqnr

    plot_layer_sqnr([(row.layer, row.sqnr_db) for row in rows if row.sqnr_db is not None], floor, chart_path, f"{entry.name}: SQNR per layer")
    return result


def find_artifact(manifest: Manifest, name: str) -> ArtifactEntry:
    for entry in manifest.artifacts:
        if entry.name == name:
            return entry
    raise EdgecnnError(f"no artifact {name!r} in {manifest.path}; it lists {', '.join(entry.name for entry in manifest.artifacts)}", "--explain")


def load_keras(manifest: Manifest) -> Any:
    from edgecnn.core.backend import load_model

    return load_model(manifest.resolve(manifest.source_model().path))


def keras_layer_outputs(keras_model: Any, inputs: np.ndarray, batch: int = 100) -> dict[str, np.ndarray]:
    """Every layer's output for `inputs` (the model's float input), from one model with all of them as outputs."""
    from edgecnn.core.backend import import_keras

    keras = import_keras()
    layers = [layer for layer in keras_model.layers if type(layer).__name__ != "InputLayer"]
    probe = keras.Model(inputs=keras_model.inputs, outputs=[layer.output for layer in layers])
    chunks = [probe([inputs[start : start + batch]], training=False) for start in range(0, len(inputs), batch)]
    return {layer.name: np.concatenate([np.asarray(chunk[index]) for chunk in chunks]) for index, layer in enumerate(layers)}


def onnx_layer_outputs(path: Path, images: np.ndarray, description: Any, layers: list[str]) -> dict[str, np.ndarray]:
    """Each layer's last tensor in the graph (after its DequantizeLinear in a QDQ file), as extra graph outputs."""
    import onnx
    import onnxruntime as ort

    from edgecnn.runners.onnxrt import onnx_tensor_spec

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tensors: dict[str, str] = {}
    node_layers = onnx_node_layers(model, layers, by_weights=False)
    weights = {initializer.name for initializer in model.graph.initializer}
    for node in model.graph.node:
        layer = node_layers[node.name]
        if layer is None or node.input[0] in weights:  # a weight's (de)quantization is not the layer's output
            continue
        if node.op_type == "QuantizeLinear":  # the quantizer removed the layer's own op (a ReLU6 became the int8 range)
            tensors[layer] = dequantized(node.input[0], consumers)
        elif node.op_type != "DequantizeLinear":
            tensors[layer] = dequantized(node.output[0], consumers)
    output_names = {output.name for output in model.graph.output}
    typed = {info.name: info for info in list(model.graph.value_info) + list(model.graph.output)}
    if layers:
        tensors[layers[-1]] = model.graph.output[0].name  # the model's output is its last layer's, whatever its node is named
    for name in tensors.values():
        if name not in output_names:
            model.graph.output.append(typed.get(name) or onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            output_names.add(name)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = encode_images(images, onnx_tensor_spec(session.get_inputs()[0]), description)
    wanted = list(dict.fromkeys(tensors.values()))
    values = dict(zip(wanted, session.run(wanted, {session.get_inputs()[0].name: feed}), strict=True))
    return {layer: np.asarray(values[name], dtype=np.float32) for layer, name in tensors.items()}


def dequantized(name: str, consumers: dict[str, list[Any]]) -> str:
    """What the next layer reads: a QDQ file quantizes a tensor and dequantizes it again before its consumers."""
    for quantize in (node for node in consumers.get(name, []) if node.op_type == "QuantizeLinear"):
        for dequantize in (node for node in consumers.get(quantize.output[0], []) if node.op_type == "DequantizeLinear"):
            return str(dequantize.output[0])
    return name


def tflite_layer_outputs(path: Path, images: np.ndarray, description: Any, layers: list[str]) -> dict[str, np.ndarray]:
    """Each layer's last operator output, read from LiteRT's preserved tensors and dequantized where it is integer."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgecnn.runners.litert import tensor_spec

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [len(images), *detail["shape"][1:]])
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], encode_images(images, tensor_spec(interpreter.get_input_details()[0]), description))
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


def compare_layers(layers: list[str], kinds: dict[str, str], reference: dict[str, np.ndarray], found: dict[str, np.ndarray],
                   floor: float) -> list[LayerComparison]:
    """One row per Keras layer. A converter folds a run of layers — a convolution with its BatchNorm and activation,
    Dropout into nothing — into one tensor, and may name it after any layer of the run: each run (a layer and the
    foldable layers after it) is compared once, at its last layer that has a tensor of its own; the others say what
    they were folded into."""
    runs: list[list[str]] = []
    for layer in layers:
        if not runs or kinds.get(layer) not in FOLDABLE:
            runs.append([layer])
        else:
            runs[-1].append(layer)
    rows: list[LayerComparison] = []
    for run in runs:
        candidates = ((layer, aligned(found[layer], reference[layer])) for layer in reversed(run) if layer in found)
        match, value = next(((layer, value) for layer, value in candidates if value is not None), (None, None))
        for layer in run:
            kind = kinds.get(layer, "?")
            if match is None or value is None:
                rows.append(LayerComparison(layer, kind, note="no tensor named after it (the converter renamed or fused it)"))
            elif layer != match:
                rows.append(LayerComparison(layer, kind, folded_into=match))
            else:
                sqnr = sqnr_db(reference[layer], value)
                below = sqnr < floor and not any(row.below_floor for row in rows)
                rows.append(LayerComparison(layer, kind, round(sqnr, 2), float(np.max(np.abs(reference[layer] - value))), below_floor=below))
    return rows


def aligned(value: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
    """The artifact's tensor in Keras' layout: as is, NCHW → NHWC (ONNX keeps convolutions in NCHW), or reshaped when
    only the grouping differs (a flattened tensor). When both layouts fit (C = H = W), the closer one is the layout."""
    candidates = []
    if value.shape == reference.shape:
        candidates.append(value)
    if value.ndim == 4 and value.transpose(0, 2, 3, 1).shape == reference.shape:
        candidates.append(value.transpose(0, 2, 3, 1))
    if not candidates and value.size == reference.size:
        candidates.append(value.reshape(reference.shape))
    return max(candidates, key=lambda candidate: sqnr_db(reference, candidate), default=None)


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio: the reference's energy over the difference's, in dB (capped when equal)."""
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    noise = float(np.sum((reference.astype(np.float64) - value.astype(np.float64)) ** 2))
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return min(SQNR_CAP_DB, 10.0 * math.log10(signal / noise))
