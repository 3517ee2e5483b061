"""What to ship: for each deployment target that was measured, the fastest artifact that passed verify, and one
summary row per artifact (Ultralytics' benchmark table is the model).

Targets are CPU latency (batch 1), CPU throughput and, when the benchmark ran on a GPU provider, GPU latency and
throughput. Speed-ups are against the fp32 ONNX file on the same device and batch, and against the Keras call.
Where `bench --tune` found a faster configuration, its figure is used and named. A candidate whose p50 interval
overlaps the winner's is listed as a tie: on a shared machine the order between them is not measured, only guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from edgecnn.core.manifest import ArtifactEntry, ArtifactFormat, Precision
from edgecnn.runners import Backend, RuntimeName
from edgecnn.stages.bench import BenchResult
from edgecnn.stages.tune import TuneResult
from edgecnn.stages.verify import ParityResult

FP32_REFERENCE = "onnx-fp32"


class Judged(Protocol):
    """What a recommendation needs of a verdict: verify's ParityResult here, or a row of a box's verify.json."""

    @property
    def name(self) -> str: ...
    @property
    def runtime(self) -> RuntimeName | None: ...
    @property
    def passed(self) -> bool: ...
    @property
    def delta_points(self) -> float | None: ...
    @property
    def agreement(self) -> float | None: ...


class DeploymentTarget(str, Enum):
    CPU_LATENCY = "CPU, batch 1"
    CPU_THROUGHPUT = "CPU, throughput"
    GPU_LATENCY = "GPU, batch 1"
    GPU_THROUGHPUT = "GPU, throughput"

    @property
    def on_device(self) -> bool:
        return self in (DeploymentTarget.GPU_LATENCY, DeploymentTarget.GPU_THROUGHPUT)

    @property
    def latency(self) -> bool:
        return self in (DeploymentTarget.CPU_LATENCY, DeploymentTarget.GPU_LATENCY)


@dataclass(frozen=True)
class Recommendation:
    target: DeploymentTarget
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
    p50_low_us: float | None = None
    p50_high_us: float | None = None
    configuration: str = ""  # the tuned configuration whose figures these are; "" for the runtime's defaults
    ties: tuple[str, ...] = ()  # passing candidates whose p50 interval overlaps this one's ("artifact (runtime)")
    kept_float_layers: tuple[str, ...] = ()  # an int8 file's layers kept in float (--keep-float, or found by --max-drop)
    eight_bit_weights: float | None = None  # the share of the file's weights stored in 8 bits, as export read it


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
    p50_low_us: float
    p50_high_us: float
    configuration: str = ""

    @classmethod
    def of(cls, row: BenchResult) -> Measured | None:
        if not row.measured or row.provider_used is None or row.batch_size is None or row.p50_us is None or row.images_per_second is None:
            return None
        return cls(row.artifact, row.runtime, row.format, row.provider_used, row.batch_size, row.p50_us, row.images_per_second,
                   row.p50_low_us if row.p50_low_us is not None else row.p50_us, row.p50_high_us if row.p50_high_us is not None else row.p50_us)

    def tuned(self, tuning: Sequence[TuneResult]) -> Measured:
        """The tuned configuration's figures for this artifact, runtime and batch, when --tune found a faster one."""
        for item in tuning:
            if (item.artifact, item.runtime, item.batch_size) == (self.artifact, self.runtime, self.batch_size) and item.best_p50_us < self.p50_us:
                return replace(self, p50_us=item.best_p50_us, images_per_second=item.best_images_per_second, p50_low_us=item.best_p50_low_us,
                               p50_high_us=item.best_p50_high_us, configuration=item.label)
        return self

    def overlaps(self, other: Measured) -> bool:
        return self.p50_low_us <= other.p50_high_us and other.p50_low_us <= self.p50_high_us


def measured(rows: Sequence[BenchResult], target: DeploymentTarget, tuning: Sequence[TuneResult] = ()) -> list[Measured]:
    """Rows that count for a target: measured (with tuned figures where --tune found faster ones), on the target's kind
    of device, at batch 1 for latency."""
    found = [item.tuned(tuning) for item in map(Measured.of, rows) if item is not None]
    return [item for item in found if item.backend.on_device == target.on_device and (item.batch_size == 1 or not target.latency)]


def score(target: DeploymentTarget) -> Callable[[Measured], float]:
    """Higher is better: images/s for throughput, the inverse of p50 for latency."""
    return (lambda item: 1e6 / item.p50_us) if target.latency else (lambda item: item.images_per_second)


def speedup(best: Measured, others: list[Measured], target: DeploymentTarget) -> float | None:
    """How much faster `best` is than the best of `others` (the fp32 file, or the Keras call), on the same metric."""
    if not others:
        return None
    key = score(target)
    return key(best) / max(key(item) for item in others)


