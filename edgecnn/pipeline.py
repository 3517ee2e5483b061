"""Pipeline: train → export → verify → bench in one command, then a report of everything it measured. With
`--model` a user's Keras model takes the place of training.

It stops at the first failing stage: a user error ends the run with that error; a failed parity check still
writes the report (so the failure can be read) and skips the benchmark. The report's sections are built here once
from the stages' typed results; `report` renders them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecnn.core.corruptions import Corruption
from edgecnn.core.description import Color, DescriptionOverrides, ModelDescription, Preprocess
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.plots import FrontPoint, drawn, plot_front
from edgecnn.core.provenance import library_versions, this_machine, utc_now
from edgecnn.core.train_report import REPORT_FILENAME, TrainReport
from edgecnn.measure.thresholds import Thresholds
from edgecnn.report.document import Bold, Code, Section, write_report
from edgecnn.report.ship import Recommendation, pareto, recommend, summarize
from edgecnn.report.tables import corruption_rows, export_rows, latency_rows, pareto_rows, parity_rows, ship_rows, summary_rows
from edgecnn.runners import RunOptions, runtime_packages
from edgecnn.stages.bench import DEFAULT_SECONDS, BenchOptions, BenchReport, bench
from edgecnn.stages.export import ExportOptions, ExportResult, FormatChoice, export
from edgecnn.stages.train import TrainOptions, train
from edgecnn.stages.verify import VerifyOptions, VerifyResult, verdict_exit_code, verify

STAGES = ("train", "export", "verify", "bench")


@dataclass(frozen=True)
class PipelineOptions:
    data: str | None = None
    image_size: tuple[int, int] | None = None
    color: Color | None = None
    model: Path | None = None  # a user's .keras model instead of training one
    describe: DescriptionOverrides = DescriptionOverrides()  # for --model: what detection cannot know
    preprocess: Preprocess | None = None  # for training: predict's recipe (default: by data source)
    replace: bool = False  # replace another model's artifacts in --out
    epochs: int = 10
    augment: bool = False
    format: FormatChoice | None = None
    run: RunOptions = RunOptions()  # verify runs each file on the first of these runtimes that reads it; bench on all
    max_drop: float | None = None  # export searches int8 files within it, and verify holds them to it
    out: Path = Path("exports")
    skip_train: bool = False
    batch_sizes: tuple[int, ...] = (1, 64)  # fewer and shorter than bench's defaults: the report states the difference
    bench_seconds: float = 0.3
    seed: int = 0
    corruptions: tuple[Corruption, ...] = ()  # verify also judges every file on these corrupted copies (the report shows them)


@dataclass(frozen=True)
class PipelineResult:
    train_report: TrainReport | None
    export: ExportResult
    verify: VerifyResult
    bench: BenchReport | None
    ship: tuple[Recommendation, ...]
    report_markdown: Path
    report_html: Path

    @property
    def passed(self) -> bool:
        return self.verify.passed and not self.export.failed

    @property
    def exit_code(self) -> int:
        """verify's exit code (0 all PASS, 1 any FAIL, 3 INCONCLUSIVE only), and 1 when a format could not be made."""
        return 1 if self.export.failed else self.verify.exit_code


def run_pipeline(options: PipelineOptions, stage_started: Callable[[str], None] = lambda stage: None) -> PipelineResult:
    out = Path(options.out)
    stage_started("train")
    model_path, train_report, trained_now = model_to_export(options, out)
    stage_started("export")
    exported = export(ExportOptions(
        model=model_path, format=options.format, out=out, data=options.data, image_size=options.image_size, color=options.color,
        describe=options.describe, replace=options.replace or trained_now,  # a model trained into --out is that folder's model now
        max_drop=options.max_drop,
    ))
    if train_report is not None and train_report.model.sha256 != exported.model.sha256:
        train_report = None  # the train.json in --out describes another model
    stage_started("verify")
    verified = verify(VerifyOptions(manifest=exported.manifest_path, data=options.data, run=options.run,
                                    overrides=Thresholds(max_drop_points=options.max_drop), corruptions=options.corruptions, seed=options.seed))
    benched = None
    if verdict_exit_code(verified.results) != 1:  # every file PASSed the plain split, or only too few images decided some
        stage_started("bench")
        benched = bench(bench_options(options, exported.manifest_path))
    rows = benched.results if benched else ()
    ship = tuple(recommend(verified.results, rows, exported.artifacts, benched.tuning if benched is not None else ()))
    sections = report_sections(out, options, train_report, exported, verified, benched, ship)
    markdown, html = write_report(out, "edgecnn report", sections)
    return PipelineResult(train_report, exported, verified, benched, ship, markdown, html)


