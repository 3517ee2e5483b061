"""Terminal output for the CLI: rich tables and progress, kept apart from the stages that compute the values.

rich is imported where a table or a bar is drawn, not with this module: `info --json` and the short commands print
plain text, and rich's import (~40 ms) would be most of their start-up beyond the runtime's own. predict's output
lives in `predictions.py`, without these tables.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.core.manifest import ArtifactEntry
from edgecnn.core.provenance import Int8Sums
from edgecnn.report.tables import (
    Cell,
    TextTable,
    Verdict,
    corruption_rows,
    explain_rows,
    export_rows,
    fleet_latency_rows,
    fleet_parity_rows,
    fleet_selftest_rows,
    latency_rows,
    parity_rows,
    search_rows,
    shape_text,
    ship_rows,
    tuning_rows,
)

if TYPE_CHECKING:
    from rich.console import Console

    from edgecnn.core.artifact_details import SearchResult
    from edgecnn.report.ship import Recommendation
    from edgecnn.stages.bench import BenchResult
    from edgecnn.stages.doctor import DoctorReport
    from edgecnn.stages.explain import ExplainResult
    from edgecnn.stages.info import ModelInfo
    from edgecnn.stages.selftest import SelftestResult
    from edgecnn.stages.tune import TuneResult
    from edgecnn.stages.verify import VerifyResult

@functools.cache
def console() -> Console:
    from rich.console import Console

    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=140)  # logs and CI: do not squeeze tables into 80 columns


@contextlib.contextmanager
def stage_progress(label: str) -> Iterator[Callable[[str], None]]:
    """A spinner naming the step under way; yields the callback a stage calls as it starts each step."""
    with console().status(f"{label}…") as status:
        yield lambda step: status.update(f"{label} {step}…")


@contextlib.contextmanager
def pipeline_progress(stages: Sequence[str]) -> Iterator[Callable[[str], None]]:
    """One bar over the pipeline's stages; each stage's own output (Keras epochs) prints above it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console()) as progress:
        task = progress.add_task("pipeline", total=len(stages))
        started: list[str] = []

        def stage_started(stage: str) -> None:
            if started:
                progress.advance(task)
            started.append(stage)
            progress.update(task, description=f"pipeline: {stage} ({len(started)}/{len(stages)})")

        yield stage_started
        progress.update(task, completed=len(stages), description="pipeline: done")


def print_table(title: str, text: TextTable) -> None:
    """A shared text table as a rich table; verdict cells are colored."""
    from rich.table import Table

    table = Table(title=title)
    for index, header in enumerate(text.headers):
        table.add_column(header, justify="left" if index < text.left_columns else "right", no_wrap=index == 0)  # a row's name stays whole
    for row in text.rows:
        table.add_row(*(rich_cell(cell) for cell in row))
    console().print(table)


def rich_cell(cell: Cell) -> str:
    """Cells are text, not rich markup (reasons quote options and shapes in brackets); verdicts are colored."""
    from rich.markup import escape

    if isinstance(cell, Verdict):
        return f"[{'green' if cell.passed else 'red'}]{escape(cell.text)}[/]"
    return escape(cell)


def export_table(entries: Sequence[ArtifactEntry]) -> None:
    print_table("exported artifacts", export_rows(entries))


def written(*paths: Path | None) -> str:
    """The files a command wrote, for its last line (a chart skipped on a device install is not listed)."""
    return ", ".join(str(path) for path in paths if path is not None)


def print_json_file(path: Path) -> None:
    """Machine-readable output: the report exactly as written, on stdout."""
    print(json.dumps(json.loads(Path(path).read_text()), indent=2))


def verify_table(result: VerifyResult) -> None:
    from edgecnn.stages.verify import compared_text

    print_table(f"{result.model_name}: parity with Keras ({result.keras_accuracy:.2%} on {result.test_size:,} test images; "
                f"compared {compared_text(result.description)})", parity_rows(result.results))
    if result.corrupted:
        print_table(f"on corrupted copies of the same images (severity {result.corrupted[0].corruption.severity}): each file's accuracy % / "
                    "top-1 agreement % with Keras on the same corrupted images, judged like the plain split", corruption_rows(result.corrupted))


def explain_table(result: ExplainResult) -> None:
    print_table(f"{result.artifact} ({result.precision.value}) against Keras, layer by layer, on {result.images} test images "
                f"({result.note})", explain_rows(result))
    first = result.first_below_floor
    print(f"first layer below {result.floor_db:g} dB: {first.layer}" if first else f"every layer is above {result.floor_db:g} dB")
    print(f"wrote {written(result.report_path, result.chart_path)}")


