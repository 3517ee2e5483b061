"""The commands a device install runs (no TensorFlow): verify, bench, predict, info, selftest, doctor."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from edgecnn.cli.app import Values, command
from edgecnn.cli.options import (
    DATA_OPTION,
    JSON_OPTION,
    JSON_REPORT_OPTION,
    MANIFEST_OPTION,
    NO_VERIFY_HASH_OPTION,
    REQUIRED,
    RUNTIME_OPTIONS,
    Declared,
    run_options,
)
from edgecnn.cli.quick import PREDICT_OPTIONS, predict_and_print
from edgecnn.core.errors import EdgecnnError
from edgecnn.runners import Provider

REMOTE_OPTIONS = (
    Declared("remote", "--remote", str, None, repeatable=True, metavar="<host>",
             help="Run it on this box over SSH instead: [user@]host[:port] or a Host alias of your ssh config. Repeatable: a fleet, in "
                  "parallel (local is this machine). The box needs only python3 >= 3.11; its device install is prepared under "
                  "~/.cache/edgecnn there."),
    Declared("ssh_config", "--ssh-config", Path, None, help="ssh's -F: this file instead of ~/.ssh/config."),
    Declared("remote_timeout", "--remote-timeout", float, 1800.0, help="Seconds each step on a box may take before the box counts as failed."),
)


def remote_options(values: Values) -> Any:
    """Take REMOTE_OPTIONS out of a command's parsed `values`: the fleet to run on, or None to run here."""
    hosts, ssh_config, timeout = (values.pop(option.name) for option in REMOTE_OPTIONS)
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


VERIFY_OPTIONS = (
    MANIFEST_OPTION,
    DATA_OPTION,
    Declared("artifact", "--artifact", str, None, repeatable=True, metavar="<name>", help="Only this artifact (repeatable)."),
    Declared("max_drop", "--max-drop", float, None, help="Max accuracy drop vs Keras, in points."),
    Declared("min_agreement", "--min-agreement", float, None, help="Min top-1 agreement with Keras (0-1)."),
    Declared("atol", "--atol", float, None, help="Max |Δ probability| vs Keras."),
    NO_VERIFY_HASH_OPTION,
    JSON_REPORT_OPTION,
    Declared("explain", "--explain", str, None, metavar="<artifact>",
             help="Instead of the table: compare this artifact with the Keras model layer by layer (SQNR, max |Δ|) and plot it."),
    Declared("explain_images", "--explain-images", int, 300, help="Test images --explain runs."),
    Declared("corruptions", "--corruptions", bool, False,
             help="Also judge every file against Keras on corrupted copies of the test images (rotation, noise, blur, brightness, "
                  "contrast, JPEG, resize, crop); needs TensorFlow."),
    Declared("severity", "--severity", int, 3, help="How strong the corruptions are, 1-5 (ImageNet-C's scale).", minimum=1, maximum=5),
    Declared("seed", "--seed", int, 0, help="Seed of the corruptions' noise and turning directions."),
    *REMOTE_OPTIONS,
    *RUNTIME_OPTIONS,
)


@command("verify", VERIFY_OPTIONS)
def verify_command(values: Values) -> int:
    """Compare every artifact with the Keras model on the whole test split, on the provider you deploy to; exit 1 if any fails."""
    from edgecnn.core.corruptions import every_corruption
    from edgecnn.measure.thresholds import Thresholds
    from edgecnn.report.render import explain_table, print_json_file, verify_table, written
    from edgecnn.stages.verify import VerifyOptions, verify

    run = run_options(values, several=False)
    fleet = remote_options(values)
    if values["explain"] is not None:
        if fleet is not None:
            raise EdgecnnError("--explain compares with the Keras model layer by layer, which a box does not run: run it here", "--remote")
        from edgecnn.stages.explain import ExplainOptions
        from edgecnn.stages.explain import explain as explain_artifact

        explained = explain_artifact(ExplainOptions(manifest=values["manifest"], artifact=values["explain"], data=values["data"],
                                                    images=values["explain_images"], run=run))
        if values["json_output"]:
            print_json_file(explained.report_path)
        else:
            explain_table(explained)
        return 0

    options = VerifyOptions(
        manifest=values["manifest"],
        data=values["data"],
        artifacts=tuple(values["artifact"] or ()),
        overrides=Thresholds(max_drop_points=values["max_drop"], min_agreement=values["min_agreement"], atol=values["atol"]),
        verify_hash=not values["no_verify_hash"],
        run=run,
        corruptions=every_corruption(values["severity"]) if values["corruptions"] else (),
        seed=values["seed"],
    )
    if fleet is not None:
        from edgecnn.core.files import read_json
        from edgecnn.remote.fleet import verify_on_fleet
        from edgecnn.report.render import fleet_verify_table

        on_fleet = verify_on_fleet(options, fleet, progress_line)
        payload = read_json(on_fleet.report_path, "verify report")
        fleet_output(on_fleet.runs, values["json_output"], payload, lambda: fleet_verify_table(payload["artifacts"]), (on_fleet.report_path,))
        return on_fleet.exit_code
    result = verify(options)
    if values["json_output"]:
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


