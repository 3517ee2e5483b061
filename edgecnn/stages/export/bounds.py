"""The |Δp| bound an fp16 file of this model must meet, derived from the model itself when the reference is made.

fp16 rounding error grows with depth: one absolute bound cannot fit a 4-layer CNN and a 200-layer network (a fixed
1e-2 failed MobileNetV2's healthy 0.022 and NASNet's 0.015). The measurement is a faithful execution of the same model
in that precision, independent of the converters: Keras itself with every layer in float16 (a clone of the model under
the `float16` dtype policy, the same weights), on up to MEASURED_IMAGES of the reference images. Its max |Δp| against
the float32 model, times MARGIN, is the bound; never below FLOOR. The fp32 bound follows from the same measurement
(FP32_SHARE of it, never below FP32_FLOOR): a model that amplifies float16 rounding amplifies float32 rounding too.

Measured on the zoo (bench/RESULTS.md, "How verify decides"): Keras in float16 differs from float32 by 1.7e-4 (MobileNet)
to 3.1e-3 (EfficientNetV2B0); the fp16 files ORT and the TFLite converter write differ by 3.6e-6 to 2.2e-3, at most
0.71x Keras' own float16 run. A wrong normalisation or a scaled layer moves probabilities by 0.1 or more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.core.description import ModelDescription
from edgecnn.core.manifest import DerivedBound, ParityBounds
from edgecnn.core.verdict import DECIDED_MARGIN

FP32_FLOOR = 1e-4  # the fixed fp32 bound before bounds were derived: 9.5e-7 measured on the seed CNN
FP32_SHARE = 1e-2  # fp32 rounding is amplified like fp16's: on the zoo the fp32 ONNX files' max |Δp| was 1.6e-4 to 1.8e-3 of
# Keras' own float16 figure (EfficientNetB0 on gray input: 3.8e-4 against 0.21, with ORT's optimizations on or off alike)
MEASURED_IMAGES = 1000
MARGIN = 4.0  # the converters' fp16 files stayed within 0.71x of Keras' float16 run on every zoo family
FLOOR = 1e-3  # an fp16 output is rounded to float16 itself: 2.4e-4 at probabilities in [0.5, 1), so no bound below ~4 of those
FALLBACK = 1e-2  # when the float16 run overflows (inf or NaN): the bound measured on CUDA before bounds were derived


def parity_bounds(keras_model: Any, images: np.ndarray, probabilities: np.ndarray, description: ModelDescription) -> ParityBounds:
    """The fp16 bound from Keras' own float16 run on the first MEASURED_IMAGES reference images (uint8), whose float32
    probabilities are `probabilities`; and the margin above which Keras' top-1 is decided."""
    count = min(len(images), MEASURED_IMAGES)
    half = float16_clone(keras_model)
    inputs = description.model_input(images[:count]).astype(np.float16)
    outputs = np.concatenate([np.asarray(half(inputs[start : start + 100], training=False), dtype=np.float64) for start in range(0, count, 100)])
    measured = float(np.abs(description.probabilities(outputs) - probabilities[:count].astype(np.float64)).max())
    if not np.isfinite(measured):
        bound = DerivedBound(FALLBACK, measured, count, f"fp16: Keras in float16 overflowed on this model; the fixed {FALLBACK:g} bound")
        single = DerivedBound(FP32_FLOOR, measured, count, f"fp32: Keras in float16 overflowed on this model; the fixed {FP32_FLOOR:g} bound")
    else:
        allowed = max(FLOOR, MARGIN * measured)
        bound = DerivedBound(allowed, measured, count, f"fp16: {MARGIN:g} x max |Δp| {measured:.2e} of Keras itself in float16 on {count:,} "
                                                       f"reference images (at least {FLOOR:g})")
        single = DerivedBound(max(FP32_FLOOR, FP32_SHARE * measured), measured, count,
                              f"fp32: {FP32_SHARE:g} x max |Δp| {measured:.2e} of Keras itself in float16 on {count:,} reference images "
                              f"(at least {FP32_FLOOR:g})")
    return ParityBounds(bound, DECIDED_MARGIN, single)


def float16_clone(keras_model: Any) -> Any:
    """The same architecture with every layer's dtype policy float16 (integer inputs stay integer), and the same weights."""
    clone = keras_model.__class__.from_config(as_float16(keras_model.get_config()))
    clone.set_weights(keras_model.get_weights())
    return clone


def as_float16(config: Any) -> Any:
    if isinstance(config, dict):
        return {key: "float16" if key == "dtype" and not (isinstance(value, str) and value.startswith(("int", "uint", "bool"))) else as_float16(value)
                for key, value in config.items()}
    if isinstance(config, list):
        return [as_float16(value) for value in config]
    return config
