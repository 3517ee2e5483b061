"""The result tables as plain text cells, shared by the terminal (rich) and the pipeline report (Markdown/HTML)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.runners import RUNTIMES, Arithmetic

if TYPE_CHECKING:
    from edgecnn.core.artifact_details import SearchResult, SearchStep
    from edgecnn.core.manifest import ArtifactEntry
    from edgecnn.report.ship import ArtifactSummary, Candidate, Recommendation
    from edgecnn.stages.bench import BenchResult
    from edgecnn.stages.explain import ExplainResult, LayerComparison
    from edgecnn.stages.tune import TuneResult
    from edgecnn.stages.verify import CorruptedSplit, ParityResult


@dataclass(frozen=True)
class Verdict:
    """A cell that judges: renderers color it by `passed`, never by parsing its text."""

    passed: bool
    text: str

    def __str__(self) -> str:
        return self.text


Cell = str | Verdict


@dataclass(frozen=True)
class TextTable:
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    left_columns: int  # the first N columns are text (left-aligned); the rest are numbers or verdicts


def text_table(headers: tuple[str, ...], items: Sequence[Any], row: Callable[[Any], tuple[Cell, ...]], left_columns: int) -> TextTable:
    """One row per item: each builder below is its headers and one function from a result to its cells."""
    return TextTable(headers, tuple(row(item) for item in items), left_columns)


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}"


def number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def shape_text(shape: Sequence[int | None]) -> str:
    return "x".join("N" if dim is None else str(dim) for dim in shape)


def export_rows(entries: Sequence[ArtifactEntry]) -> TextTable:
    def cells(entry: ArtifactEntry) -> tuple[Cell, ...]:
        return (entry.name, entry.path, entry.format.value, entry.precision.value, f"{entry.input.dtype} [{shape_text(entry.input.shape)}]",
                f"{entry.bytes / 1024:,.1f}", f"{entry.export_seconds:.1f}", entry.sha256[:12])

    return text_table(("artifact", "file", "format", "precision", "input", "size (KB)", "export (s)", "sha256"), entries, cells, 5)


def parity_rows(results: Sequence[ParityResult]) -> TextTable:
    def cells(item: ParityResult) -> tuple[Cell, ...]:
        verdict = item.status.value + "".join(f"; {failure.describe()}" for failure in item.failures)
        if item.saturating_kernels:
            verdict += "; 8-bit weights on a CPU without VNNI, whose int8 sums saturate: export with --reduce-range"
        if item.status.value == "FAIL":
            verdict += f"; layer by layer: edgecnn verify --explain {item.name}"
        return (item.name, item.precision.value, ran_on(item), number(item.accuracy, ".2%"), number(item.delta_points, "+.2f"), number(item.agreement, ".2%"),
                number(item.max_abs_diff, ".1e"), number(item.mean_abs_diff, ".1e"), number(item.mcnemar_p, ".3f"), Verdict(item.passed, verdict))

    headers = ("artifact", "precision", "ran on", "accuracy", "Δ points", "agreement", "max abs Δp", "mean abs Δp", "McNemar p", "result")
    return text_table(headers, results, cells, 3)


def corruption_rows(splits: Sequence[CorruptedSplit]) -> TextTable:
    """One row per corruption; per file, its accuracy / its top-1 agreement with Keras on the same corrupted images (in
    %), and the verdict of the plain split's criteria."""
    def cells(split: CorruptedSplit) -> tuple[Cell, ...]:
        return (split.corruption.kind.value, f"{split.corruption.parameter:g}", number(split.keras_accuracy, ".2%"),
                *(Verdict(row.passed, f"{percent(row.accuracy)}/{percent(row.agreement)} {row.status.value}") for row in split.results))

    files = tuple(f"{row.name} ({row.runtime.value})" if row.runtime else row.name for row in splits[0].results) if splits else ()
    return text_table(("corruption", "parameter", "Keras accuracy", *files), splits, cells, 1)


def ran_on(item: ParityResult) -> str:
    """The backend that ran the artifact, with the arithmetic when it was not plain fp32 (TF32, bf16: verify's bound follows)."""
    if item.provider_used is None:
        return RUNTIMES[item.runtime].label if item.runtime else "-"
    arithmetic = f" ({item.arithmetic.value})" if item.arithmetic and item.arithmetic is not Arithmetic.FP32 else ""
    return item.provider_used.label + arithmetic


