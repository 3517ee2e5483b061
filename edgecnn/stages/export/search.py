"""`export --max-drop POINTS`: an int8 file within verify's int8 criteria, found by keeping the most sensitive Keras
layers in float (Olive's and OpenVINO's accuracy-aware quantization, per format).

The budget is verify's own: accuracy drop against Keras at most `max_drop` points and top-1 agreement at least
verify's int8 minimum. It is judged on a validation split that is neither the test split verify judges nor the
calibration images: the hold-out `train` recorded (found again from train.json's seed and fraction), else a seeded
slice of the training data. The first candidate is the format's default (ONNX keeps the first convolution, TFLite
nothing); when it misses, one pass of `verify --explain`'s comparison on the validation images ranks the layers by the
quantization noise they add (SQNR lost against the layer before), and layers are kept in float in that order until
the budget is met — or the search says it cannot be. Every step is recorded: layers kept, accuracy, agreement, size,
batch-1 latency.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.data import holdout_indices
from edgecnn.core.layers import keras_layer_names
from edgecnn.runners import infer_in_batches, open_runner
from edgecnn.stages.export.artifacts import ArtifactSpec
from edgecnn.stages.export.inputs import Converted, ExportInputs
from edgecnn.stages.timing import TimingSettings, measure

MIN_VALIDATION = 2000  # images the search judges on, where the data has them
SENSITIVITY_IMAGES = 300  # images the one sensitivity pass compares layer by layer
MAX_STEPS = 12
WEIGHTED = {"Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense"}


@dataclass(frozen=True)
class Validation:
    """Images the search judges on, with where they came from (the note in the manifest says which)."""

    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray
    indices: np.ndarray  # into the training images: calibration avoids them
    source: str


@dataclass(frozen=True)
class SearchStep:
    kept_float_layers: tuple[str, ...]
    accuracy: float
    drop_points: float
    agreement: float
    bytes: int
    p50_batch1_us: float
    within_budget: bool


@dataclass(frozen=True)
class SearchResult:
    max_drop_points: float
    min_agreement: float
    validation: str
    steps: tuple[SearchStep, ...]
    seconds: float

    @property
    def met(self) -> bool:
        return bool(self.steps) and self.steps[-1].within_budget

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"met": self.met, "steps": [asdict(step) for step in self.steps]}


def validation_split(train_images: np.ndarray, train_labels: np.ndarray, holdout: tuple[float, int] | None, seed: int) -> Validation:
    """train's recorded hold-out (fraction, seed) when there is one, else a seeded slice of the training images."""
    if holdout is not None and holdout[0] > 0:
        held, _ = holdout_indices(len(train_labels), *holdout)
        source = f"the {len(held):,} training images train held out for validation (fraction {holdout[0]:g}, seed {holdout[1]})"
    else:
        count = min(len(train_labels) // 2, max(MIN_VALIDATION, len(train_labels) // 10))
        held = np.sort(np.random.default_rng(seed + 1).permutation(len(train_labels))[:count])
        source = f"a seeded slice of {count:,} training images (seed {seed + 1}; the model's own hold-out is unknown)"
    return Validation(train_images[held], train_labels[held], np.asarray(held), source)


def search(spec: ArtifactSpec, inputs: ExportInputs, base: Path | None, first: Converted, validation: Validation,
           convert: Any, max_drop: float, min_agreement: float) -> tuple[Converted, SearchResult]:
    """Steps from the format's first candidate (already converted: `first`) until the budget is met."""
    started = time.perf_counter()
    keras_probabilities = keras_outputs_on(inputs, validation.images)
    keras_accuracy = float(np.mean(keras_probabilities.argmax(axis=1) == validation.labels))
    kept = list(first.details["quantization"]["kept_float_layers"])
    current = first
    steps = [evaluate(spec, current, inputs, validation, keras_probabilities, keras_accuracy, kept, max_drop, min_agreement)]
    if not steps[-1].within_budget:
        for run in sensitive_runs(spec, current.path, inputs, validation.images[:SENSITIVITY_IMAGES]):
            new = [layer for layer in run if layer not in kept]
            if not new or len(steps) > MAX_STEPS:
                continue
            kept += new
            candidate = convert(spec, replace(inputs, options=replace(inputs.options, keep_float=tuple(kept))), base)
            current = candidate
            steps.append(evaluate(spec, current, inputs, validation, keras_probabilities, keras_accuracy, kept, max_drop, min_agreement))
            if steps[-1].within_budget:
                break
    result = SearchResult(max_drop, min_agreement, validation.source, tuple(steps), round(time.perf_counter() - started, 2))
    return replace(current, details=current.details | {"accuracy_search": result.to_dict()}), result


def keras_outputs_on(inputs: ExportInputs, images: np.ndarray) -> np.ndarray:
    """The in-memory Keras model's probabilities (verify's keras_reference reads a cached file for the test split)."""
    outputs = np.concatenate([np.asarray(inputs.keras_model(inputs.description.model_input(images[start : start + 256]), training=False))
                              for start in range(0, len(images), 256)])
    return inputs.description.probabilities(outputs)


def evaluate(spec: ArtifactSpec, converted: Converted, inputs: ExportInputs, validation: Validation, keras_probabilities: np.ndarray,
             keras_accuracy: float, kept: list[str], max_drop: float, min_agreement: float) -> SearchStep:
    runner = open_runner(spec.format, converted.path, description=inputs.description)
    try:
        probabilities = inputs.description.probabilities(infer_in_batches(runner, validation.images))
        call = runner.bound_call(runner.encode(validation.images[:1]))
        p50 = measure(call, TimingSettings(warmup=20, iterations=200)).p50_us
    finally:
        runner.close()
    accuracy = float(np.mean(probabilities.argmax(axis=1) == validation.labels))
    agreement = float(np.mean(probabilities.argmax(axis=1) == keras_probabilities.argmax(axis=1)))
    drop = round(100.0 * (keras_accuracy - accuracy), 4)
    return SearchStep(tuple(kept), accuracy, drop, agreement, converted.path.stat().st_size, round(p50, 2),
                      drop <= max_drop and agreement >= min_agreement)


def sensitive_runs(spec: ArtifactSpec, path: Path, inputs: ExportInputs, images: np.ndarray) -> list[list[str]]:
    """Runs of layers (a convolution with what was folded into it) ordered by the quantization noise each adds — the
    SQNR lost against the run compared before it, largest first — from one layer-by-layer comparison of the int8 file
    with Keras (`verify --explain`). Each run lists its layers that have nodes of their own, which --keep-float takes."""
    from edgecnn.core.layers import LayerMap
    from edgecnn.core.manifest import ArtifactFormat
    from edgecnn.core.tflite_metadata import op_output_names
    from edgecnn.stages.explain import compare_layers, keras_layer_outputs, onnx_layer_outputs, tflite_layer_outputs

    layers = keras_layer_names(inputs.keras_model)
    kinds = {layer.name: type(layer).__name__ for layer in inputs.keras_model.layers}
    reference = keras_layer_outputs(inputs.keras_model, inputs.description.model_input(images))
    if spec.format is ArtifactFormat.ONNX:
        import onnx

        rows = compare_layers(layers, kinds, reference, onnx_layer_outputs(path, images, inputs.description, layers), floor=0.0)
        # the nodes the quantizer kept (and can exclude): what the prepared graph has, less what it fused into QDQ ranges
        names = [node.name for node in onnx.load(str(path)).graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    else:
        rows = compare_layers(layers, kinds, reference, tflite_layer_outputs(path, images, inputs.description, layers), floor=0.0)
        names = op_output_names(path.read_bytes())
    layer_map = LayerMap.build(names, layers)
    with_nodes = {layer_map.layer_of(name) for name in names}
    losses: dict[str, float] = {}
    previous: float | None = None
    for row in rows:
        if row.sqnr_db is not None:
            losses[row.layer] = (previous - row.sqnr_db) if previous is not None else -row.sqnr_db
            previous = row.sqnr_db
    runs = {layer: [row.layer for row in rows if row.layer == layer or row.folded_into == layer] for layer in losses}
    # only runs with weights: keeping a weightless op (a Multiply, a pooling) in float leaves its neighbours' quantized
    # inputs and outputs as they were, and measured no change at all on MobileNetV3's squeeze-excite multiplies
    weighted = [layer for layer in losses if any(kinds.get(member) in WEIGHTED for member in runs[layer])]
    ordered = sorted(weighted, key=lambda layer: losses[layer], reverse=True)
    return [found for found in ([layer for layer in runs[match] if layer in with_nodes] for match in ordered) if found]