def model_to_export(options: PipelineOptions, out: Path) -> tuple[Path, TrainReport | None, bool]:
    """(the model, its training report if any, whether it was trained now): --model, --skip-train's earlier model, or train."""
    report_path = out / REPORT_FILENAME
    if options.model is not None:
        if options.skip_train:
            raise EdgecnnError("--model already skips training: give one of --model and --skip-train", "--skip-train")
        return Path(options.model), TrainReport.from_json(report_path) if report_path.is_file() else None, False
    if options.skip_train:
        if not report_path.is_file():
            raise EdgecnnError(f"--skip-train needs a model trained into {out}, and {report_path} does not exist (or pass --model)", "--skip-train")
        report = TrainReport.from_json(report_path)
        if not (out / report.model.path).is_file():
            raise EdgecnnError(f"--skip-train needs an existing model, and {out / report.model.path} does not exist", "--skip-train")
        return out / report.model.path, report, False
    result = train(TrainOptions(
        data=options.data, image_size=options.image_size, color=options.color, preprocess=options.preprocess, epochs=options.epochs,
        augment=options.augment, seed=options.seed, out=out,
    ))
    return result.model_path, result.report, True


def bench_options(options: PipelineOptions, manifest: Path) -> BenchOptions:
    return BenchOptions(
        manifest=manifest, run=options.run, batch_sizes=options.batch_sizes, seconds=options.bench_seconds, data=options.data,
        baseline_keras=True,
    )


def bench_differences(used: BenchOptions) -> str:
    """How the pipeline's benchmark differs from `edgecnn bench`'s defaults (it is shorter, and adds Keras)."""
    defaults = BenchOptions()
    differences = []
    if used.batch_sizes != defaults.batch_sizes:
        differences.append(f"batch sizes {','.join(map(str, used.batch_sizes))} (bench: {','.join(map(str, defaults.batch_sizes))})")
    if used.seconds is not None:
        differences.append(f"{used.seconds:g} s per measurement (bench: {DEFAULT_SECONDS:g} s)")
    if used.baseline_keras != defaults.baseline_keras:
        differences.append("the Keras call timed as a baseline (bench: only with --baseline keras)")
    return "; ".join(differences)


def report_sections(
    out: Path, options: PipelineOptions, train_report: TrainReport | None, exported: ExportResult, verified: VerifyResult,
    benched: BenchReport | None, ship: tuple[Recommendation, ...],
) -> list[Section]:
    rows = benched.results if benched else ()
    return [
        ship_section(ship, verified.model_name, verified.description),
        Section("Every artifact", table=summary_rows(summarize(verified.results, rows, exported.artifacts))),
        candidates_section(out, verified, benched, exported),
        training_section(out, train_report),
        Section("Exported artifacts", table=export_rows(exported.artifacts)),
        Section(
            "Parity with Keras",
            text=(f"Keras accuracy {verified.keras_accuracy:.2%} on {verified.test_size:,} test images; each artifact on the runtime "
                  "its row names. Each artifact's sha256 was checked against the manifest first.",),
            table=parity_rows(verified.results),
            image=verified.confusion_path,
        ),
        *corruptions_section(verified),
        latency_section(benched),
        provenance_section(exported, train_report),
    ]


def corruptions_section(verified: VerifyResult) -> tuple[Section, ...]:
    if not verified.corrupted:
        return ()
    severity = verified.corrupted[0].corruption.severity
    return (Section(
        "Robustness on corrupted pictures",
        text=(f"Every file on corrupted copies of the same test images (severity {severity} of 5, seeded; verify.json records each "
              "corruption's parameter), against the Keras model's answers on the same corrupted images, with the plain split's "
              "criteria. Each cell: accuracy % / top-1 agreement % with Keras, and the verdict.",),
        table=corruption_rows(verified.corrupted),
        image=verified.corruptions_chart,
    ),)


