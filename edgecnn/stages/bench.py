"""Bench stage: latency and throughput of each artifact per execution provider and batch size.

What is timed, per call, with `time.perf_counter_ns`: one inference on a fixed batch of test digits whose input is
already encoded and bound (ONNX Runtime IO binding with pre-allocated input/output; LiteRT `set_tensor` +
`invoke`; Keras a direct call). Warm-up calls are excluded. Session creation and the first (cold) call are
reported separately, because that is what an app feels at start-up. On CUDA the input and output stay on the
device (IO binding) and the call synchronizes before the clock is read, so transfer time is not included.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.core.data import DataRequest, load_dataset
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.files import ensure_output_dir, write_json_atomic
from edgecnn.core.images import conform
from edgecnn.core.manifest import ArtifactFormat, Manifest, Precision, load_manifest
from edgecnn.core.plots import drawn, plot_latency
from edgecnn.core.provenance import THIS_MACHINE, Machine, hosted, library_versions, this_machine, utc_now
from edgecnn.measure.memory import peak_memory_mib
from edgecnn.measure.timing import DEFAULT_ROUNDS, DEFAULT_SECONDS, LatencyStats, Timed, TimingSettings, interleaved
from edgecnn.runners import (
    RUNTIMES,
    Backend,
    KerasRunner,
    PlacementError,
    Runner,
    RunOptions,
    RuntimeName,
    RuntimeRefused,
    artifact_format_of,
    check_usable,
    open_runner,
    plugin,
    runtime_packages,
    runtimes_for,
)
from edgecnn.stages.verify import judged_set

if TYPE_CHECKING:
    from edgecnn.stages.tune import TuneResult

REPORT_FILENAME = "bench.json"
CHART_FILENAME = "bench.png"
__all__ = ["DEFAULT_SECONDS", "BenchOptions", "BenchReport", "BenchResult", "RowStatus", "bench"]


@dataclass(frozen=True)
class BenchOptions:
    manifest: Path | None = Path("exports/manifest.json")
    models: tuple[Path, ...] = ()
    artifacts: tuple[str, ...] = ()
    run: RunOptions = RunOptions()  # runtimes, provider, device, TF32, strictness; threads 0 = every core (a fair comparison)
    batch_sizes: tuple[int, ...] = (1, 8, 64, 256)
    warmup: int = 50
    iterations: int | None = None
    seconds: float | None = None
    baseline_keras: bool = False
    data: str | None = None
    out: Path | None = None
    verify_hash: bool = True
    tune: bool = False
    rounds: int = DEFAULT_ROUNDS  # interleaved rounds per measurement (the p50's interval comes from them)
    memory: bool = True  # peak memory per artifact, runtime and batch size, measured in a child process

    def resolved_threads(self) -> int:
        """One thread count for every runtime, so the comparison is fair; default: all cores."""
        return self.run.threads or os.cpu_count() or 1

    def resolved_run(self) -> RunOptions:
        return replace(self.run, threads=self.resolved_threads())

    def timing(self) -> TimingSettings:
        return TimingSettings(self.warmup, self.iterations, self.seconds, self.rounds)

    def check(self) -> None:
        if not self.batch_sizes:
            raise EdgecnnError("at least one batch size is needed", "--batch-sizes")
        bad = [size for size in self.batch_sizes if size < 1]
        if bad:
            raise EdgecnnError(f"batch sizes must be positive, got {bad[0]}", "--batch-sizes")
        if self.rounds < 1:
            raise EdgecnnError(f"rounds must be at least 1, got {self.rounds}", "--rounds")
        if self.warmup < 0:
            raise EdgecnnError(f"warm-up must be 0 or more, got {self.warmup}", "--warmup")
        if self.iterations is not None and self.seconds is not None:
            raise EdgecnnError("give --iterations or --seconds, not both", "--iterations/--seconds")
        if self.iterations is not None and self.iterations < 1:
            raise EdgecnnError(f"iterations must be at least 1, got {self.iterations}", "--iterations")
        if self.seconds is not None and not self.seconds > 0:
            raise EdgecnnError(f"seconds must be positive, got {self.seconds}", "--seconds")
        if not self.models and self.manifest is None:
            raise EdgecnnError("name a manifest or at least one model file", "--manifest/--model")
        if self.tune and self.models:
            raise EdgecnnError("--tune checks each configuration against the Keras model, so it needs --manifest, not --model", "--tune")


class RowStatus(str, Enum):
    """A bench row holds timings, or says why the artifact could not run as asked.

    UNSUPPORTED: the provider works but has no kernel for some of the file's nodes (int8 QDQ on CUDA, say). That is
    a property of the file, stated in the row; it does not fail the run. FAILED: something that should have run did not.
    """

    MEASURED = "measured"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"


@dataclass(frozen=True)
class BenchResult:
    """One artifact on one provider at one batch size; a FAILED row keeps the artifact in the report with its reason."""

    artifact: str
    path: str
    format: ArtifactFormat
    precision: Precision | None  # None: a file named with --model, whose precision no manifest records
    runtime: RuntimeName | None  # None: the Keras baseline
    provider_used: Backend | None  # None: it did not run
    batch_size: int | None
    status: RowStatus = RowStatus.MEASURED
    reason: str = ""
    placement: str = ""
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    mean_us: float | None = None
    images_per_second: float | None = None
    iterations: int = 0
    session_create_ms: float | None = None
    first_run_us: float | None = None
    transfer_included: bool = True
    threads: int = 0
    p50_low_us: float | None = None  # the p50's 95 % interval over interleaved rounds (measure/timing.py)
    p50_high_us: float | None = None
    rounds: int = 0
    peak_memory_mib: float | None = None  # resident memory the session and batches up to this size added (measure/memory.py)
    memory_note: str = ""  # why the memory probe gave no figure
    host: str = THIS_MACHINE  # where it ran: the box's name for a row measured over SSH (--remote)

    @property
    def failed(self) -> bool:
        return self.status is RowStatus.FAILED

    @property
    def measured(self) -> bool:
        return self.status is RowStatus.MEASURED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "format": self.format.value,
            "precision": self.precision.value if self.precision else None,
            "runtime": self.runtime.value if self.runtime else None,
            "provider_used": self.provider_used.value if self.provider_used else None,
            "provider_label": self.provider_used.label if self.provider_used else None,
            "on_device": self.provider_used.on_device if self.provider_used else None,
            "status": self.status.value,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchResult:
        """A row as bench.json holds it (a box's rows come back this way), with its enums and backend restored."""
        known = {item.name for item in fields(cls)}
        backend = Backend(raw["provider_used"], raw.get("provider_label") or raw["provider_used"], bool(raw.get("on_device"))) if raw.get("provider_used") else None
        return cls(**{key: value for key, value in raw.items() if key in known} | {
            "format": ArtifactFormat(raw["format"]),
            "precision": Precision(raw["precision"]) if raw.get("precision") else None,
            "runtime": RuntimeName(raw["runtime"]) if raw.get("runtime") else None,
            "provider_used": backend,
            "status": RowStatus(raw["status"]),
        })


@dataclass(frozen=True)
class BenchReport:
    results: tuple[BenchResult, ...]
    report_path: Path
    chart_path: Path | None  # None on a device install without matplotlib
    options: BenchOptions  # what was asked, so a caller can say how it differs from the defaults
    threads: int
    machine: Machine
    tuning: tuple[TuneResult, ...] = ()

    @property
    def passed(self) -> bool:
        """False when any requested row could not be measured (the CLI exits 1)."""
        return not any(row.failed for row in self.results)


def bench(options: BenchOptions) -> BenchReport:
    options.check()
    check_usable(options.resolved_run())
    manifest = None if options.models or options.manifest is None else load_manifest(options.manifest)
    targets = collect_targets(options, manifest)
    out = ensure_output_dir(options.out or (manifest.folder if manifest else Path(options.models[0]).parent), "--out")
    judged = judged_set(manifest, options.data, options.verify_hash) if manifest is not None and manifest.model is not None else None
    if judged is not None:
        images, data_spec = judged.images, judged.source
    else:
        dataset = load_dataset(DataRequest(options.data))
        images, data_spec = dataset.x_test, dataset.source.spec
    if len(images) < max(options.batch_sizes):
        images = np.resize(images, (max(options.batch_sizes), *images.shape[1:]))
    results = measure_interleaved(targets, images, options)
    if options.memory:
        results = with_memory(results, targets, options)
    tuning: tuple[TuneResult, ...] = ()
    if options.tune and manifest is not None and judged is not None:
        from edgecnn.stages.tune import tune

        tuning = tuple(tune(targets, manifest, judged, images, options.batch_sizes, options.resolved_run(), options.timing()))
    report_path = out / REPORT_FILENAME
    machine = this_machine()
    write_json_atomic(report_path, report_payload(results, tuning, options, data_spec, machine))
    series: dict[str, list[tuple[int, float]]] = {}
    for row in results:
        if row.measured and row.provider_used is not None and row.batch_size is not None and row.p50_us is not None:
            series.setdefault(f"{row.artifact} ({row.provider_used.label})", []).append((row.batch_size, row.p50_us))
    title = f"p50 latency per image, {options.resolved_threads()} threads"
    chart_path = drawn(lambda path: plot_latency(series, path, title=title), out / CHART_FILENAME, "the latency chart")
    return BenchReport(tuple(results), report_path, chart_path, options, options.resolved_threads(), machine, tuning)


def timing_images(images: np.ndarray, runner: Runner) -> np.ndarray:
    """The test images in the size and color this model takes (a file named with --model may differ from the data)."""
    description = runner.description
    return conform(images, description.height, description.width, description.color)


def collect_targets(options: BenchOptions, manifest: Manifest | None) -> list[Timed]:
    """Artifacts from the manifest (hash-checked) or files named with --model, once per runtime that reads them; the
    Keras baseline if asked.

    On a GPU provider, files whose runtimes do not follow --provider (LiteRT runs on the CPU) are benched only when
    named with --artifact/--model or --runtime.
    """
    run = options.resolved_run()
    named = bool(options.artifacts or options.models or run.runtimes)
    targets: list[Timed] = []

    def add(name: str, path: Path, artifact_format: ArtifactFormat, precision: Precision | None, description: ModelDescription | None) -> None:
        for runtime in runtimes_for(artifact_format, run):
            if run.provider.on_device and not named and not RUNTIMES[runtime].follows_provider:
                continue
            runner = open_runner(artifact_format, path, run, description, runtime)
            targets.append(Timed(name, path, artifact_format, precision, runtime, runner))

    if manifest is None:
        for path in map(Path, options.models):
            add(path.name, path, artifact_format_of(path), None, None)
    else:
        description = manifest.model.description if manifest.model else None
        for entry in manifest.select(options.artifacts):
            add(entry.name, manifest.open(entry, options.verify_hash), entry.format, entry.precision, description)
    if options.baseline_keras:
        if manifest is None or manifest.model is None:
            raise EdgecnnError("--baseline keras needs a manifest with a model entry", "--baseline")
        # last: TensorFlow's thread pools outlive the model and would disturb whatever ran after it
        keras_path = manifest.resolve(manifest.model.path)
        targets.append(Timed("keras", keras_path, ArtifactFormat.KERAS, Precision.FP32, None, KerasRunner(keras_path, manifest.model.description)))
    return targets


def unrun_row(target: Timed, options: BenchOptions, status: RowStatus, reason: str) -> BenchResult:
    return BenchResult(
        artifact=target.name, path=str(target.path), format=target.format, precision=target.precision,
        runtime=target.runtime, provider_used=None, batch_size=None,
        status=status, reason=reason, threads=options.resolved_threads(),
    )


ROUND_WARMUP = 5  # untimed calls after re-binding a row for its round (a LiteRT interpreter re-plans on a new batch size)


@dataclass(frozen=True)
class Prepared:
    """One row to measure: its target, batch size, encoded input, first-call time and where its nodes ran."""

    target: Timed
    batch_size: int
    feed: np.ndarray
    first_run_us: float
    placement: str

    def bound(self) -> Callable[[], Any]:
        """Its call bound again for one round, warmed up (a LiteRT interpreter re-plans on a new batch size)."""
        call = self.target.runner.bound_call(self.feed)
        for _ in range(ROUND_WARMUP):
            call()
        return call


def measure_interleaved(targets: list[Timed], images: np.ndarray, options: BenchOptions) -> list[BenchResult]:
    """Every row's rounds interleaved (row A round 1, row B round 1, …, row A round 2, …), so a machine that slows down
    for a minute slows every row alike and widens their intervals instead of ranking them wrongly."""
    prepared: list[Prepared] = []
    refused: list[BenchResult] = []
    try:
        for target in targets:
            try:
                prepared.extend(prepare(target, timing_images(images, target.runner), options))
            except PlacementError as exc:  # the provider has no kernel for some nodes of this file: a row that says which
                refused.append(unrun_row(target, options, RowStatus.UNSUPPORTED, f"{exc.one_line()}; --allow-fallback runs those nodes on the CPU"))
            except RuntimeRefused as exc:  # this artifact cannot run on this runtime or device: a row that says why; the others go on
                refused.append(unrun_row(target, options, RowStatus.FAILED, exc.one_line()))
        stats = interleaved({index: row.bound for index, row in enumerate(prepared)}, options.timing())
    finally:
        for target in targets:
            target.runner.close()
        gc.collect()
    return [measured_row(row, stats[index], options) for index, row in enumerate(prepared)] + refused


def prepare(target: Timed, images: np.ndarray, options: BenchOptions) -> list[Prepared]:
    runner = target.runner
    runner.input_spec()  # creates the session / interpreter: timed by the runner
    placement = runner.placement()
    rows = []
    for batch_size in options.batch_sizes:
        feed = runner.encode(images[:batch_size])
        call = runner.bound_call(feed)
        first = time.perf_counter_ns()
        call()
        first_run_us = (time.perf_counter_ns() - first) / 1000.0
        for _ in range(options.warmup):
            call()
        rows.append(Prepared(target, batch_size, feed, first_run_us, placement.describe() if placement else ""))
    return rows


def measured_row(row: Prepared, stats: LatencyStats, options: BenchOptions) -> BenchResult:
    target, runner = row.target, row.target.runner
    return BenchResult(
        artifact=target.name,
        path=str(target.path),
        format=target.format,
        precision=target.precision,
        runtime=target.runtime,
        provider_used=runner.runtime,
        batch_size=row.batch_size,
        placement=row.placement,
        p50_us=round(stats.p50_us, 2),
        p90_us=round(stats.p90_us, 2),
        p99_us=round(stats.p99_us, 2),
        mean_us=round(stats.mean_us, 2),
        images_per_second=round(row.batch_size * 1e6 / stats.mean_us, 1),
        iterations=stats.iterations,
        session_create_ms=round(runner.session_create_ms, 2),
        first_run_us=round(row.first_run_us, 2),
        transfer_included=runner.transfer_included,
        threads=options.resolved_threads(),
        p50_low_us=round(stats.p50_low_us, 2),
        p50_high_us=round(stats.p50_high_us, 2),
        rounds=stats.rounds,
    )


def with_memory(results: list[BenchResult], targets: list[Timed], options: BenchOptions) -> list[BenchResult]:
    """Each measured artifact's peak memory per batch size, from one child process per artifact and runtime."""
    run = options.resolved_run()
    peaks: dict[tuple[str, RuntimeName | None], dict[int, float] | str] = {}
    for target in targets:
        if target.runtime is not None and any(row.artifact == target.name and row.runtime is target.runtime and row.measured for row in results):
            peaks[target.name, target.runtime] = peak_memory_mib(target.format, target.path, target.runtime, run, target.runner.description,
                                                                 options.batch_sizes)
    filled = []
    for row in results:
        peak = peaks.get((row.artifact, row.runtime))
        if isinstance(peak, dict) and row.batch_size in peak:
            row = replace(row, peak_memory_mib=peak[row.batch_size])
        elif isinstance(peak, str):
            row = replace(row, memory_note=peak)
        filled.append(row)
    return filled


def report_payload(
    results: list[BenchResult], tuning: tuple[TuneResult, ...], options: BenchOptions, data_spec: str | None, machine: Machine
) -> dict[str, Any]:
    run = options.resolved_run()
    used = dict.fromkeys(row.runtime for row in results if row.runtime is not None)
    versions = library_versions(runtime_packages())
    return {
        "created": utc_now(),
        "passed": not any(row.failed for row in results),
        "results": hosted([row.to_dict() for row in results], THIS_MACHINE, machine, versions),
        "tuning": [item.to_dict() for item in tuning],
        "settings": {
            "runtimes": {name.value: plugin(name).describe(plugin(name).config(run)) for name in used},
            "provider_requested": run.provider.value,
            "allow_fallback": run.allow_fallback,
            "batch_sizes": list(options.batch_sizes),
            "threads": run.threads,
            "warmup": options.warmup,
            "iterations": options.iterations,
            "seconds": options.seconds if options.iterations is None else None,
            "rounds": options.rounds,
            "p50_interval": "95 % two-level bootstrap over the interleaved rounds and the calls within each (measure/timing.py)",
            "memory": ("peak resident memory added by creating the session and running batches up to each size, measured in a child "
                       "process per artifact and runtime (VmHWM against VmRSS after the runtime import; measure/memory.py)"
                       if options.memory else "not measured (--no-memory)"),
            "timed_call": "input pre-encoded and bound; output left in a pre-allocated runtime buffer",
            "transfer_time": "excluded on CUDA/TensorRT (IO binding on device, synchronized); included for host tensors",
        },
        "data": {"spec": data_spec, "input": "first batch_size images of the test split"},
        "manifest": str(options.manifest) if not options.models else None,
        "machine": machine.to_dict(),
        "versions": versions,
    }
