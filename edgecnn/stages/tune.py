"""`bench --tune`: each runtime's documented knobs (its plug-in's `tune_candidates`), tried per artifact and batch size
(Olive's session-parameter tuning, in one command).

Each candidate configuration is checked against the Keras model with verify's thresholds for what ran, so a faster but
wrong setting (TF32 beyond the fp32 bound, say) is never chosen, and timed the way bench times (bound call after
warm-up, p50 of per-call times), all candidates in interleaved rounds. The fastest passing one is kept, its speed-up
is stated against the runtime's defaults, and its options are recorded in a form a user can paste into their app.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError, first_line
from edgecnn.core.manifest import Manifest, Precision
from edgecnn.measure.thresholds import thresholds_for
from edgecnn.measure.timing import LatencyStats, Timed, TimingSettings, interleaved
from edgecnn.runners import RunOptions, RuntimeName, infer_in_batches, open_runner, plugin
from edgecnn.stages.verify import JudgedSet, ParityResult, Status, compare

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
    best_p50_low_us: float = 0.0  # the best figure's 95 % interval (measure/timing.py)
    best_p50_high_us: float = 0.0

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
            "best_p50_interval_us": [self.best_p50_low_us, self.best_p50_high_us],
        }


def tune(targets: Sequence[Timed], manifest: Manifest, judged: JudgedSet, images: np.ndarray, batch_sizes: Sequence[int],
         run: RunOptions, timing: TimingSettings) -> list[TuneResult]:
    """`images`: bench's timing inputs (at least the largest batch); `judged`: what verify judges on, for the parity
    check; `run`: bench's run options (their thread count is every core the candidates may use)."""
    results = []
    for target in targets:
        if target.runtime is None or target.precision is None:  # the Keras baseline; a file no manifest describes
            continue
        parity = ParityCache(target, judged)
        for batch_size in batch_sizes:
            results.append(tune_one(target, target.runtime, images[:batch_size], parity, run, timing))
    return results


class ParityCache:
    """Verify's verdict per numerically distinct configuration (the runtime's `parity_key`: a CUDA graph replays the
    same kernels, thread counts do not change the numbers)."""

    def __init__(self, target: Timed, judged: JudgedSet) -> None:
        self.target, self.judged = target, judged
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
            probabilities = runner.description.probabilities(infer_in_batches(runner, self.judged.images[:PARITY_IMAGES]))
            thresholds = thresholds_for(precision, runner.arithmetic, self.judged.bounds)
        finally:
            runner.close()
        base = ParityResult(target.name, str(target.path), precision, "", Status.PASS, thresholds)
        result = compare(base, probabilities, self.judged.probabilities[:PARITY_IMAGES], self.judged.labels[:PARITY_IMAGES], self.judged.decided_margin)
        return "; ".join(failure.describe() for failure in result.failures)


def tune_one(target: Timed, runtime: RuntimeName, images: np.ndarray, parity: ParityCache, run: RunOptions, timing: TimingSettings) -> TuneResult:
    """The runtime's defaults and every candidate that passes verify, timed in interleaved rounds (candidate A, B, …,
    then A again), so that the machine's drift does not pick the winner; the fastest p50 is kept."""
    runtime_plugin = plugin(runtime)
    default = runtime_plugin.config(replace(run, threads=0))  # the runtime's own defaults: what a user gets without edgecnn
    tried = runtime_plugin.tune_candidates(runtime_plugin.config(run), run.threads, len(images))
    rejected, passing = [], []
    for config in tried:
        try:
            failure = parity.failure(runtime, config)
        except Exception as exc:  # a knob this build or device refuses (e.g. graph capture): record it, try the next
            rejected.append(f"{runtime_plugin.label(config)}: {exc.what if isinstance(exc, EdgecnnError) else first_line(exc)}")
            continue
        if failure:
            rejected.append(f"{runtime_plugin.label(config)}: fails verify ({failure})")
        else:
            passing.append(config)
    timed, refused = time_interleaved(target, runtime, [default, *passing], images, timing)
    rejected += [f"{runtime_plugin.label(config)}: {reason}" for config, reason in refused]
    if default not in timed:  # the defaults themselves do not run here: nothing to compare against
        raise EdgecnnError(f"{target.name} does not run with {runtime_plugin.label(default)}", "--tune")
    best = min(timed, key=lambda config: timed[config].p50_us)
    default_stats, best_stats = timed[default], timed[best]
    return TuneResult(
        artifact=target.name, runtime=runtime, batch_size=len(images), default=default, best=best,
        default_p50_us=round(default_stats.p50_us, 2), best_p50_us=round(best_stats.p50_us, 2),
        best_images_per_second=round(len(images) * 1e6 / best_stats.mean_us, 1), tried=len(tried) + 1, rejected=tuple(rejected),
        best_p50_low_us=round(best_stats.p50_low_us, 2), best_p50_high_us=round(best_stats.p50_high_us, 2),
    )


def identity(call: Callable[[], Any]) -> Callable[[], Any]:
    """A binder for `timing.interleaved` that gives the same call every round (one session per configuration)."""
    return call


def time_interleaved(target: Timed, runtime: RuntimeName, configs: list[Any], images: np.ndarray,
                     timing: TimingSettings) -> tuple[dict[Any, LatencyStats], list[tuple[Any, str]]]:
    """Each configuration's own runner, warmed up, then timed round by round in turn; those that fail to run are returned
    with the reason."""
    timing = replace(timing, seconds=timing.seconds or (None if timing.iterations else DEFAULT_TUNE_SECONDS))
    binders: dict[Any, Callable[[], Callable[[], Any]]] = {}
    runners = []
    refused: list[tuple[Any, str]] = []
    try:
        for config in dict.fromkeys(configs):
            try:
                runner = open_runner(target.format, target.path, description=target.runner.description, runtime=runtime, config=config)
                runners.append(runner)
                call = runner.bound_call(runner.encode(images))
                for _ in range(timing.warmup):
                    call()
                binders[config] = partial(identity, call)  # one session per configuration: bound once
            except Exception as exc:  # a knob this build or device refuses (e.g. graph capture): record it, try the next
                refused.append((config, exc.what if isinstance(exc, EdgecnnError) else first_line(exc)))
        timed = interleaved(binders, timing)
    finally:
        for runner in runners:
            runner.close()
        gc.collect()
    return timed, refused