def recommend(parity: Sequence[Judged], rows: Sequence[BenchResult], entries: Sequence[ArtifactEntry],
              tuning: Sequence[TuneResult] = ()) -> list[Recommendation]:
    passed = {(result.name, result.runtime): result for result in parity if result.passed}  # judged on the runtime it ships on
    files = {entry.name: entry for entry in entries}
    ran = [item for item in map(Measured.of, rows) if item is not None]
    choices = []
    for target in DeploymentTarget:
        candidates = [item for item in measured(rows, target, tuning) if (item.artifact, item.runtime) in passed]
        if not candidates:
            continue
        best = max(candidates, key=score(target))
        ties = tuple(f"{item.artifact} ({item.backend.label})" for item in candidates
                     if item is not best and item.batch_size == best.batch_size and item.overlaps(best))
        fp32 = [item for item in measured(rows, target) if item.artifact == FP32_REFERENCE and (not target.latency or item.batch_size == best.batch_size)]
        keras = [item for item in ran if item.format is ArtifactFormat.KERAS and (not target.latency or item.batch_size == 1)]
        verdict = passed[best.artifact, best.runtime]
        choices.append(
            Recommendation(
                target=target, artifact=best.artifact, backend=best.backend, batch_size=best.batch_size, p50_us=best.p50_us,
                images_per_second=best.images_per_second, delta_points=verdict.delta_points, agreement=verdict.agreement,
                bytes=files[best.artifact].bytes if best.artifact in files else 0, speedup_vs_fp32=speedup(best, fp32, target), speedup_vs_keras=speedup(best, keras, target),
                p50_low_us=best.p50_low_us, p50_high_us=best.p50_high_us, configuration=best.configuration, ties=ties,
                kept_float_layers=kept_float_layers(files.get(best.artifact)), eight_bit_weights=eight_bit_weights(files.get(best.artifact)),
            )
        )
    return choices


def kept_float_layers(entry: ArtifactEntry | None) -> tuple[str, ...]:
    """The Keras layers an int8 file keeps in float, as its export recorded them."""
    quantization = entry.details.quantization if entry is not None else None
    return quantization.kept_float_layers if quantization is not None else ()


def eight_bit_weights(entry: ArtifactEntry | None) -> float | None:
    """The share of a file's weights stored in 8 bits, as export read it from the file."""
    weights = entry.details.weights if entry is not None else None
    return weights.eight_bit_share if weights is not None else None


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


@dataclass(frozen=True)
class Candidate:
    """A file that passed verify, as one point of size x batch-1 latency x accuracy (Olive's and OpenVINO's trade-off)."""

    artifact: str
    backend: Backend
    bytes: int
    p50_us: float
    p50_low_us: float
    p50_high_us: float
    accuracy: float
    kept_float_layers: tuple[str, ...]  # an int8 file's layers kept in float (export --keep-float / --max-drop)
    eight_bit_weights: float | None = None  # the share of its weights stored in 8 bits
    speedup_vs_fp32: float | None = None  # its batch-1 speed against its own format's fp32 file on the same runtime
    on_front: bool = False  # no other candidate beats it

    def beats(self, other: Candidate) -> bool:
        """At least as small, as accurate and as fast (a latency tie when the p50 intervals overlap), better in one of them."""
        no_worse = self.bytes <= other.bytes and self.accuracy >= other.accuracy and self.p50_low_us <= other.p50_high_us
        better = self.bytes < other.bytes or self.accuracy > other.accuracy or self.p50_high_us < other.p50_low_us
        return no_worse and better


def pareto(parity: Sequence[ParityResult], rows: Sequence[BenchResult], entries: Sequence[ArtifactEntry],
           tuning: Sequence[TuneResult] = ()) -> list[Candidate]:
    """Every passing artifact x runtime measured at batch 1 on the CPU, the ones no other beats marked (the Pareto front)."""
    passed = {(result.name, result.runtime): result for result in parity if result.passed and result.accuracy is not None}
    files = {entry.name: entry for entry in entries}
    batch1 = measured(rows, DeploymentTarget.CPU_LATENCY, tuning)
    fp32 = {(item.format, item.runtime): item for item in batch1  # the format's float-input fp32 file
            if item.artifact in files and files[item.artifact].precision is Precision.FP32 and files[item.artifact].input.dtype == "float32"}
    candidates = []
    for item in batch1:
        verdict, entry = passed.get((item.artifact, item.runtime)), files.get(item.artifact)
        if verdict is None or entry is None or verdict.accuracy is None:
            continue
        peer = fp32.get((item.format, item.runtime))
        candidates.append(Candidate(item.artifact, item.backend, entry.bytes, item.p50_us, item.p50_low_us, item.p50_high_us,
                                    verdict.accuracy, kept_float_layers(entry), eight_bit_weights(entry),
                                    speedup(item, [peer], DeploymentTarget.CPU_LATENCY) if peer is not None else None))
    return [replace(candidate, on_front=not any(other.beats(candidate) for other in candidates)) for candidate in candidates]
