"""Terminal output for the CLI: rich tables and progress, kept apart from the stages that compute the values."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from edgecnn.manifest import ArtifactEntry

if TYPE_CHECKING:
    from edgecnn.bench import BenchResult
    from edgecnn.info import ModelInfo
    from edgecnn.predict import Prediction
    from edgecnn.verify import VerifyResult

SHORT_PROVIDER_NAMES = {
    "CPUExecutionProvider": "ORT CPU",
    "CUDAExecutionProvider": "ORT CUDA",
    "TensorrtExecutionProvider": "ORT TensorRT",
    "LiteRT (XNNPACK, CPU)": "LiteRT CPU",
    "Keras (TensorFlow, CPU)": "Keras",
}

console = Console()
if not console.is_terminal:
    console = Console(width=140)  # logs and CI: do not squeeze tables into 80 columns


@contextlib.contextmanager
def stage_progress(label: str) -> Iterator[Callable[[str], None]]:
    """A spinner naming the step under way; yields the callback a stage calls as it starts each step."""
    with console.status(f"{label}…") as status:
        yield lambda step: status.update(f"{label} {step}…")


@contextlib.contextmanager
def pipeline_progress(stages: Sequence[str]) -> Iterator[Callable[[str], None]]:
    """One bar over the pipeline's stages; each stage's own output (Keras epochs) prints above it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("pipeline", total=len(stages))
        started: list[str] = []

        def stage_started(stage: str) -> None:
            if started:
                progress.advance(task)
            started.append(stage)
            progress.update(task, description=f"pipeline: {stage} ({len(started)}/{len(stages)})")

        yield stage_started
        progress.update(task, completed=len(stages), description="pipeline: done")


def export_table(entries: Sequence[ArtifactEntry]) -> None:
    table = Table(title="exported artifacts")
    for column in ("artifact", "file", "format", "precision", "input", "size (KB)", "export (s)"):
        table.add_column(column, justify="right" if column in ("size (KB)", "export (s)") else "left")
    for entry in entries:
        shape = "x".join("N" if dim is None else str(dim) for dim in entry.input.shape)
        table.add_row(
            entry.name, entry.path, entry.format.value, entry.precision.value, f"{entry.input.dtype} {shape}",
            f"{entry.bytes / 1024:,.1f}", f"{entry.export_seconds:.1f}",
        )
    console.print(table)


def print_json_file(path: Path) -> None:
    """Machine-readable output: the report exactly as written, on stdout."""
    print(json.dumps(json.loads(Path(path).read_text()), indent=2))


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def verify_table(result: VerifyResult) -> None:
    table = Table(title=f"parity with Keras ({result.keras_accuracy:.2%} on {result.test_size:,} test images)")
    for column in ("artifact", "precision", "accuracy", "Δ points", "agreement", "max |Δp|", "mean |Δp|", "McNemar p", "result"):
        table.add_column(column, justify="left" if column in ("artifact", "precision", "result") else "right")
    for item in result.results:
        status = {"PASS": "[green]PASS[/]", "FAIL": "[red]FAIL[/]"}.get(item.status.value, f"[red]{item.status.value}[/]")
        if item.failures:
            status += " " + "; ".join(failure.describe() for failure in item.failures)
        table.add_row(
            item.name, item.precision, _number(item.accuracy, ".2%"), _number(item.delta_points, "+.2f"),
            _number(item.agreement, ".2%"), _number(item.max_abs_diff, ".1e"), _number(item.mean_abs_diff, ".1e"),
            _number(item.mcnemar_p, ".3f"), status,
        )
    console.print(table)


def bench_table(results: Sequence[BenchResult]) -> None:
    table = Table(title="latency per call (µs) and throughput")
    for column in ("artifact", "precision", "provider used", "batch", "p50", "p90", "p99", "mean", "images/s", "session (ms)", "first run"):
        table.add_column(column, justify="left" if column in ("artifact", "precision", "provider used") else "right")
    for row in results:
        table.add_row(
            row.artifact, row.precision, SHORT_PROVIDER_NAMES.get(row.provider_used, row.provider_used), str(row.batch_size), f"{row.p50_us:,.1f}", f"{row.p90_us:,.1f}",
            f"{row.p99_us:,.1f}", f"{row.mean_us:,.1f}", f"{row.images_per_second:,.0f}", f"{row.session_create_ms:,.1f}",
            f"{row.first_run_us:,.0f}",
        )
    console.print(table)


def print_predictions(predictions: Sequence[Prediction], as_json: bool) -> None:
    if as_json:
        print(json.dumps([item.to_dict() for item in predictions], indent=2))
        return
    for item in predictions:
        ranked = "  ".join(f"{digit}: {probability:.3f}" for digit, probability in item.top)
        print(f"{item.path}: {item.digit}   ({ranked})")


def print_model_info(info: ModelInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    print(f"{info.path}\n  format   {info.format}\n  size     {info.bytes:,} bytes\n  sha256   {info.sha256}")
    for role, tensors in (("input", info.inputs), ("output", info.outputs)):
        for tensor in tensors:
            shape = "x".join("N" if dim is None else str(dim) for dim in tensor["shape"])
            quantized = f", scale {tensor['scale']:.6g}, zero point {tensor['zero_point']}" if tensor.get("scale") else ""
            print(f"  {role:8s} {tensor['name']}: {tensor['dtype']} [{shape}]{quantized}")
    if info.opset:
        print("  opset    " + ", ".join(f"{domain} {version}" for domain, version in info.opset.items()))
    if info.ops:
        print("  ops      " + ", ".join(f"{op} x{count}" for op, count in sorted(info.ops.items())))
    for key, value in info.metadata.items():
        print(f"  meta     {key} = {value}")
