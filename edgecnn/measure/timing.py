"""How bench and `bench --tune` time a call: warm-up, then per-call wall times with `time.perf_counter_ns`, in rounds.

On a shared machine one run's p50 moves by 20-60 % from one minute to the next, so a measurement is split into rounds
that bench interleaves with the other rows' rounds, and the p50 comes with a 95 % interval from a two-level bootstrap
(rounds resampled, then calls within each round): what drifts between rounds widens the interval, as it should.
Its own module so that bench (which runs tune) and tune (which times like bench) share it without importing each other.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.manifest import ArtifactFormat, Precision
from edgecnn.runners import Runner, RuntimeName

DEFAULT_SECONDS = 1.0
MIN_ITERATIONS = 10
DEFAULT_ROUNDS = 5
BOOTSTRAP_RESAMPLES = 400
BOOTSTRAP_CALLS_PER_ROUND = 2000  # calls a round contributes to the bootstrap (a seeded subsample of a longer round)


@dataclass(frozen=True)
class TimingSettings:
    """How long to measure: untimed warm-up calls, then a fixed count of calls or as many as fit in `seconds`."""

    warmup: int = 50
    iterations: int | None = None
    seconds: float | None = None
    rounds: int = 1

    def per_round(self) -> TimingSettings:
        """One round's share of the calls or the time (every round still times at least MIN_ITERATIONS calls)."""
        iterations = None if self.iterations is None else max(1, self.iterations // self.rounds)
        seconds = None if self.iterations is not None else (self.seconds or DEFAULT_SECONDS) / self.rounds
        return TimingSettings(self.warmup, iterations, seconds, 1)


@dataclass(frozen=True)
class LatencyStats:
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    iterations: int
    p50_low_us: float  # the p50's 95 % interval
    p50_high_us: float
    rounds: int = 1

    @classmethod
    def from_rounds(cls, rounds: Sequence[np.ndarray]) -> LatencyStats:
        """Statistics of every call of every round (nanoseconds in), with the p50's bootstrap interval."""
        micros = [np.asarray(samples, dtype=np.float64) / 1000.0 for samples in rounds]
        pooled = np.concatenate(micros)
        p50, p90, p99 = np.percentile(pooled, [50, 90, 99])
        low, high = p50_interval(micros)
        return cls(float(p50), float(p90), float(p99), float(pooled.mean()), int(len(pooled)), low, high, len(micros))

    def overlaps(self, other: LatencyStats) -> bool:
        return self.p50_low_us <= other.p50_high_us and other.p50_low_us <= self.p50_high_us


def p50_interval(rounds: Sequence[np.ndarray], seed: int = 0) -> tuple[float, float]:
    """95 % interval of the pooled median by a two-level bootstrap: rounds drawn with replacement, then calls within each."""
    rng = np.random.default_rng(seed)
    width = min(BOOTSTRAP_CALLS_PER_ROUND, min(len(samples) for samples in rounds))
    table = np.stack([rng.choice(samples, size=width, replace=False) for samples in rounds])
    chosen_rounds = rng.integers(len(rounds), size=(BOOTSTRAP_RESAMPLES, len(rounds), 1))
    chosen_calls = rng.integers(width, size=(BOOTSTRAP_RESAMPLES, len(rounds), width))
    medians = np.median(table[chosen_rounds, chosen_calls].reshape(BOOTSTRAP_RESAMPLES, -1), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class Timed:
    """Something to time: a name, how it was produced, the runtime that runs it, and a runner with a timed call."""

    name: str
    path: Path
    format: ArtifactFormat
    precision: Precision | None
    runtime: RuntimeName | None  # None: the Keras baseline (not a deployment runtime)
    runner: Runner


def measure(call: Callable[[], Any], settings: TimingSettings) -> LatencyStats:
    """All rounds of one call back to back (tune's comparisons); bench interleaves rounds across rows with `measure_round`."""
    for _ in range(settings.warmup):
        call()
    one_round = settings.per_round()
    return LatencyStats.from_rounds([measure_round(call, one_round) for _ in range(settings.rounds)])


def interleaved(binders: dict[Any, Callable[[], Callable[[], Any]]], settings: TimingSettings) -> dict[Any, LatencyStats]:
    """Each key's calls timed in `settings.rounds` rounds, the keys taking turns within every round (A, B, …, then A
    again), so that a machine slowing down for a minute slows all alike. `binders[key]()` gives the call to time in
    one round (bench binds its input again each round: a runtime holds one input shape at a time)."""
    one_round = settings.per_round()
    samples: dict[Any, list[np.ndarray]] = {key: [] for key in binders}
    for _ in range(settings.rounds):
        for key, bind in binders.items():
            samples[key].append(measure_round(bind(), one_round))
    return {key: LatencyStats.from_rounds(rounds) for key, rounds in samples.items()}


def measure_round(call: Callable[[], Any], settings: TimingSettings) -> np.ndarray:
    """Per-call wall times in nanoseconds (no warm-up): a fixed count, or as many as fit in `seconds` (at least MIN_ITERATIONS)."""
    samples: list[int] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside the loop would be charged to one unlucky call
    try:
        timed_loop(call, settings, time.perf_counter_ns, samples)
    finally:
        if gc_was_enabled:
            gc.enable()
    return np.asarray(samples, dtype=np.int64)


def timed_loop(call: Callable[[], Any], settings: TimingSettings, clock: Callable[[], int], samples: list[int]) -> None:
    if settings.iterations is not None:
        for _ in range(settings.iterations):
            started = clock()
            call()
            samples.append(clock() - started)
    else:
        deadline = clock() + int((settings.seconds or DEFAULT_SECONDS) * 1e9)
        while len(samples) < MIN_ITERATIONS or clock() < deadline:
            started = clock()
            call()
            samples.append(clock() - started)