BENCH_OPTIONS = (
    MANIFEST_OPTION,
    Declared("model", "--model", Path, None, repeatable=True, metavar="<path>", help="Bench this .onnx/.tflite file instead (repeatable)."),
    Declared("artifact", "--artifact", str, None, repeatable=True, metavar="<name>", help="Only this manifest artifact (repeatable)."),
    Declared("batch_sizes", "--batch-sizes", str, "1,8,64,256", help="Comma-separated batch sizes."),
    Declared("warmup", "--warmup", int, 50, help="Untimed calls before measuring."),
    Declared("iterations", "--iterations", int, None, help="Timed calls per measurement."),
    Declared("seconds", "--seconds", float, None, help="Time per measurement (default 1 s)."),
    Declared("rounds", "--rounds", int, 5, help="Interleaved rounds per measurement; the p50's 95% interval comes from them."),
    Declared("memory", "--memory/--no-memory", bool, True, help="Peak memory per artifact and batch size (a child process each)."),
    Declared("tune", "--tune", bool, False,
             help="Try each runtime's knobs per artifact and batch size (threads at batch 1 separately); keep the fastest that passes verify."),
    Declared("baseline", "--baseline", Baseline, None, help="Also time the Keras model."),
    DATA_OPTION,
    Declared("out", "--out", Path, None, help="Output folder (default: the manifest's)."),
    NO_VERIFY_HASH_OPTION,
    JSON_REPORT_OPTION,
    *REMOTE_OPTIONS,
    *RUNTIME_OPTIONS,
)


@command("bench", BENCH_OPTIONS)
def bench_command(values: Values) -> int:
    """Latency (p50/p90/p99) and throughput per artifact, provider and batch size; exit 1 if any row could not run."""
    from edgecnn.report.render import bench_table, print_json_file, tuning_table, written
    from edgecnn.stages.bench import BenchOptions, bench

    run = run_options(values, several=True)
    fleet = remote_options(values)
    options = BenchOptions(
        manifest=values["manifest"], models=tuple(values["model"] or ()), artifacts=tuple(values["artifact"] or ()), run=run,
        batch_sizes=_batch_sizes(values["batch_sizes"]), warmup=values["warmup"], iterations=values["iterations"], seconds=values["seconds"],
        baseline_keras=values["baseline"] is Baseline.KERAS, data=values["data"], out=values["out"], verify_hash=not values["no_verify_hash"],
        tune=values["tune"], rounds=values["rounds"], memory=values["memory"],
    )
    if fleet is not None:
        from edgecnn.core.files import read_json
        from edgecnn.remote.fleet import bench_on_fleet
        from edgecnn.report.render import fleet_bench_tables

        on_fleet = bench_on_fleet(options, fleet, progress_line)
        fleet_output(on_fleet.runs, values["json_output"], read_json(on_fleet.report_path, "bench report"), lambda: fleet_bench_tables(on_fleet.rows, on_fleet.ship),
                     (on_fleet.report_path, *on_fleet.document_paths))
        return 0 if on_fleet.passed else 1
    report = bench(options)
    if values["json_output"]:
        print_json_file(report.report_path)
    else:
        bench_table(report.results)
        if report.tuning:
            tuning_table(report.tuning)
        typer.echo(f"wrote {written(report.report_path, report.chart_path)}")
    return 0 if report.passed else 1


@command("predict", PREDICT_OPTIONS)
def predict_command(values: Values) -> int:
    """Classify images with an exported model, prepared as its metadata says (never imports TensorFlow); exit 1 if any was unreadable."""
    return predict_and_print(values)


INFO_OPTIONS = (Declared("model", "", Path, REQUIRED, metavar="MODEL", help="An .onnx or .tflite file."), JSON_OPTION)


@command("info", INFO_OPTIONS)
def info_command(values: Values) -> None:
    """Describe a model file: format, inputs/outputs, quantization, metadata, size, sha256, opset and ops."""
    from edgecnn.report.render import print_model_info
    from edgecnn.stages.info import describe

    print_model_info(describe(values["model"]), values["json_output"])


DOCTOR_OPTIONS = (
    Declared("provider", "--provider", Provider, Provider.CUDA, help="The provider to check."),
    Declared("device", "--device", int, 0, help="GPU index for cuda/tensorrt."),
    JSON_OPTION,
)


@command("doctor", DOCTOR_OPTIONS)
def doctor_command(values: Values) -> int:
    """ONNX Runtime build, providers, which CUDA/cuDNN/TensorRT libraries load, the GPU; exit 1 if --provider is unusable."""
    from edgecnn.report.render import print_doctor
    from edgecnn.stages.doctor import diagnose

    report = diagnose(values["provider"], values["device"])
    print_doctor(report, values["json_output"])
    return 0 if report.usable else 1


SELFTEST_OPTIONS = (
    Declared("model", "", Path, REQUIRED, metavar="MODEL", help="An .onnx or .tflite file exported by edgecnn."),
    JSON_OPTION,
    *REMOTE_OPTIONS,
    *RUNTIME_OPTIONS,
)


@command("selftest", SELFTEST_OPTIONS)
def selftest_command(values: Values) -> int:
    """Run the golden inputs the file carries on this device's runtime against the Keras answers and bound it also carries; exit 1 on FAIL."""
    from edgecnn.report.render import print_selftest
    from edgecnn.stages.selftest import SelftestOptions, selftest

    options = SelftestOptions(model=values["model"], run=run_options(values, several=False))
    fleet = remote_options(values)
    if fleet is not None:
        from edgecnn.remote.fleet import selftest_on_fleet
        from edgecnn.report.render import fleet_selftest_table

        on_fleet = selftest_on_fleet(options, fleet, progress_line)
        payload = on_fleet.to_dict()
        fleet_output(on_fleet.runs, values["json_output"], payload, lambda: fleet_selftest_table(payload["results"]))
        return on_fleet.exit_code
    result = selftest(options)
    print_selftest(result, values["json_output"])
    return 0 if result.passed else 1