def search_table(artifact: str, result: SearchResult) -> None:
    verdict = "met" if result.met else "NOT met"
    print_table(f"{artifact}: --max-drop {result.max_drop_points:g} points, agreement ≥ {result.min_agreement:.0%} on {result.validation} — "
                f"{verdict} after {len(result.steps)} step(s), {result.seconds:.0f} s", search_rows(result))
    for refusal in result.refused:
        print(f"  not a step (refused): {refusal}")


def bench_table(results: Sequence[BenchResult]) -> None:
    print_table("latency per call and throughput", latency_rows(results))


def ship_table(choices: Sequence[Recommendation]) -> None:
    print_table("what to ship (fastest artifact that passed verify, per target)", ship_rows(choices))


def fleet_bench_tables(rows: Sequence[BenchResult], ship: Sequence[tuple[str, Recommendation]]) -> None:
    """A fleet's benchmark: every host's rows in one table, and what to ship on each host (one line per host and target)."""
    if rows:
        print_table("latency per call and throughput, per host", fleet_latency_rows(rows))
    if ship:
        print("what to ship on each host (the fastest artifact that passed verify there; bench.json has the figures):")
    for host, choice in ship:
        print(f"  {host}, {choice.target.value} → {choice.artifact} ({choice.backend.label}, batch {choice.batch_size}: p50 {choice.p50_us:,.1f} µs, "
              f"{choice.images_per_second:,.0f} images/s)")


def fleet_verify_table(rows: Sequence[dict[str, Any]]) -> None:
    print_table("parity with Keras on each host (the stored reference)", fleet_parity_rows(rows))


def fleet_selftest_table(results: Sequence[dict[str, Any]]) -> None:
    print_table("selftest on each host: the file's golden inputs against the Keras answers it carries", fleet_selftest_rows(results))


def tuning_table(results: Sequence[TuneResult]) -> None:
    print_table("bench --tune: fastest configuration that passes verify (session options in bench.json)", tuning_rows(results))


def print_model_info(info: ModelInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    print(f"{info.path}\n  format   {info.format.value}\n  size     {info.bytes:,} bytes\n  sha256   {info.sha256}")
    for role, tensors in (("input", info.inputs), ("output", info.outputs)):
        for tensor in tensors:
            quantized = f", scale {tensor.scale:.6g}, zero point {tensor.zero_point}" if tensor.scale else ""
            print(f"  {role:8s} {tensor.name}: {tensor.dtype} [{shape_text(tensor.shape)}]{quantized}")
    if info.opset:
        print("  opset    " + ", ".join(f"{domain} {version}" for domain, version in info.opset.items()))
    if info.ops:
        print("  ops      " + ", ".join(f"{op} x{count}" for op, count in sorted(info.ops.items())))
    for key, value in info.metadata.items():
        print(f"  meta     {key} = {value}")


INT8_SUMS = {
    Int8Sums.VNNI: "VNNI (32-bit sums): ONNX int8 files with 8-bit weights run as quantized",
    Int8Sums.SATURATING: "x86 without VNNI (16-bit pair sums saturate on 8-bit weights): export gives ONNX int8 files 7-bit weights here "
                         "(--reduce-range)",
    Int8Sums.UNKNOWN: "not x86 (or its flags unreadable): export keeps 8-bit weights",
}


def print_doctor(report: DoctorReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    built = f", built for CUDA {report.cuda_built_for}" if report.cuda_built_for else ""
    print(f"onnxruntime  {report.package} {report.onnxruntime}{built}")
    print(f"providers    {', '.join(report.available_providers)}")
    for gpu in report.gpus or ("none seen (nvidia-smi not found or no device)",):
        print(f"gpu          {gpu}")
    print(f"cpu int8     {INT8_SUMS[report.int8_dot]}")
    for library in report.libraries:
        state = f"found   {library.path}" if library.found else "MISSING"
        print(f"library      {library.file:26s} {library.needed_for:9s} {state}")
    verdict = "usable" if report.usable else f"NOT usable: {report.problem}"
    print(f"{report.provider.value:12s} {verdict}")
    if report.fix:
        print(f"fix          {report.fix}")


def print_selftest(result: SelftestResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    bound = "top-1 only" if result.bound is None else f"bound {result.bound:.0e}"
    print(f"{'PASS' if result.passed else 'FAIL'}  {result.path.name} on {result.runtime.label}: {result.goldens} goldens, top-1 "
          f"{result.agreeing}/{result.goldens}, max |Δp| {result.max_abs_diff:.2e} ({bound}: {result.basis})")
