"""Selftest: the smallest parity check, from the model file alone.

Every exported file carries a few golden test images with the Keras model's probabilities for them and the bound its
precision must meet (core/reference.py). `edgecnn selftest MODEL` runs them on this device's runtime and says PASS or
FAIL: what an app can also do at start-up (examples/python/selftest.py, examples/node/classify.js) to catch a file
damaged in transit, a runtime that computes differently, or weights changed behind unchanged metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.manifest import Precision
from edgecnn.core.reference import Goldens
from edgecnn.measure.thresholds import thresholds_for
from edgecnn.runners import Arithmetic, Backend, RunOptions, artifact_format_of, check_usable, open_runner


@dataclass(frozen=True)
class SelftestOptions:
    model: Path
    run: RunOptions = RunOptions()


@dataclass(frozen=True)
class SelftestResult:
    path: Path
    runtime: Backend
    arithmetic: Arithmetic
    goldens: int
    agreeing: int  # goldens whose top-1 class equals the Keras model's
    max_abs_diff: float
    bound: float | None  # max |Δp| allowed; None: only top-1 is bound (int8 and dynamic files)
    basis: str

    @property
    def passed(self) -> bool:
        return self.agreeing == self.goldens and (self.bound is None or self.max_abs_diff <= self.bound)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "passed": self.passed, "runtime": self.runtime.value, "arithmetic": self.arithmetic.value,
                "goldens": self.goldens, "top1_agreeing": self.agreeing, "max_abs_diff": self.max_abs_diff, "bound": self.bound,
                "basis": self.basis}


def selftest(options: SelftestOptions) -> SelftestResult:
    artifact_format = artifact_format_of(options.model)
    check_usable(options.run, (artifact_format,))
    runner = open_runner(artifact_format, options.model, options.run)
    try:
        goldens = Goldens.from_metadata(runner.embedded_metadata(), options.model)
        probabilities = runner.description.probabilities(runner.infer(goldens.images))
        arithmetic = runner.arithmetic
        runtime = runner.runtime
    finally:
        runner.close()
    bound, basis = goldens.max_abs_diff, goldens.bound_basis
    if bound is not None and arithmetic is not Arithmetic.FP32:  # TF32 or half precision ran it: verify's bound for that
        looser = thresholds_for(Precision.FP32, arithmetic)
        if looser.atol is not None and looser.atol > bound:
            bound, basis = looser.atol, looser.basis
    difference = np.abs(probabilities.astype(np.float64) - goldens.probabilities.astype(np.float64))
    agreeing = int(np.sum(probabilities.argmax(axis=1) == goldens.probabilities.argmax(axis=1)))
    return SelftestResult(Path(options.model), runtime, arithmetic, len(goldens.images), agreeing, float(difference.max()), bound, basis)
