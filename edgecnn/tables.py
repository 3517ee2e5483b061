"""The result tables as plain text cells, shared by the terminal (rich) and the pipeline report (Markdown/HTML)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgecnn.bench import BenchResult
    from edgecnn.tune import TuneResult
    from edgecnn.manifest import ArtifactEntry
    from edgecnn.verify import ParityResult

SHORT_PROVIDER_NAMES = {
    "CPUExecutionProvider": "ORT CPU",
    "CUDAExecutionProvider": "ORT CUDA",
    "TensorrtExecutionProvider": "ORT TensorRT",
    "LiteRT (XNNPACK, CPU)": "LiteRT CPU",
    "Keras (TensorFlow, CPU)": "Keras",
}


@dataclass(frozen=True)
class TextTable:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    left_columns: int  # the first N columns are text (left-aligned); the rest are numbers or verdicts


def number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def shape_text(shape: Sequence[int | None]) -> str:
    return "x".join("N" if dim is None else str(dim) for dim in shape)


def export_rows(entries: Sequence[ArtifactEntry]) -> TextTable:
    return TextTable(
        ("artifact", "file", "format", "precision", "input", "size (KB)", "export (s)", "sha256"),
        tuple(
            (entry.name, entry.path, entry.format.value, entry.precision.value, f"{entry.input.dtype} [{shape_text(entry.input.shape)}]",
             f"{entry.bytes / 1024:,.1f}", f"{entry.export_seconds:.1f}", entry.sha256[:12])
            for entry in entries
        ),
        left_columns=5,
    )


def parity_rows(results: Sequence[ParityResult]) -> TextTable:
    return TextTable(
        ("artifact", "precision", "accuracy", "Δ points", "agreement", "max abs Δp", "mean abs Δp", "McNemar p", "result"),
        tuple(
            (item.name, item.precision, number(item.accuracy, ".2%"), number(item.delta_points, "+.2f"), number(item.agreement, ".2%"),
             number(item.max_abs_diff, ".1e"), number(item.mean_abs_diff, ".1e"), number(item.mcnemar_p, ".3f"),
             item.status.value + "".join(f"; {failure.describe()}" for failure in item.failures))
            for item in results
        ),
        left_columns=2,
    )


def latency_rows(results: Sequence[BenchResult]) -> TextTable:
    return TextTable(
        ("artifact", "precision", "provider used", "batch", "p50 µs", "p90 µs", "p99 µs", "mean µs", "images/s", "session ms", "first run µs", "note"),
        tuple(
            (row.artifact, row.precision, SHORT_PROVIDER_NAMES.get(row.provider_used, row.provider_used), number(row.batch_size, "d"),
             number(row.p50_us, ",.1f"), number(row.p90_us, ",.1f"), number(row.p99_us, ",.1f"), number(row.mean_us, ",.1f"),
             number(row.images_per_second, ",.0f"), number(row.session_create_ms, ",.1f"), number(row.first_run_us, ",.0f"),
             f"FAILED: {row.reason}" if row.failed else row.placement)
            for row in results
        ),
        left_columns=3,
    )


def tuning_rows(results: Sequence[TuneResult]) -> TextTable:
    from edgecnn.tune import label

    return TextTable(
        ("artifact", "batch", "best configuration", "default p50 µs", "best p50 µs", "speed-up", "images/s", "tried"),
        tuple(
            (item.artifact, str(item.batch_size), label(item.best), f"{item.default_p50_us:,.1f}", f"{item.best_p50_us:,.1f}",
             f"{item.speedup:.2f}x", f"{item.best_images_per_second:,.0f}", str(item.tried))
            for item in results
        ),
        left_columns=3,
    )
