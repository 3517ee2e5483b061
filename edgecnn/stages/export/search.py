"""`export --max-drop POINTS`: an int8 file within verify's int8 criteria, found by lifting the most sensitive Keras
layers out of int8, to 16-bit activations first and then to float (Olive's and OpenVINO's accuracy-aware
quantization, per format, with LiteRT's and ONNX Runtime's 16-bit tier before float).

The budget is verify's own: accuracy drop against Keras at most `max_drop` points and top-1 agreement at least
verify's int8 minimum, each PASSing at 95% — and again on a second draw of as many images at the validation's
pessimistic rates (`paired_criteria`'s `second_draw`), so that a candidate that meets it PASSes verify's test split
about 9 times in 10 rather than half the time at the edge. It is judged on a validation split that is neither the test split verify judges nor the
calibration images: the user's `--validation-data` (images the model never saw), else the hold-out `train` recorded
(found again from train.json's seed and fraction), else a seeded slice of the training data. The first candidate is the format's default (ONNX keeps the first convolution, TFLite
nothing); when it misses, one pass of `verify --explain`'s comparison ranks the layers by the quantization noise they
add (SQNR lost against the layer before) on the validation images whose answer int8 changes most (`most_changed`), and
the most sensitive layers leave int8 run by run (a few steps): in ONNX each run first with 16-bit activations and int8
weights (A16W8: the file stays as small), then in float — its matrix products (Dense, a pointwise convolution)
instead, in either tier, with int8 weights and their input's range measured on each call (ONNX Runtime's dynamic
quantization, faster than float there; float only if nothing met the budget); TFLite cannot mix 16x8 and 8x8
operators, so the whole file in 16x8 is tried once before any layer goes to float (where matrix products take
per-call ranges too: LiteRT's hybrid kernels); a 16-bit candidate that meets the
budget is weighed against the float one (`keeps_16_bit`: CPUs have no fast 16-bit kernels). Where the noise is spread over many layers rather than
concentrated in a few (MobileNetV3's late blocks), that cannot meet the budget, and the search goes on as Polygraphy's
`debug precision` does: it bisects over the network's layer order for the shortest tail of the network that, lifted,
meets the budget (per tier, the whole network but its first layer first: if even the float one misses, the input and
output quantization alone miss it, and the search says so; where the float one misses only with its matrix products'
per-call ranges, the longest run of them at the network's end that meets keeps them: `per_call_suffix`). Every step is recorded: each lifted layer's tier, accuracy,
agreement, size, batch-1 latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact_details import SearchResult, SearchStep
from edgecnn.core.data import Dataset, holdout_indices
from edgecnn.core.errors import ConversionRefused, EdgecnnError
from edgecnn.core.layers import keras_layer_names
from edgecnn.core.verdict import DECIDED_MARGIN, Decision, overall, paired_criteria
from edgecnn.measure.timing import TimingSettings, measure
from edgecnn.runners import infer_in_batches, open_runner
from edgecnn.stages.export.artifacts import ArtifactSpec
from edgecnn.stages.export.inputs import Converted, ExportInputs, converter_for

MIN_VALIDATION = 2000  # images the search judges on, where the data has them
SENSITIVITY_IMAGES = 300  # images the one sensitivity pass compares layer by layer
RANKED_STEPS = 4  # candidates that add one sensitive layer each, before the search bisects over the layer order
MAX_STEPS = 16
WEIGHTED = {"Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense"}


@dataclass(frozen=True)
class Validation:
    """Images the search judges on, with where they came from (the note in the manifest says which)."""

    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray
    indices: np.ndarray  # into the training images: calibration avoids them
    source: str


def validation_split(train_images: np.ndarray, train_labels: np.ndarray, holdout: tuple[float, int] | None, seed: int) -> Validation:
    """train's recorded hold-out (fraction, seed) when there is one, else a seeded slice of the training images."""
    if holdout is not None and holdout[0] > 0:
        held, _ = holdout_indices(len(train_labels), *holdout)
        source = f"the {len(held):,} training images train held out for validation (fraction {holdout[0]:g}, seed {holdout[1]})"
    else:
        count = min(len(train_labels) // 2, max(MIN_VALIDATION, len(train_labels) // 10))
        held = np.sort(np.random.default_rng(seed + 1).permutation(len(train_labels))[:count])
        source = (f"a seeded slice of {count:,} training images (seed {seed + 1}; the model's own hold-out is unknown, and images "
                  "it was fit on can make int8 look better than it is: --validation-data judges on unseen ones)")
    return Validation(train_images[held], train_labels[held], np.asarray(held), source)


def validation_given(given: Dataset, data: Dataset) -> Validation:
    """Every image of --validation-data (both its splits): images the user knows the model never saw, as NNCF's accuracy
    control and Olive take an evaluation dataset. A search judged on training images the model fit ended at 99.2-99.3%
    agreement there and gave 98.6-98.7% on the test split, INCONCLUSIVE (MobileNetV3Large; EfficientNetB0 99.1% →
    98.4-98.7%: bench/RESULTS.md). None of them may be in --data's test split (the search would choose on images verify
    then judges with); calibration avoids --data's training images equal to one of them."""
    images, labels = np.concatenate([given.x_train, given.x_test]), np.concatenate([given.y_train, given.y_test])
    keys = {image.tobytes() for image in images}
    in_test = sum(image.tobytes() in keys for image in data.x_test)
    if in_test:
        raise EdgecnnError(f"{in_test:,} of its images are in the test split of --data, which verify judges: give the search other images",
                           "--validation-data")
    in_train = np.array([index for index, image in enumerate(data.x_train) if image.tobytes() in keys], dtype=np.int64)
    source = f"the {len(labels):,} images of --validation-data {given.source.spec} (sha256 {given.fingerprint()[:16]})"
    return Validation(images, labels, in_train, source)


class Tier(Enum):
    """Where a layer goes when it must leave int8: 16-bit activations with int8 weights first (the file stays as small),
    then float (a matrix product takes per-call ranges in either where the format mixes them: `per_call_layers`)."""

    INT16 = "int16 activations"
    FLOAT = "float"


SAME_SPEED = 1.10  # a 16-bit candidate up to 10% slower than its float counterpart counts as as fast (one 200-call p50 each)


def keeps_16_bit(sixteen: SearchStep, floated: SearchStep) -> bool:
    """Whether a 16-bit candidate that met the budget is kept over the float candidate with the same layers lifted: unless
    that one also meets it and is faster. CPUs have no fast 16-bit kernels: ONNX Runtime's CPU provider runs A16W8 nodes
    in float between the (de)quantization, and LiteRT's 16x8 kernels are reference ones (a 16x8 seed CNN measured
    2.8-3.8 ms at batch 1 against 25 µs for int8), so a smaller file that is many times slower is not what a user ships."""
    return not floated.within_budget or sixteen.p50_batch1_us <= floated.p50_batch1_us * SAME_SPEED


def search(spec: ArtifactSpec, inputs: ExportInputs, base: Path | None, first: Converted, validation: Validation,
           convert: Any, max_drop: float, min_agreement: float) -> tuple[Converted, SearchResult]:
    """Steps from the format's first candidate (already converted: `first`) until the budget is met. Each run of
    sensitive layers is tried in 16-bit activations before float where the format mixes them per layer (ONNX); where it
    cannot (TFLite's 16x8 is the whole file), the whole file in 16x8 is tried once before any layer goes to float. A
    16-bit candidate that meets the budget is compared with the float one (`keeps_16_bit`)."""
    started = time.perf_counter()
    keras_probabilities = inputs.keras_probabilities(validation.images)
    keras_accuracy = float(np.mean(keras_probabilities.argmax(axis=1) == validation.labels))
    kept = list(first.details.quantization.kept_float_layers if first.details.quantization else ())
    per_layer = converter_for(spec.format).INT16_PER_LAYER
    products = per_call_layers(spec, inputs, base or first.path)

    refused: list[str] = []

    def tried(floats: list[str], lifted: list[str] | None = None, per_call: set[str | None] | None = None) -> tuple[Converted, SearchStep] | None:
        """A candidate's file and step, the `lifted` layers in the tier before float (16-bit activations) and `floats` in
        float, but the matrix products among either with per-call ranges (`per_call`, else every one: `per_call_layers`);
        None for a candidate the converter refuses (LiteRT has no 16x8 HARD_SWISH), which is recorded as refused (the
        search goes on in float)."""
        in_float, in_int16, dynamic = tiers_of(floats, lifted or [], products if per_call is None else per_call, per_layer)
        options = replace(inputs.options, keep_float=in_float, keep_int16=in_int16, keep_dynamic=dynamic)
        try:
            converted = convert(spec, replace(inputs, options=options), base)
        except ConversionRefused as refusal:
            if not lifted:
                raise
            refused.append(f"{len(options.keep_int16)} layers in 16-bit activations, {len(options.keep_dynamic)} with per-call ranges and "
                           f"{len(options.keep_float or ())} in float: {refusal}")
            return None
        return converted, evaluated(spec, converted, inputs, validation, keras_probabilities, keras_accuracy, max_drop, min_agreement)[0]

    current = first
    first_step, first_probabilities = evaluated(spec, current, inputs, validation, keras_probabilities, keras_accuracy, max_drop, min_agreement)
    steps = [first_step]

    def attempt(floats: list[str], lifted: list[str] | None = None, per_call: set[str | None] | None = None) -> bool:
        """One candidate: its step goes on the trail and its file becomes the current one; whether it met the budget."""
        nonlocal current
        candidate = tried(floats, lifted, per_call)
        if candidate is None:
            return False
        current, step = candidate
        steps.append(step)
        return step.within_budget

    if not first_step.within_budget:
        ranked_on = most_changed(first_probabilities, keras_probabilities, SENSITIVITY_IMAGES)
        profile = sensitivity(spec, current.path, inputs, validation.images[ranked_on])
        sixteen = steps[-1] if not per_layer and attempt([], profile.layers_with_nodes) else None  # TFLite: the whole file
        met = False
        for run in profile.runs[:RANKED_STEPS]:
            added = [layer for layer in run if layer not in kept]
            if per_layer and attempt(kept, added):
                sixteen = steps[-1]
            kept += added
            if not (per_layer and added and set(added) <= products):  # matrix products alone take per-call ranges in float too: the same file
                met = attempt(kept)
            if met or (sixteen is not None and per_layer):
                break
        if not met and (sixteen is None or not per_layer):  # TFLite's whole-file 16x8 is weighed against the float search's end
            tiers = (Tier.INT16, Tier.FLOAT) if per_layer else (Tier.FLOAT,)
            current = bisect_tail(kept, profile.layers_with_nodes, products, tried, steps, tiers) or current
        if sixteen is not None and keeps_16_bit(sixteen, steps[-1]) and steps[-1] is not sixteen:
            attempt(list(sixteen.kept_float_layers), [*sixteen.int16_layers, *sixteen.dynamic_layers])  # written again: each try reuses the staged name
        last = steps[-1]
        if not last.within_budget and last.dynamic_layers:  # what missed with per-call ranges, once more in float
            attempt([*last.kept_float_layers, *last.int16_layers, *last.dynamic_layers], per_call=set())
    result = SearchResult.of(max_drop, min_agreement, validation.source, tuple(steps), round(time.perf_counter() - started, 2), tuple(refused))
    return replace(current, details=replace(current.details, accuracy_search=result)), result


def bisect_tail(kept: list[str], order: list[str], products: set[str | None], tried: Any, steps: list[SearchStep],
                tiers: tuple[Tier, ...]) -> Converted | None:
    """The shortest tail of `order` (layers with nodes, network order) that, lifted out of int8 with `kept` in float,
    meets the budget. Each tier's longest tail is tried first — the whole network but its first layer (the TFLite
    converter's debugger needs one quantized operator) — and the bisection halves in the tier that met (16-bit unless
    float met too and is faster: `keeps_16_bit`). Where the float tail misses only because of its matrix products'
    per-call ranges (`per_call_suffix`), the bisection keeps the longest run of them at the network's end that meets.
    Returns the best candidate's file (the longest float tail's, which missed, when none meets it; None when nothing is
    left to lift)."""
    per_call = products

    def tail_candidate(tier: Tier, length: int, per_call: set[str | None]) -> tuple[Converted, SearchStep] | None:
        tail = [layer for layer in order[len(order) - length :] if layer not in kept]
        return tried(kept, tail, per_call) if tier is Tier.INT16 else tried(kept + tail, None, per_call)  # None: a 16-bit one the converter refused

    quantized = [index for index, layer in enumerate(order) if layer not in kept]
    if not quantized:
        return None
    missing, meeting = 0, len(order) - 1 - quantized[0]  # a tail of 0 is the ranked steps' last candidate, which missed
    longest = {}
    for tier in tiers:
        candidate = tail_candidate(tier, meeting, per_call)
        if candidate is not None:
            steps.append(candidate[1])
            longest[tier] = candidate
    if not longest[Tier.FLOAT][1].within_budget and longest[Tier.FLOAT][1].dynamic_layers:
        suffix, candidate = per_call_suffix([layer for layer in order if layer in products], lambda subset: tail_candidate(Tier.FLOAT, meeting, subset), steps)
        if candidate is not None:
            per_call, longest[Tier.FLOAT] = suffix, candidate
    met = [tier for tier in longest if longest[tier][1].within_budget]
    if not met:
        return longest[Tier.FLOAT][0]
    chosen = Tier.INT16 if Tier.INT16 in met and keeps_16_bit(longest[Tier.INT16][1], longest[Tier.FLOAT][1]) else Tier.FLOAT
    best, best_step = longest[chosen]
    while meeting - missing > 1 and len(steps) < MAX_STEPS:
        middle = (missing + meeting) // 2
        candidate = tail_candidate(chosen, middle, per_call)
        if candidate is not None:
            steps.append(candidate[1])
        if candidate is not None and candidate[1].within_budget:
            meeting, (best, best_step) = middle, candidate
        else:
            missing = middle
    if steps[-1] is not best_step:  # the last try was another file: write the best one again (each try reuses the staged file name)
        best, step = tail_candidate(chosen, meeting, per_call) or (best, best_step)  # the converter took it before
        steps.append(step)
    return best


def per_call_suffix(ordered: list[str | None], candidate: Any, steps: list[SearchStep]) -> tuple[set[str | None], tuple[Converted, SearchStep] | None]:
    """The most matrix products, counted from the network's end (`ordered`: network order), that keep per-call ranges
    in a float candidate that meets the budget, the others in float, and that candidate (None when the candidate with
    every one in float misses too). A range measured on each call covers every pixel of the map: the wider the map (the
    earlier the layer), the coarser its step for most pixels — EfficientNetB0's float tail met the budget with per-call
    ranges over its 1x1 maps and missed it (98.57% at the bound) with them over every map (bench/RESULTS.md) — while
    the late products, over small maps, hold most of the weights that per-call ranges keep in 8 bits."""
    floated = candidate(set())
    if floated is None:
        return set(), None
    steps.append(floated[1])
    if not floated[1].within_budget:
        return set(), None
    meeting, missing, best = 0, len(ordered), floated
    while missing - meeting > 1 and len(steps) < MAX_STEPS:
        middle = (meeting + missing) // 2
        attempt = candidate(set(ordered[len(ordered) - middle :]))
        if attempt is not None:
            steps.append(attempt[1])
        if attempt is not None and attempt[1].within_budget:
            meeting, best = middle, attempt
        else:
            missing = middle
    return set(ordered[len(ordered) - meeting :]), best


def most_changed(probabilities: np.ndarray, keras_probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices (in order) of the `count` images on which the int8 file's answer differs most from Keras': every image
    whose top-1 class it changes first, then the largest total-variation distance between the two probability rows. The
    layers are ranked on these, as NNCF's accuracy control ranks them on the samples whose metric quantization changes:
    on a slice where int8 agrees 96% of the time, the whole slice would rank layers mostly on images that need no fix."""
    distance = 0.5 * np.abs(probabilities - keras_probabilities).sum(axis=1)
    flipped = probabilities.argmax(axis=1) != keras_probabilities.argmax(axis=1)
    return np.sort(np.lexsort((-distance, ~flipped))[:count])


def evaluated(spec: ArtifactSpec, converted: Converted, inputs: ExportInputs, validation: Validation, keras_probabilities: np.ndarray,
              keras_accuracy: float, max_drop: float, min_agreement: float) -> tuple[SearchStep, np.ndarray]:
    """The candidate's step in the trail (its layers' tiers as its quantization record names them), and its
    probabilities on the validation images."""
    runner = open_runner(spec.format, converted.path, description=inputs.description)
    try:
        probabilities = inputs.description.probabilities(infer_in_batches(runner, validation.images))
        call = runner.bound_call(runner.encode(validation.images[:1]))
        p50 = measure(call, TimingSettings(warmup=20, iterations=200)).p50_us
    finally:
        runner.close()
    accuracy = float(np.mean(probabilities.argmax(axis=1) == validation.labels))
    agreement = float(np.mean(probabilities.argmax(axis=1) == keras_probabilities.argmax(axis=1)))
    # verify's criteria on the validation images (the agreement's bound is recorded), and within budget only when both
    # PASS a second draw at these pessimistic rates, as verify's test split must
    margin = inputs.bounds.decided_margin if inputs.bounds is not None else DECIDED_MARGIN
    criteria = paired_criteria(probabilities, keras_probabilities, validation.labels, min_agreement, max_drop, margin)
    again = paired_criteria(probabilities, keras_probabilities, validation.labels, min_agreement, max_drop, margin, second_draw=True)
    drop = round(100.0 * (keras_accuracy - accuracy), 4)
    record = converted.details.quantization
    step = SearchStep(record.kept_float_layers if record else (), accuracy, drop, agreement, round(criteria[0].low, 6), converted.path.stat().st_size,
                      round(p50, 2), overall(again) is Decision.PASS, record.int16_layers if record else (),
                      record.dynamic_layers if record else ())
    return step, probabilities


def tiers_of(floats: list[str], lifted: list[str], products: set[str | None], per_layer: bool) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """A candidate's layers in float, in 16-bit activations and with per-call ranges: `floats` and `lifted` (16-bit), but
    the matrix products among them (`products`) with per-call ranges — among `lifted` only where the format mixes tiers
    per layer (TFLite's 16x8 is the whole file)."""
    lifted_products = products if per_layer else set()
    return (tuple(layer for layer in floats if layer not in products), tuple(layer for layer in lifted if layer not in lifted_products),
            tuple(layer for layer in floats if layer in products) + tuple(layer for layer in lifted if layer in lifted_products))


def per_call_layers(spec: ArtifactSpec, inputs: ExportInputs, path: Path) -> set[str | None]:
    """The layers that leave static int8 for per-call ranges in either tier (16-bit or float), and for float only when
    nothing else met the budget: the matrix products of a file of the format with the model's whole graph (the fp32 base,
    else the first candidate), unless ONNX int8 comes from NNCF, which places static ranges only. ONNX Runtime's
    dynamic kernels and LiteRT's hybrid ones run faster than the same layer in float or A16W8 (computed in float), the
    file keeps int8 weights (a head convolution is most of MobileNetV3's weights: in float, 51-65% of the fp32 file),
    and a range measured on each image follows Keras about as closely as float (bench/RESULTS.md)."""
    return converter_for(spec.format).matrix_product_layers(path, keras_layer_names(inputs.keras_model), inputs.options)


@dataclass(frozen=True)
class Sensitivity:
    """From one layer-by-layer comparison of the int8 file with Keras: the runs of layers (a convolution with what was
    folded into it) by the quantization noise each adds, largest first, and every layer with nodes of its own in the
    file, in network order (what --keep-float takes)."""

    runs: list[list[str]]
    layers_with_nodes: list[str]


def sensitivity(spec: ArtifactSpec, path: Path, inputs: ExportInputs, images: np.ndarray) -> Sensitivity:
    """Runs ranked by the SQNR each loses against the run compared before it (`verify --explain`'s comparison)."""
    from edgecnn.stages.explain import compare_layers, keras_layer_outputs

    layers = keras_layer_names(inputs.keras_model)
    kinds = {layer.name: type(layer).__name__ for layer in inputs.keras_model.layers}
    reference = keras_layer_outputs(inputs.keras_model, inputs.description.model_input(images))
    runner = open_runner(spec.format, path, description=inputs.description)
    try:
        rows = compare_layers(layers, kinds, reference, runner.layer_outputs(images, layers), floor=0.0)
    finally:
        runner.close()
    with_nodes = converter_for(spec.format).layers_with_nodes(path, layers)
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
    ranked = [found for found in ([layer for layer in runs[match] if layer in with_nodes] for match in ordered) if found]
    return Sensitivity(ranked, [layer for layer in layers if layer in with_nodes])
