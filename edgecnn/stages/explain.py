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
from edgecnn.core.layers import keras_layer_names
from edgecnn.core.manifest import ArtifactEntry, Manifest, Precision, load_manifest
from edgecnn.core.provenance import library_versions, utc_now
from edgecnn.core.records import encode
from edgecnn.runners import RunOptions, open_runner, runtime_packages

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
    run: RunOptions = RunOptions()  # --runtime picks the runtime whose computation is compared (default: the format's own)


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
    runner = open_runner(entry.format, artifact_path, options.run, model.description, options.run.runtimes[0] if options.run.runtimes else None)
    try:
        found, note = runner.layer_outputs(images, layers), runner.layer_outputs_note
    finally:
        runner.close()
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
