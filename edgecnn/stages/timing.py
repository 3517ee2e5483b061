"""How bench and `bench --tune` time a call: warm-up, then per-call wall times with `time.perf_counter_ns`.

Its own module so that bench (which runs tune) and tune (which times like bench) share it without importing each other.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.manifest import ArtifactFormat, Precision
from edgecnn.runners import Runner, RuntimeName

DEFAULT_SECONDS = 1.0
MIN_ITERATIONS = 10


@dataclass(frozen=True)
class TimingSettings:
    """How long to measure: untimed warm-up calls, then a fixed count of calls or as many as fit in `seconds`."""

    warmup: int = 50
    iterations: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class LatencyStats:
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    iterations: int

    @classmethod
    def from_nanoseconds(cls, samples: np.ndarray) -> LatencyStats:
        micros = samples.astype(np.float64) / 1000.0
        p50, p90, p99 = np.percentile(micros, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(micros.mean()), int(len(micros)))


@dataclass(frozen=True)
class Target:
    """Something to time: a name, how it was produced, the runtime that runs it, and a runner with a timed call."""

    name: str
    path: Path
    format: ArtifactFormat
    precision: Precision | None
    runtime: RuntimeName | None  # None: the Keras baseline (not a deployment runtime)
    runner: Runner


def measure(call: Callable[[], Any], settings: TimingSettings) -> LatencyStats:
    """Per-call wall times after warm-up: a fixed count, or as many as fit in `seconds` (at least MIN_ITERATIONS)."""
    for _ in range(settings.warmup):
        call()
    samples: list[int] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside the loop would be charged to one unlucky call
    try:
        timed_loop(call, settings, time.perf_counter_ns, samples)
    finally:
        if gc_was_enabled:
            gc.enable()
    return LatencyStats.from_nanoseconds(np.asarray(samples, dtype=np.int64))


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