def ship_section(ship: tuple[Recommendation, ...], model_name: str, description: ModelDescription) -> Section:
    if not ship:
        return Section("What to ship", text=(model_line(model_name, description),
                                             " Nothing measured: the parity check failed, so the benchmark was skipped."))
    return Section(
        "What to ship",
        text=(model_line(model_name, description), " Per target, the fastest artifact that passed verify; speed-ups are against ",
              Code("onnx-fp32"), " on the same device and batch, and against the Keras call."),
        table=ship_rows(ship),
    )


def candidates_section(out: Path, verified: VerifyResult, benched: BenchReport | None, exported: ExportResult) -> Section:
    candidates = pareto(verified.results, benched.results, exported.artifacts, benched.tuning) if benched else []
    if not candidates:
        return Section("Size × latency × accuracy", text=("No file both passed verify and was measured at batch 1 on the CPU.",))
    points = [FrontPoint(f"{item.artifact} ({item.backend.label})", item.p50_us, item.accuracy, item.bytes / 1024, item.on_front) for item in candidates]
    chart = drawn(lambda path: plot_front(points, path, f"{verified.model_name}: every file that passed verify"), out / "front.png",
                  "the size × latency × accuracy chart")
    return Section(
        "Size × latency × accuracy",
        text=("Every file that passed verify, at batch 1 on the CPU: the Pareto front holds those no other file beats — at least as "
              "small, as accurate and as fast (overlapping p50 intervals count as a tie), and better in one. 8-bit weights: the share "
              "of the file's weights stored in 8 bits; b1 vs fp32: its batch-1 speed against its own format's fp32 file on the same "
              "runtime. An int8 file lists the layers kept in float (export --keep-float or the --max-drop search).",),
        table=pareto_rows(candidates),
        image=chart,
    )


def model_line(model_name: str, description: ModelDescription) -> str:
    return (f"Model {model_name}: {description.shape_text()} input ({description.scaling_text()}), {description.num_classes} classes "
            f"({description.classes_text()}), {description.output.value} out, {description.preprocess.value} preprocessing.")


def training_section(out: Path, report: TrainReport | None) -> Section:
    if report is None:
        return Section("Data and training", text=("Trained elsewhere: no train.json beside the model.",))
    data, hyper = report.data, report.hyperparameters
    return Section(
        "Data and training",
        bullets=(
            ("data source: ", Code(data.spec), f" ({data.kind.value}) {data.note}".rstrip()),
            (f"training images: {data.fit_size} (+{data.validation_size} validation); test images: {data.test_size}",),
            (f"epochs {hyper.epochs}, batch {hyper.batch_size}, learning rate {hyper.learning_rate} ({hyper.schedule.value}), "
             f"augmentation {'on' if hyper.augment else 'off'}, seed {report.seed}",),
            (Bold(f"test accuracy {report.test_accuracy:.2%}"), f" (loss {report.test_loss:.4f}); {report.images_per_second:,.0f} training images/s"),
        ),
        image=out / "train_curves.png",
    )


def latency_section(benched: BenchReport | None) -> Section:
    if benched is None:
        return Section("Latency", text=("Not measured: the parity check failed, so the benchmark was skipped.",))
    machine = benched.machine
    return Section(
        "Latency",
        text=(f"{benched.threads} threads, {machine.cpu} ({machine.cpu_count} cores); per-call times after "
              f"warm-up, input pre-bound. Differences from ", Code("edgecnn bench"), f"'s defaults: {bench_differences(benched.options)}."),
        table=latency_rows(benched.results),
        image=benched.chart_path,
    )


def provenance_section(exported: ExportResult, report: TrainReport | None) -> Section:
    return Section(
        "Provenance",
        bullets=(
            (f"created {utc_now()} on {this_machine().cpu}",),
            ("Keras model ", Code(exported.model.path), f" sha256 {exported.model.sha256}"),
            (f"data sha256 {report.data.sha256 if report else exported.model.data.sha256}",),
            (", ".join(f"{name} {version}" for name, version in library_versions(runtime_packages()).items()),),
        ),
    )
