"""The commands a device install runs (no TensorFlow): verify, bench, predict, info, selftest, doctor."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgecnn.cli.app import DataOption, DebugOption, command, declared_command, runtime_options
from edgecnn.cli.quick import PREDICT_OPTIONS, predict_and_print
from edgecnn.core.errors import EdgecnnError
from edgecnn.runners import Provider, RunOptions

RemoteOption = Annotated[Optional[list[str]], typer.Option(
    "--remote", metavar="<host>", show_default=False,
    help="Run it on this box over SSH instead: [user@]host[:port] or a Host alias of your ssh config. Repeatable: a fleet, in parallel "
         "(local is this machine). The box needs only python3 >= 3.11; its device install is prepared under ~/.cache/edgecnn there.")]
SshConfigOption = Annotated[Optional[Path], typer.Option("--ssh-config", help="ssh's -F: this file instead of ~/.ssh/config.", show_default=False)]
RemoteTimeoutOption = Annotated[float, typer.Option("--remote-timeout", help="Seconds each step on a box may take before the box counts as failed.")]


def remote_options(hosts: list[str] | None, ssh_config: Path | None, timeout: float) -> Any:
    """The fleet to run on, or None to run here."""
    if not hosts:
        return None
    from edgecnn.remote.fleet import RemoteOptions

    return RemoteOptions(tuple(hosts), ssh_config, timeout)


def progress_line(text: str) -> None:
    """A box's progress, on stderr: --json keeps stdout for the report."""
    typer.echo(text, err=True)


def fleet_output(runs: Any, json_output: bool, payload: dict[str, Any], tables: Callable[[], None], files: tuple[Path, ...] = ()) -> None:
    """A fleet's report (its JSON, or its tables and the files written), then each host that could not run: one line on
    stderr (the report holds the same line in that host's row)."""
    from edgecnn.report.render import written

    if json_output:
        typer.echo(json.dumps(payload, indent=2))
    else:
        tables()
        if files:
            typer.echo(f"wrote {written(*files)}")
    for run in runs:
        if run.failed:
            progress_line(f"{run.host}: FAILED: {run.error}")