def interval(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"{low:,.1f}–{high:,.1f}"


def latency_rows(results: Sequence[BenchResult]) -> TextTable:
    def cells(row: BenchResult) -> tuple[Cell, ...]:
        return (row.artifact, row.precision.value if row.precision else "-", row.provider_used.label if row.provider_used else "-",
                number(row.batch_size, "d"), number(row.p50_us, ",.1f"), interval(row.p50_low_us, row.p50_high_us),
                number(row.p99_us, ",.1f"), number(row.images_per_second, ",.0f"),
                number(row.session_create_ms, ",.1f"), number(row.first_run_us, ",.0f"), number(row.peak_memory_mib, ",.1f"),
                Verdict(False, f"{row.status.value.upper()}: {row.reason}") if not row.measured else row.placement or row.memory_note)

    headers = ("artifact", "precision", "ran on", "batch", "p50 µs", "p50 95% CI", "p99 µs", "images/s", "session ms", "first run µs",
               "peak MiB", "note")  # p90 and the mean are in bench.json
    return text_table(headers, results, cells, 3)


def explain_rows(result: ExplainResult) -> TextTable:
    def cells(row: LayerComparison) -> tuple[Cell, ...]:
        if row.sqnr_db is None:
            return (row.layer, row.kind, "-", "-", f"folded into {row.folded_into}" if row.folded_into else row.note)
        verdict = Verdict(not row.below_floor, f"first below {result.floor_db:g} dB" if row.below_floor else "")
        return (row.layer, row.kind, f"{row.sqnr_db:.1f}", f"{row.max_abs_diff:.2e}", verdict)

    return text_table(("layer", "Keras class", "SQNR dB", "max |Δ|", "note"), result.rows, cells, 2)


def search_rows(result: SearchResult) -> TextTable:
    def named(layers: tuple[str, ...]) -> str:
        return ", ".join(layers) if len(layers) <= 4 else f"{len(layers)} layers: {', '.join(layers[:2])}, …, {layers[-1]}"

    def cells(step: SearchStep) -> tuple[Cell, ...]:
        tiers = (("per-call ranges", step.dynamic_layers), ("int16", step.int16_layers), ("float", step.kept_float_layers))
        lifted = "; ".join(f"{tier} {named(layers)}" for tier, layers in tiers if layers) or "none"
        return (lifted, f"{step.accuracy:.2%}", f"{-step.drop_points or 0.0:+.2f}", f"{step.agreement:.2%}", f"{step.agreement_low:.2%}",
                f"{step.bytes / 1024:,.1f}", f"{step.p50_batch1_us:,.1f}", Verdict(step.within_budget, "within" if step.within_budget else "misses"))

    headers = ("out of int8 (tier: layers)", "accuracy", "Δ points", "agreement", "agreement ≥ (95%)", "size (KB)", "b1 p50 µs", "budget")
    return text_table(headers, result.steps, cells, 1)


def tuning_rows(results: Sequence[TuneResult]) -> TextTable:
    def cells(item: TuneResult) -> tuple[Cell, ...]:
        return (item.artifact, RUNTIMES[item.runtime].label, str(item.batch_size), item.label, f"{item.default_p50_us:,.1f}",
                f"{item.best_p50_us:,.1f}", f"{item.speedup:.2f}x", f"{item.best_images_per_second:,.0f}", str(item.tried))

    headers = ("artifact", "runtime", "batch", "best configuration", "default p50 µs", "best p50 µs", "speed-up", "images/s", "tried")
    return text_table(headers, results, cells, 4)


HOST_ERROR = "host_error"  # the key of a fleet report's row for a host that could not run: its one line


def with_hosts(table: TextTable, hosts: Sequence[str]) -> TextTable:
    """The same table with the host each row ran on as its first column (a fleet's rows side by side)."""
    return TextTable(("host", *table.headers), tuple((host, *row) for host, row in zip(hosts, table.rows, strict=True)), table.left_columns + 1)


def fleet_latency_rows(rows: Sequence[BenchResult]) -> TextTable:
    """The latency table with each row's host first: a fleet's rows side by side."""
    return with_hosts(latency_rows(rows), [row.host for row in rows])


def fleet_parity_rows(rows: Sequence[dict[str, Any]]) -> TextTable:
    """verify.json's rows from every host (a failed host is one row saying why)."""

    def cells(row: dict[str, Any]) -> tuple[Cell, ...]:
        if HOST_ERROR in row:
            return (row["host"], "-", "-", "-", "-", "-", "-", "-", Verdict(False, f"FAILED: {row[HOST_ERROR]}"))
        verdict = row["status"] + "".join(f"; {failure['check']}: {failure['value']} (limit {failure['limit']})" for failure in row.get("failures", ()))
        return (row["host"], row["name"], row["precision"], row.get("provider_label") or row.get("provider_used") or "-", number(row.get("accuracy"), ".2%"),
                number(row.get("delta_points"), "+.2f"), number(row.get("agreement"), ".2%"), number(row.get("max_abs_diff"), ".1e"),
                Verdict(bool(row["passed"]), verdict))

    return text_table(("host", "artifact", "precision", "ran on", "accuracy", "Δ points", "agreement", "max abs Δp", "result"), rows, cells, 4)


def fleet_selftest_rows(results: Sequence[dict[str, Any]]) -> TextTable:
    def cells(item: dict[str, Any]) -> tuple[Cell, ...]:
        if HOST_ERROR in item:
            return (item["host"], "-", "-", "-", "-", "-", Verdict(False, f"FAILED: {item[HOST_ERROR]}"))
        bound = "top-1 only" if item["bound"] is None else f"{item['bound']:.0e}"
        return (item["host"], Path(item["path"]).name, item["runtime"], f"{item['top1_agreeing']}/{item['goldens']}", f"{item['max_abs_diff']:.2e}",
                bound, Verdict(bool(item["passed"]), "PASS" if item["passed"] else "FAIL"))

    return text_table(("host", "file", "ran on", "top-1 agreeing", "max |Δp|", "bound", "result"), results, cells, 3)


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def ship_rows(choices: Sequence[Recommendation]) -> TextTable:
    def cells(item: Recommendation) -> tuple[Cell, ...]:
        runtime = f"{item.backend.label} ({item.configuration})" if item.configuration else item.backend.label
        kept = len(item.kept_float_layers)
        artifact = f"{item.artifact} ({kept} layer{'s' if kept > 1 else ''} in float)" if kept else item.artifact
        return (item.target.value, artifact, runtime, str(item.batch_size), f"{item.p50_us:,.1f}", interval(item.p50_low_us, item.p50_high_us),
                f"{item.images_per_second:,.0f}", number(item.delta_points, "+.2f"), number(item.agreement, ".2%"), f"{item.bytes / 1024:,.0f}",
                number(item.eight_bit_weights, ".0%"), times(item.speedup_vs_fp32), times(item.speedup_vs_keras),
                "tie with " + ", ".join(item.ties) if item.ties else "")

    headers = ("target", "ship", "runtime", "batch", "p50 µs", "p50 95% CI", "images/s", "Δ accuracy (points)", "agreement", "size (KB)",
               "8-bit weights", "vs fp32", "vs Keras", "ties (p50 intervals overlap)")
    return text_table(headers, choices, cells, 3)


def pareto_rows(candidates: Sequence[Candidate]) -> TextTable:
    def cells(item: Candidate) -> tuple[Cell, ...]:
        kept = f"{len(item.kept_float_layers)}: {', '.join(item.kept_float_layers)}" if item.kept_float_layers else ""
        return (item.artifact, item.backend.label, f"{item.bytes / 1024:,.0f}", number(item.eight_bit_weights, ".0%"), f"{item.p50_us:,.1f}",
                interval(item.p50_low_us, item.p50_high_us), times(item.speedup_vs_fp32), f"{item.accuracy:.2%}", kept,
                Verdict(True, "Pareto front") if item.on_front else "beaten")

    ordered = sorted(candidates, key=lambda item: (not item.on_front, item.bytes))
    headers = ("artifact", "runtime", "size (KB)", "8-bit weights", "b1 p50 µs", "p50 95% CI", "b1 vs fp32", "accuracy", "layers kept in float", "front")
    return text_table(headers, ordered, cells, 2)


def summary_rows(summaries: Sequence[ArtifactSummary]) -> TextTable:
    """Ultralytics-style: one row per artifact with its size, accuracy, verdict and best speeds."""

    def cells(item: ArtifactSummary) -> tuple[Cell, ...]:
        return (item.artifact, item.format.value, item.precision.value, f"{item.bytes / 1024:,.0f}", number(item.accuracy, ".2%"),
                Verdict(item.passed, "PASS" if item.passed else "FAIL"), number(item.p50_batch1_us, ",.1f"), number(item.best_images_per_second, ",.0f"))

    headers = ("artifact", "format", "precision", "size (KB)", "accuracy", "verify", "p50 batch 1 µs", "best images/s")
    return text_table(headers, summaries, cells, 3)
