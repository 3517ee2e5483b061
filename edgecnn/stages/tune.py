"""`bench --tune`: ONNX Runtime's documented session knobs, tried per artifact and batch size (Olive's session-parameter
tuning, in one command).

Each candidate configuration is timed the way bench times (bound call after warm-up, p50 of per-call times) and checked
against the Keras model with verify's thresholds for that configuration, so a faster but wrong setting (TF32 beyond
the fp32 bound, say) is never chosen. The fastest passing one is kept, its speed-up is stated against ONNX Runtime's
defaults, and its session options are recorded in a form a user can paste into an `InferenceSession`.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.core.errors import EdgecnnError, first_line
from edgecnn.core.manifest import Manifest
from edgecnn.runners import ConvAlgoSearch, OnnxRunner, Provider, SessionConfig, infer_in_batches

if TYPE_CHECKING:
    from edgecnn.stages.bench import BenchOptions, Target
    from edgecnn.core.data import Dataset

PARITY_IMAGES = 1000  # test images each candidate must agree on with Keras (verify's thresholds)
DEFAULT_TUNE_SECONDS = 0.3


@dataclass(frozen=True)
class TuneResult:
    artifact: str
    batch_size: int
    default: SessionConfig
    best: SessionConfig
    default_p50_us: float
    best_p50_us: float
    best_images_per_second: float
    tried: int
    rejected: tuple[str, ...]

    @property
    def speedup(self) -> float:
        return self.default_p50_us / self.best_p50_us

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "batch_size": self.batch_size,
            "default_p50_us": self.default_p50_us,
            "best_p50_us": self.best_p50_us,
            "best_images_per_second": self.best_images_per_second,
            "speedup_over_defaults": round(self.speedup, 3),
            "configurations_tried": self.tried,
            "rejected": list(self.rejected),
            "default": self.default.describe(),
            "best": self.best.describe(),
        }


def ort_defaults(base: SessionConfig) -> SessionConfig:
    """ONNX Runtime's own defaults on the same provider and device: what a user gets without edgecnn."""
    return SessionConfig(provider=base.provider, device_id=base.device_id, allow_fallback=base.allow_fallback)


def candidates(base: SessionConfig, cores: int) -> list[SessionConfig]:
    """The documented knobs per provider: threads and spinning on CPU; cuDNN search, layout, TF32 and graphs on CUDA."""
    if base.provider is Provider.CPU:
        return [replace(base, threads=threads, spinning=spinning) for threads in sorted({1, cores}) for spinning in (True, False)]
    if base.provider is Provider.CUDA:
        return [
            replace(base, conv_algo_search=search, prefer_nhwc=nhwc, tf32=tf32, cuda_graph=graph)
            for search in (ConvAlgoSearch.EXHAUSTIVE, ConvAlgoSearch.HEURISTIC)
            for nhwc in (False, True)
            for tf32 in (True, False)
            for graph in (False, True)
        ]
    return [base]


def tune(targets: Sequence[Target], manifest: Manifest, dataset: Dataset, images: np.ndarray, options: BenchOptions) -> list[TuneResult]:
    """`images`: bench's timing inputs (at least the largest batch); `dataset`: its test split for the parity check."""
    from edgecnn.stages.verify import keras_reference

    description = manifest.model.description
    reference = description.probabilities(keras_reference(manifest, dataset, options.verify_hash)[:PARITY_IMAGES])
    base = options.runner_config()
    results = []
    for target in targets:
        parity = ParityCache(target, dataset, reference)
        for batch_size in options.batch_sizes:
            results.append(tune_one(target, images[:batch_size], base, parity, options))
    return results


class ParityCache:
    """Verify's verdict per numerically distinct configuration (a CUDA graph replays the same kernels, so it shares one)."""

    def __init__(self, target: Target, dataset: Dataset, reference: np.ndarray) -> None:
        self.target, self.dataset, self.reference = target, dataset, reference
        self.verdicts: dict[SessionConfig, str] = {}

    def failure(self, config: SessionConfig) -> str:
        """'' when the configuration passes verify's thresholds, else why not."""
        key = replace(config, cuda_graph=False, threads=0, spinning=True) if config.provider is Provider.CUDA else replace(config, spinning=True)
        if key not in self.verdicts:
            self.verdicts[key] = self.check(key)
        return self.verdicts[key]

    def check(self, config: SessionConfig) -> str:
        from edgecnn.stages.verify import ParityResult, Status, compare, thresholds_for

        precision = self.target.precision
        thresholds = thresholds_for(precision, config)
        runner = OnnxRunner(self.target.path, config, self.target.runner.description)
        try:
            probabilities = runner.description.probabilities(infer_in_batches(runner, self.dataset.x_test[:PARITY_IMAGES]))
        finally:
            runner.close()
        base = ParityResult(self.target.name, str(self.target.path), precision, "", Status.PASS, thresholds)
        result = compare(base, probabilities, self.reference, self.dataset.y_test[:PARITY_IMAGES])
        return "; ".join(failure.describe() for failure in result.failures)


def tune_one(target: Target, images: np.ndarray, base: SessionConfig, parity: ParityCache, options: BenchOptions) -> TuneResult:
    default = ort_defaults(base)
    default_stats = time_config(target, default, images, options)
    best, best_stats, rejected = default, default_stats, []
    tried = candidates(base, options.resolved_threads())
    for config in tried:
        try:
            failure = parity.failure(config)
            if failure:
                rejected.append(f"{label(config)}: fails verify ({failure})")
                continue
            stats = time_config(target, config, images, options)
        except EdgecnnError as exc:
            rejected.append(f"{label(config)}: {exc.what}")
            continue
        except Exception as exc:  # a knob this build or device refuses (e.g. graph capture): record it, try the next
            rejected.append(f"{label(config)}: {first_line(exc)}")
            continue
        if stats.p50_us < best_stats.p50_us:
            best, best_stats = config, stats
    return TuneResult(
        artifact=target.name, batch_size=len(images), default=default, best=best,
        default_p50_us=round(default_stats.p50_us, 2), best_p50_us=round(best_stats.p50_us, 2),
        best_images_per_second=round(len(images) * 1e6 / best_stats.mean_us, 1), tried=len(tried) + 1, rejected=tuple(rejected),
    )


def time_config(target: Target, config: SessionConfig, images: np.ndarray, options: BenchOptions) -> Any:
    from edgecnn.stages.bench import measure

    runner = OnnxRunner(target.path, config, target.runner.description)
    try:
        call = runner.bound_call(runner.encode(images))
        return measure(call, options.warmup, options.iterations, options.seconds or DEFAULT_TUNE_SECONDS)
    finally:
        runner.close()
        gc.collect()


def label(config: SessionConfig) -> str:
    """A short name for a configuration, for tables and rejection notes."""
    if config.provider is Provider.CPU:
        return f"threads={config.threads or 'default'} spinning={'on' if config.spinning else 'off'}"
    if config.provider is Provider.CUDA:
        return (f"{config.conv_algo_search.value.lower()} {'nhwc' if config.prefer_nhwc else 'nchw'} "
                f"tf32={'on' if config.tf32 else 'off'} graph={'on' if config.cuda_graph else 'off'}")
    return config.provider.value
