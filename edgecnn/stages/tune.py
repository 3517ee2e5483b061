"""`bench --tune`: each runtime's documented knobs (its plug-in's `tune_candidates`), tried per artifact and batch size
(Olive's session-parameter tuning, in one command).

Each candidate configuration is timed the way bench times (bound call after warm-up, p50 of per-call times) and checked
against the Keras model with verify's thresholds for what ran, so a faster but wrong setting (TF32 beyond the fp32
bound, say) is never chosen. The fastest passing one is kept, its speed-up is stated against the runtime's defaults,
and its options are recorded in a form a user can paste into their app.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.core.errors import EdgecnnError, first_line
from edgecnn.core.manifest import Manifest, Precision
from edgecnn.runners import RunOptions, RuntimeName, infer_in_batches, open_runner, plugin
from edgecnn.stages.timing import LatencyStats, Target, TimingSettings, measure
from edgecnn.stages.verify import ParityResult, Status, compare, keras_reference, thresholds_for

if TYPE_CHECKING:
    from edgecnn.core.data import Dataset

PARITY_IMAGES = 1000  # test images each candidate must agree on with Keras (verify's thresholds)
DEFAULT_TUNE_SECONDS = 0.3


@dataclass(frozen=True)
class TuneResult:
    artifact: str
    runtime: RuntimeName
    batch_size: int
    default: Any  # the runtime's own configuration (RuntimePlugin)
    best: Any
    default_p50_us: float
    best_p50_us: float
    best_images_per_second: float
    tried: int
    rejected: tuple[str, ...]

    @property
    def label(self) -> str:
        return plugin(self.runtime).label(self.best)

    @property
    def speedup(self) -> float:
        return self.default_p50_us / self.best_p50_us

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "runtime": self.runtime.value,
            "batch_size": self.batch_size,
            "default_p50_us": self.default_p50_us,
            "best_p50_us": self.best_p50_us,
            "best_images_per_second": self.best_images_per_second,
            "speedup_over_defaults": round(self.speedup, 3),
            "configurations_tried": self.tried,
            "rejected": list(self.rejected),
            "default": plugin(self.runtime).describe(self.default),
            "best": plugin(self.runtime).describe(self.best),
            "best_label": self.label,
        }


def tune(targets: Sequence[Target], manifest: Manifest, dataset: Dataset, images: np.ndarray, batch_sizes: Sequence[int],
         run: RunOptions, timing: TimingSettings, verify_hash: bool = True) -> list[TuneResult]:
    """`images`: bench's timing inputs (at least the largest batch); `dataset`: its test split for the parity check;
    `run`: bench's run options (their thread count is every core the candidates may use)."""
    description = manifest.source_model().description
    reference = description.probabilities(keras_reference(manifest, dataset, verify_hash)[:PARITY_IMAGES])
    results = []
    for target in targets:
        if target.runtime is None or target.precision is None:  # the Keras baseline; a file no manifest describes
            continue
        parity = ParityCache(target, dataset, reference)
        for batch_size in batch_sizes:
            results.append(tune_one(target, target.runtime, images[:batch_size], parity, run, timing))
    return results


class ParityCache:
    """Verify's verdict per numerically distinct configuration (the runtime's `parity_key`: a CUDA graph replays the
    same kernels, thread counts do not change the numbers)."""

    def __init__(self, target: Target, dataset: Dataset, reference: np.ndarray) -> None:
        self.target, self.dataset, self.reference = target, dataset, reference
        self.verdicts: dict[Any, str] = {}

    def failure(self, runtime: RuntimeName, config: Any) -> str:
        """'' when the configuration passes verify's thresholds for what ran, else why not."""
        key = plugin(runtime).parity_key(config)
        if key not in self.verdicts:
            self.verdicts[key] = self.check(runtime, key)
        return self.verdicts[key]

    def check(self, runtime: RuntimeName, config: Any) -> str:
        target = self.target
        precision = target.precision or Precision.FP32
        runner = open_runner(target.format, target.path, description=target.runner.description, runtime=runtime, config=config)
        try:
            probabilities = runner.description.probabilities(infer_in_batches(runner, self.dataset.x_test[:PARITY_IMAGES]))
            thresholds = thresholds_for(precision, runner.arithmetic)
        finally:
            runner.close()
        base = ParityResult(target.name, str(target.path), precision, "", Status.PASS, thresholds)
        result = compare(base, probabilities, self.reference, self.dataset.y_test[:PARITY_IMAGES])
        return "; ".join(failure.describe() for failure in result.failures)


def tune_one(target: Target, runtime: RuntimeName, images: np.ndarray, parity: ParityCache, run: RunOptions, timing: TimingSettings) -> TuneResult:
    runtime_plugin = plugin(runtime)
    default = runtime_plugin.config(replace(run, threads=0))  # the runtime's own defaults: what a user gets without edgecnn
    default_stats = time_config(target, runtime, default, images, timing)
    best, best_stats, rejected = default, default_stats, []
    tried = runtime_plugin.tune_candidates(runtime_plugin.config(run), run.threads)
    for config in tried:
        label = runtime_plugin.label(config)
        try:
            failure = parity.failure(runtime, config)
            if failure:
                rejected.append(f"{label}: fails verify ({failure})")
                continue
            stats = time_config(target, runtime, config, images, timing)
        except EdgecnnError as exc:
            rejected.append(f"{label}: {exc.what}")
            continue
        except Exception as exc:  # a knob this build or device refuses (e.g. graph capture): record it, try the next
            rejected.append(f"{label}: {first_line(exc)}")
            continue
        if stats.p50_us < best_stats.p50_us:
            best, best_stats = config, stats
    return TuneResult(
        artifact=target.name, runtime=runtime, batch_size=len(images), default=default, best=best,
        default_p50_us=round(default_stats.p50_us, 2), best_p50_us=round(best_stats.p50_us, 2),
        best_images_per_second=round(len(images) * 1e6 / best_stats.mean_us, 1), tried=len(tried) + 1, rejected=tuple(rejected),
    )


def time_config(target: Target, runtime: RuntimeName, config: Any, images: np.ndarray, timing: TimingSettings) -> LatencyStats:
    runner = open_runner(target.format, target.path, description=target.runner.description, runtime=runtime, config=config)
    try:
        call = runner.bound_call(runner.encode(images))
        return measure(call, replace(timing, seconds=timing.seconds or (None if timing.iterations else DEFAULT_TUNE_SECONDS)))
    finally:
        runner.close()
        gc.collect()
