"""What to ship: for each deployment target that was measured, the fastest artifact that passed verify, and one
summary row per artifact (Ultralytics' benchmark table is the model).

Targets are CPU latency (batch 1), CPU throughput and, when the benchmark ran on a GPU provider, GPU latency and
throughput. Speed-ups are against the fp32 ONNX file on the same device and batch, and against the Keras call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from edgecnn.core.manifest import ArtifactEntry, ArtifactFormat, Precision
from edgecnn.runners import Backend, RuntimeName
from edgecnn.stages.bench import BenchResult
from edgecnn.stages.verify import ParityResult

FP32_REFERENCE = "onnx-fp32"


class Target(str, Enum):
    CPU_LATENCY = "CPU, batch 1"
    CPU_THROUGHPUT = "CPU, throughput"
    GPU_LATENCY = "GPU, batch 1"
    GPU_THROUGHPUT = "GPU, throughput"

    @property
    def on_device(self) -> bool:
        return self in (Target.GPU_LATENCY, Target.GPU_THROUGHPUT)

    @property
    def latency(self) -> bool:
        return self in (Target.CPU_LATENCY, Target.GPU_LATENCY)


@dataclass(frozen=True)
class Recommendation:
    target: Target
    artifact: str
    backend: Backend
    batch_size: int
    p50_us: float
    images_per_second: float
    delta_points: float | None
    agreement: float | None
    bytes: int
    speedup_vs_fp32: float | None
    speedup_vs_keras: float | None


@dataclass(frozen=True)
class ArtifactSummary:
    artifact: str
    format: ArtifactFormat
    precision: Precision
    bytes: int
    accuracy: float | None
    passed: bool
    p50_batch1_us: float | None
    best_images_per_second: float | None


@dataclass(frozen=True)
class Measured:
    """A bench row that ran, with its figures (a row that did not run has none)."""

    artifact: str
    runtime: RuntimeName | None
    format: ArtifactFormat
    backend: Backend
    batch_size: int
    p50_us: float
    images_per_second: float

    @classmethod
    def of(cls, row: BenchResult) -> Measured | None:
        if not row.measured or row.provider_used is None or row.batch_size is None or row.p50_us is None or row.images_per_second is None:
            return None
        return cls(row.artifact, row.runtime, row.format, row.provider_used, row.batch_size, row.p50_us, row.images_per_second)


def measured(rows: Sequence[BenchResult], target: Target) -> list[Measured]:
    """Rows that count for a target: measured, on the target's kind of device, at batch 1 for latency."""
    found = [item for item in map(Measured.of, rows) if item is not None]
    return [item for item in found if item.backend.on_device == target.on_device and (item.batch_size == 1 or not target.latency)]


def score(target: Target) -> Callable[[Measured], float]:
    """Higher is better: images/s for throughput, the inverse of p50 for latency."""
    return (lambda item: 1e6 / item.p50_us) if target.latency else (lambda item: item.images_per_second)


def speedup(best: Measured, others: list[Measured], target: Target) -> float | None:
    """How much faster `best` is than the best of `others` (the fp32 file, or the Keras call), on the same metric."""
    if not others:
        return None
    key = score(target)
    return key(best) / max(key(item) for item in others)


def recommend(parity: Sequence[ParityResult], rows: Sequence[BenchResult], entries: Sequence[ArtifactEntry]) -> list[Recommendation]:
    passed = {(result.name, result.runtime): result for result in parity if result.passed}  # judged on the runtime it ships on
    sizes = {entry.name: entry.bytes for entry in entries}
    ran = [item for item in map(Measured.of, rows) if item is not None]
    choices = []
    for target in Target:
        candidates = [item for item in measured(rows, target) if (item.artifact, item.runtime) in passed]
        if not candidates:
            continue
        best = max(candidates, key=score(target))
        fp32 = [item for item in measured(rows, target) if item.artifact == FP32_REFERENCE and (not target.latency or item.batch_size == best.batch_size)]
        keras = [item for item in ran if item.format is ArtifactFormat.KERAS and (not target.latency or item.batch_size == 1)]
        verdict = passed[best.artifact, best.runtime]
        choices.append(
            Recommendation(
                target=target, artifact=best.artifact, backend=best.backend, batch_size=best.batch_size, p50_us=best.p50_us,
                images_per_second=best.images_per_second, delta_points=verdict.delta_points, agreement=verdict.agreement,
                bytes=sizes.get(best.artifact, 0), speedup_vs_fp32=speedup(best, fp32, target), speedup_vs_keras=speedup(best, keras, target),
            )
        )
    return choices


def summarize(parity: Sequence[ParityResult], rows: Sequence[BenchResult], entries: Sequence[ArtifactEntry]) -> list[ArtifactSummary]:
    results: dict[str, ParityResult] = {}
    for result in parity:  # an artifact judged on several runtimes is summarized by its worst verdict
        if result.name not in results or not result.passed:
            results[result.name] = result
    ran = [item for item in map(Measured.of, rows) if item is not None]
    summaries = []
    for entry in entries:
        own = [item for item in ran if item.artifact == entry.name]
        batch1 = [item.p50_us for item in own if item.batch_size == 1]
        verdict = results.get(entry.name)
        summaries.append(
            ArtifactSummary(
                artifact=entry.name, format=entry.format, precision=entry.precision, bytes=entry.bytes,
                accuracy=verdict.accuracy if verdict else None, passed=bool(verdict and verdict.passed),
                p50_batch1_us=min(batch1) if batch1 else None,
                best_images_per_second=max((item.images_per_second for item in own), default=None),
            )
        )
    return summaries
