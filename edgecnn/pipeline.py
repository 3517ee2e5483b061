"""Pipeline: train → export → verify → bench in one command, then a report of everything it measured.

It stops at the first failing stage: a user error ends the run with that error; a failed parity check still
writes the report (so the failure can be read) and skips the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.bench import BenchOptions, BenchReport, bench
from edgecnn.errors import EdgecnnError
from edgecnn.export import ExportOptions, ExportResult, FormatChoice, export
from edgecnn.files import read_json
from edgecnn.provenance import library_versions, machine_info, utc_now
from edgecnn.report import Section, write_report
from edgecnn.runners import SessionConfig
from edgecnn.tables import export_rows, latency_rows, parity_rows
from edgecnn.train import MODEL_FILENAME, REPORT_FILENAME, TrainOptions, train
from edgecnn.verify import VerifyOptions, VerifyResult, verify

STAGES = ("train", "export", "verify", "bench")


@dataclass(frozen=True)
class PipelineOptions:
    data: str | None = None
    epochs: int = 10
    augment: bool = False
    format: FormatChoice | None = None
    session: SessionConfig = SessionConfig()
    out: Path = Path("exports")
    skip_train: bool = False
    batch_sizes: tuple[int, ...] = (1, 64)
    bench_seconds: float = 0.3
    seed: int = 0


@dataclass(frozen=True)
class PipelineResult:
    train_report: dict[str, Any]
    export: ExportResult
    verify: VerifyResult
    bench: BenchReport | None
    report_markdown: Path
    report_html: Path

    @property
    def passed(self) -> bool:
        return self.verify.passed


def run_pipeline(options: PipelineOptions, stage_started: Callable[[str], None] = lambda stage: None) -> PipelineResult:
    out = Path(options.out)
    model_path = out / MODEL_FILENAME
    stage_started("train")
    if options.skip_train:
        if not model_path.is_file():
            raise EdgecnnError(f"--skip-train needs an existing model, and {model_path} does not exist", "--skip-train")
        train_report = read_json(out / REPORT_FILENAME, "training report") if (out / REPORT_FILENAME).is_file() else {}
    else:
        train_report = train(TrainOptions(data=options.data, epochs=options.epochs, augment=options.augment, seed=options.seed, out=out)).report
    stage_started("export")
    exported = export(ExportOptions(model=model_path, format=options.format, out=out, data=options.data))
    stage_started("verify")
    verified = verify(VerifyOptions(manifest=exported.manifest_path, data=options.data, session=options.session))
    benched = None
    if verified.passed:
        stage_started("bench")
        benched = bench(
            BenchOptions(
                manifest=exported.manifest_path, session=options.session,
                batch_sizes=options.batch_sizes, seconds=options.bench_seconds, data=options.data,
            )
        )
    markdown, html = write_report(out, "edgecnn report", report_sections(out, train_report, exported, verified, benched))
    return PipelineResult(train_report, exported, verified, benched, markdown, html)


def report_sections(
    out: Path, train_report: dict[str, Any], exported: ExportResult, verified: VerifyResult, benched: BenchReport | None
) -> list[Section]:
    data = train_report.get("data", {})
    hyper = train_report.get("hyperparameters", {})
    sections = [
        Section(
            "Data and training",
            bullets=(
                f"data source: `{data.get('spec', '?')}` ({data.get('kind', '?')}) {data.get('note', '')}".rstrip(),
                f"training images: {data.get('fit_size', '?')} (+{data.get('validation_size', 0)} validation); test images: {data.get('test_size', '?')}",
                f"epochs {hyper.get('epochs', '?')}, batch {hyper.get('batch_size', '?')}, learning rate {hyper.get('learning_rate', '?')} "
                f"({hyper.get('schedule', '?')}), augmentation {'on' if hyper.get('augment') else 'off'}, seed {train_report.get('seed', '?')}",
                f"**test accuracy {train_report.get('test_accuracy', 0):.2%}** (loss {train_report.get('test_loss', 0):.4f}); "
                f"{train_report.get('images_per_second', 0):,.0f} training images/s",
            ),
            image=out / "train_curves.png",
        ),
        Section("Exported artifacts", table=export_rows(exported.artifacts)),
        Section(
            "Parity with Keras",
            text=f"Keras accuracy {verified.keras_accuracy:.2%} on {verified.test_size:,} test images. Each artifact's sha256 was checked against the manifest first.",
            table=parity_rows(verified.results),
            image=verified.confusion_path,
        ),
    ]
    if benched is not None:
        raw = benched.report
        sections.append(
            Section(
                "Latency",
                text=f"{raw['settings']['threads']} threads, {raw['machine']['cpu']} ({raw['machine']['cpu_count']} cores); per-call times after warm-up, input pre-bound.",
                table=latency_rows(benched.results),
                image=benched.chart_path,
            )
        )
    else:
        sections.append(Section("Latency", text="Not measured: the parity check failed, so the benchmark was skipped."))
    sections.append(
        Section(
            "Provenance",
            bullets=(
                f"created {utc_now()} on {machine_info()['cpu']}",
                f"Keras model `{exported.model.path}` sha256 {exported.model.sha256}",
                "data sha256 " + str(data.get("sha256", "?")),
                ", ".join(f"{name} {version}" for name, version in library_versions().items()),
            ),
        )
    )
    return sections
