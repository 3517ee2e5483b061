"""The bounds each artifact precision is held to against the Keras model, and which measurement justifies each.

verify judges with them, and so do export (its default-session check and the --max-drop search), selftest (the
bound a file carries) and bench --tune (a faster configuration must still pass): here, below all of them, so that
none of those stages imports another for a number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from edgecnn.core.manifest import ParityBounds, Precision
from edgecnn.runners import Arithmetic


@dataclass(frozen=True)
class Thresholds:
    """Pass criteria. None means 'not checked' for that precision. `basis` says which measurement justifies them."""

    max_drop_points: float | None = None
    min_agreement: float | None = None
    atol: float | None = None
    basis: str = ""

    def overridden(self, other: Thresholds) -> Thresholds:
        changed = {key: value for key, value in asdict(other).items() if value not in (None, "")}
        return replace(self, **changed, basis=self.basis + ("; overridden on the command line" if changed else ""))


QUANTIZED = Thresholds(max_drop_points=0.5, min_agreement=0.99,
                       basis="int8/dynamic: accuracy change and top-1 agreement on decided images, each at one-sided 95% against the budget")
HALF = Thresholds(atol=1e-2, basis="fp16: the fixed bound measured on CUDA (H200), for files exported before bounds were derived")
DEFAULT_THRESHOLDS = {
    Precision.FP32: Thresholds(atol=1e-4, basis="fp32: max |Δp| 9.5e-7 measured on CPU, 1.1e-6 on CUDA without TF32 (files exported before bounds were derived)"),
    Precision.FP16: HALF,
    Precision.DYNAMIC: QUANTIZED,
    Precision.INT8: QUANTIZED,
}
# TF32 rounds fp32 matmul/conv inputs to a 10-bit mantissa: on an H200 the fp32 model's max |Δp| was 7.4e-4 with
# ORT's default use_tf32=1 (1.1e-6 without), top-1 agreement 100%. 2e-3 keeps a 2.7x margin; TensorRT enables TF32
# by default too.
TF32_FP32 = Thresholds(atol=2e-3, basis="fp32 with TF32 on the GPU: max |Δp| 7.4e-4 measured on an H200")


def thresholds_for(precision: Precision, arithmetic: Arithmetic, bounds: ParityBounds | None = None) -> Thresholds:
    """Thresholds by the file's precision and by the arithmetic that actually ran it (the runner says, not what was asked):
    fp32 computed in TF32 gets the TF32 bound, in bf16/fp16 the half-precision bound, visibly (the basis says so). The
    fp32 and half-precision bounds are the ones derived from this model at export (`bounds`), where the manifest has them.

    Files judged on |Δp| (fp32, fp16) need no agreement criterion: a top-1 flip needs |Δp| of at least half the Keras
    margin, so the bound already rules out flips of every image whose margin exceeds twice it."""
    half = HALF if bounds is None else Thresholds(atol=bounds.fp16.max_abs_diff, basis=bounds.fp16.basis)
    if precision is Precision.FP32 and arithmetic is Arithmetic.TF32:
        return TF32_FP32
    if precision in (Precision.FP32, Precision.FP16) and arithmetic in (Arithmetic.BF16, Arithmetic.FP16):
        return replace(half, basis=f"{precision.value} computed in {arithmetic.value} by the runtime: {half.basis}")
    if precision is Precision.FP32 and bounds is not None and bounds.fp32 is not None:
        return Thresholds(atol=bounds.fp32.max_abs_diff, basis=bounds.fp32.basis)
    return half if precision is Precision.FP16 else DEFAULT_THRESHOLDS[precision]