@command("verify")
@runtime_options(several=False)
def verify_command(
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest written by edgecnn export.")] = Path("exports/manifest.json"),
    data: DataOption = None,
    artifact: Annotated[Optional[list[str]], typer.Option("--artifact", help="Only this artifact (repeatable).", metavar="<name>")] = None,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Max accuracy drop vs Keras, in points.", show_default=False)] = None,
    min_agreement: Annotated[Optional[float], typer.Option("--min-agreement", help="Min top-1 agreement with Keras (0-1).", show_default=False)] = None,
    atol: Annotated[Optional[float], typer.Option("--atol", help="Max |Δ probability| vs Keras.", show_default=False)] = None,
    no_verify_hash: Annotated[bool, typer.Option("--no-verify-hash", help="Skip the sha256 check against the manifest.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
    explain: Annotated[Optional[str], typer.Option(
        "--explain", metavar="<artifact>", show_default=False,
        help="Instead of the table: compare this artifact with the Keras model layer by layer (SQNR, max |Δ|) and plot it.")] = None,
    explain_images: Annotated[int, typer.Option("--explain-images", help="Test images --explain runs.")] = 300,
    corruptions: Annotated[bool, typer.Option(
        "--corruptions", help="Also judge every file against Keras on corrupted copies of the test images (rotation, noise, blur, "
                              "brightness, contrast, JPEG, resize, crop); needs TensorFlow.")] = False,
    severity: Annotated[int, typer.Option("--severity", min=1, max=5, help="How strong the corruptions are, 1-5 (ImageNet-C's scale).")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the corruptions' noise and turning directions.")] = 0,
    remote: RemoteOption = None,
    ssh_config: SshConfigOption = None,
    remote_timeout: RemoteTimeoutOption = 1800.0,
    run: RunOptions = RunOptions(),
    debug: DebugOption = False,
) -> int:
    """Compare every artifact with the Keras model on the whole test split, on the provider you deploy to; exit 1 if any fails."""
    from edgecnn.core.corruptions import every_corruption
    from edgecnn.measure.thresholds import Thresholds
    from edgecnn.report.render import explain_table, print_json_file, verify_table, written
    from edgecnn.stages.verify import VerifyOptions, verify

    if explain is not None:
        if remote:
            raise EdgecnnError("--explain compares with the Keras model layer by layer, which a box does not run: run it here", "--remote")
        from edgecnn.stages.explain import ExplainOptions
        from edgecnn.stages.explain import explain as explain_artifact

        explained = explain_artifact(ExplainOptions(manifest=manifest, artifact=explain, data=data, images=explain_images, run=run))
        if json_output:
            print_json_file(explained.report_path)
        else:
            explain_table(explained)
        return 0

    options = VerifyOptions(
        manifest=manifest,
        data=data,
        artifacts=tuple(artifact or ()),
        overrides=Thresholds(max_drop_points=max_drop, min_agreement=min_agreement, atol=atol),
        verify_hash=not no_verify_hash,
        run=run,
        corruptions=every_corruption(severity) if corruptions else (),
        seed=seed,
    )
    fleet = remote_options(remote, ssh_config, remote_timeout)
    if fleet is not None:
        from edgecnn.core.files import read_json
        from edgecnn.remote.fleet import verify_on_fleet
        from edgecnn.report.render import fleet_verify_table

        on_fleet = verify_on_fleet(options, fleet, progress_line)
        payload = read_json(on_fleet.report_path, "verify report")
        fleet_output(on_fleet.runs, json_output, payload, lambda: fleet_verify_table(payload["artifacts"]), (on_fleet.report_path,))
        return on_fleet.exit_code
    result = verify(options)
    if json_output:
        print_json_file(result.report_path)
    else:
        verify_table(result)
        typer.echo(f"wrote {written(result.report_path, result.confusion_path, result.corruptions_chart)}")
    return result.exit_code


class Baseline(str, Enum):
    KERAS = "keras"


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise EdgecnnError(f"expected comma-separated whole numbers, got {text!r}", "--batch-sizes") from None


@command("bench")
@runtime_options(several=True)
def bench_command(
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest written by edgecnn export.")] = Path("exports/manifest.json"),
    model: Annotated[Optional[list[Path]], typer.Option("--model", help="Bench this .onnx/.tflite file instead (repeatable).", metavar="<path>")] = None,
    artifact: Annotated[Optional[list[str]], typer.Option("--artifact", help="Only this manifest artifact (repeatable).", metavar="<name>")] = None,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")] = "1,8,64,256",
    warmup: Annotated[int, typer.Option(help="Untimed calls before measuring.")] = 50,
    iterations: Annotated[Optional[int], typer.Option(help="Timed calls per measurement.", show_default=False)] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Time per measurement (default 1 s).", show_default=False)] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved rounds per measurement; the p50's 95% interval comes from them.")] = 5,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="Peak memory per artifact and batch size (a child process each).")] = True,
    tune: Annotated[bool, typer.Option("--tune", help="Try each runtime's knobs per artifact and batch size (threads at batch 1 separately); "
                                       "keep the fastest that passes verify.")] = False,
    baseline: Annotated[Optional[Baseline], typer.Option("--baseline", help="Also time the Keras model.")] = None,
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: the manifest's).", show_default=False)] = None,
    no_verify_hash: Annotated[bool, typer.Option("--no-verify-hash", help="Skip the sha256 check against the manifest.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
    remote: RemoteOption = None,
    ssh_config: SshConfigOption = None,
    remote_timeout: RemoteTimeoutOption = 1800.0,
    run: RunOptions = RunOptions(),
    debug: DebugOption = False,
) -> int:
    """Latency (p50/p90/p99) and throughput per artifact, provider and batch size; exit 1 if any row could not run."""
    from edgecnn.report.render import bench_table, print_json_file, tuning_table, written
    from edgecnn.stages.bench import BenchOptions, bench

    options = BenchOptions(
        manifest=manifest, models=tuple(model or ()), artifacts=tuple(artifact or ()),
        run=run, batch_sizes=_batch_sizes(batch_sizes), warmup=warmup, iterations=iterations, seconds=seconds, baseline_keras=baseline is Baseline.KERAS, data=data, out=out,
        verify_hash=not no_verify_hash, tune=tune, rounds=rounds, memory=memory,
    )
    fleet = remote_options(remote, ssh_config, remote_timeout)
    if fleet is not None:
        from edgecnn.core.files import read_json
        from edgecnn.remote.fleet import bench_on_fleet
        from edgecnn.report.render import fleet_bench_tables

        on_fleet = bench_on_fleet(options, fleet, progress_line)
        fleet_output(on_fleet.runs, json_output, read_json(on_fleet.report_path, "bench report"), lambda: fleet_bench_tables(on_fleet.rows, on_fleet.ship),
                     (on_fleet.report_path, *on_fleet.document_paths))
        return 0 if on_fleet.passed else 1
    report = bench(options)
    if json_output:
        print_json_file(report.report_path)
    else:
        bench_table(report.results)
        if report.tuning:
            tuning_table(report.tuning)
        typer.echo(f"wrote {written(report.report_path, report.chart_path)}")
    return 0 if report.passed else 1


@command("predict")
@declared_command(PREDICT_OPTIONS)
def predict_command(**values: Any) -> int:
    """Classify images with an exported model, prepared as its metadata says (never imports TensorFlow); exit 1 if any was unreadable."""
    values.pop("debug", None)  # its callback has recorded it
    return predict_and_print(values)


@command("info")
def info_command(
    model: Annotated[Path, typer.Argument(help="An .onnx or .tflite file.", metavar="MODEL", show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    debug: DebugOption = False,
) -> None:
    """Describe a model file: format, inputs/outputs, quantization, metadata, size, sha256, opset and ops."""
    from edgecnn.report.render import print_model_info
    from edgecnn.stages.info import describe

    print_model_info(describe(model), json_output)


@command("doctor")
def doctor_command(
    provider: Annotated[Provider, typer.Option("--provider", help="The provider to check.")] = Provider.CUDA,
    device: Annotated[int, typer.Option("--device", help="GPU index for cuda/tensorrt.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    debug: DebugOption = False,
) -> int:
    """ONNX Runtime build, providers, which CUDA/cuDNN/TensorRT libraries load, the GPU; exit 1 if --provider is unusable."""
    from edgecnn.report.render import print_doctor
    from edgecnn.stages.doctor import diagnose

    report = diagnose(provider, device)
    print_doctor(report, json_output)
    return 0 if report.usable else 1


@command("selftest")
@runtime_options(several=False)
def selftest_command(
    model: Annotated[Path, typer.Argument(help="An .onnx or .tflite file exported by edgecnn.", metavar="MODEL", show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    remote: RemoteOption = None,
    ssh_config: SshConfigOption = None,
    remote_timeout: RemoteTimeoutOption = 1800.0,
    run: RunOptions = RunOptions(),
    debug: DebugOption = False,
) -> int:
    """Run the golden inputs the file carries on this device's runtime against the Keras answers and bound it also carries; exit 1 on FAIL."""
    from edgecnn.report.render import print_selftest
    from edgecnn.stages.selftest import SelftestOptions, selftest

    fleet = remote_options(remote, ssh_config, remote_timeout)
    if fleet is not None:
        from edgecnn.remote.fleet import selftest_on_fleet
        from edgecnn.report.render import fleet_selftest_table

        on_fleet = selftest_on_fleet(SelftestOptions(model=model, run=run), fleet, progress_line)
        payload = on_fleet.to_dict()
        fleet_output(on_fleet.runs, json_output, payload, lambda: fleet_selftest_table(payload["results"]))
        return on_fleet.exit_code
    result = selftest(SelftestOptions(model=model, run=run))
    print_selftest(result, json_output)
    return 0 if result.passed else 1
