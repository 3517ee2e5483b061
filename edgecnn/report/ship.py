"""What to ship: for each deployment target that was measured, the fastest artifact that passed verify, and one
summary row per artifact (Ultralytics' benchmark table is the model).

Targets are CPU latency (batch 1), CPU throughput and, when the benchmark ran on a GPU provider, GPU latency and
throughput. Speed-ups are against the fp32 ONNX file on the same device and batch, and against the Keras call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from edgecnn.stages.bench import BenchResult
from edgecnn.core.manifest import ArtifactEntry, ArtifactFormat, Precision
from edgecnn.runners import Backend
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


def measured(rows: Sequence[BenchResult], target: Target) -> list[BenchResult]:
    """Rows that count for a target: measured, on the target's kind of device, at batch 1 for latency."""
    return [
        row for row in rows
        if row.measured and row.provider_used is not None and row.provider_used.on_device == target.on_device
        and (row.batch_size == 1 or not target.latency)
    ]


def score(target: Target) -> Callable[[BenchResult], float]:
    """Higher is better: images/s for throughput, the inverse of p50 for latency."""
    return (lambda row: 1e6 / row.p50_us) if target.latency else (lambda row: row.images_per_second)


def speedup(best: BenchResult, others: list[BenchResult], target: Target) -> float | None:
    """How much faster `best` is than the best of `others` (the fp32 file, or the Keras call), on the same metric."""
    if not others:
        return None
    key = score(target)
    return key(best) / max(key(row) for row in others)


def recommend(parity: Sequence[ParityResult], rows: Sequence[BenchResult], entries: Sequence[ArtifactEntry]) -> list[Recommendation]:
    passed = {result.name: result for result in parity if result.passed}
    sizes = {entry.name: entry.bytes for entry in entries}
    choices = []
    for target in Target:
        candidates = [row for row in measured(rows, target) if row.artifact in passed]
        if not candidates:
            continue
        best = max(candidates, key=score(target))
        fp32 = [row for row in measured(rows, target) if row.artifact == FP32_REFERENCE and (not target.latency or row.batch_size == best.batch_size)]
        keras = [row for row in rows if row.format is ArtifactFormat.KERAS and row.measured and (not target.latency or row.batch_size == 1)]
        choices.append(
            Recommendation(
                target=target, artifact=best.artifact, backend=best.provider_used, batch_size=best.batch_size, p50_us=best.p50_us,
                images_per_second=best.images_per_second, delta_points=passed[best.artifact].delta_points,
                agreement=passed[best.artifact].agreement, bytes=sizes.get(best.artifact, 0),
                speedup_vs_fp32=speedup(best, fp32, target), speedup_vs_keras=speedup(best, keras, target),
            )
        )
    return choices


def summarize(parity: Sequence[ParityResult], rows: Sequence[BenchResult], entries: Sequence[ArtifactEntry]) -> list[ArtifactSummary]:
    results = {result.name: result for result in parity}
    summaries = []
    for entry in entries:
        own = [row for row in rows if row.artifact == entry.name and row.measured]
        batch1 = [row.p50_us for row in own if row.batch_size == 1]
        result = results.get(entry.name)
        summaries.append(
            ArtifactSummary(
                artifact=entry.name, format=entry.format, precision=entry.precision, bytes=entry.bytes,
                accuracy=result.accuracy if result else None, passed=bool(result and result.passed),
                p50_batch1_us=min(batch1) if batch1 else None,
                best_images_per_second=max((row.images_per_second for row in own), default=None),
            )
        )
    return summaries
