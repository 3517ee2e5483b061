"""What to ship and the size x latency x accuracy candidates, from bench rows and verify verdicts given as values."""

from __future__ import annotations

from edgecnn.core.artifact_details import ArtifactDetails, QuantizationRecord
from edgecnn.core.manifest import ArtifactEntry, ArtifactFormat, Precision, TensorSpec
from edgecnn.measure.thresholds import QUANTIZED
from edgecnn.report.ship import DeploymentTarget, pareto, recommend
from edgecnn.runners import RuntimeName, SessionConfig
from edgecnn.runners.litert import LITERT
from edgecnn.runners.onnxrt import ORT_CPU
from edgecnn.stages.bench import BenchResult
from edgecnn.stages.tune import TuneResult
from edgecnn.stages.verify import ParityResult, Status

RUNTIMES = {ArtifactFormat.ONNX: (RuntimeName.ONNXRUNTIME, ORT_CPU), ArtifactFormat.TFLITE: (RuntimeName.LITERT, LITERT)}


def row(name: str, artifact_format: ArtifactFormat, p50: float, low: float, high: float, batch: int = 1) -> BenchResult:
    runtime, backend = RUNTIMES[artifact_format]
    return BenchResult(name, name, artifact_format, Precision.INT8, runtime, backend, batch, p50_us=p50, images_per_second=batch * 1e6 / p50,
                       p50_low_us=low, p50_high_us=high)


def passed(name: str, artifact_format: ArtifactFormat, accuracy: float = 0.95) -> ParityResult:
    return ParityResult(name, name, Precision.INT8, "", Status.PASS, QUANTIZED, accuracy=accuracy, runtime=RUNTIMES[artifact_format][0])


def entry(name: str, artifact_format: ArtifactFormat, size: int, kept: tuple[str, ...] = ()) -> ArtifactEntry:
    spec = TensorSpec("x", (None, 28, 28, 1), "float32")
    return ArtifactEntry(name, name, artifact_format, Precision.INT8, spec, spec, size, "", "", {}, 0.0, "",
                         ArtifactDetails(quantization=QuantizationRecord("int8 per-channel", "minmax", kept)) if kept else ArtifactDetails())


def test_what_to_ship_names_ties_when_intervals_overlap():
    parity = [passed("onnx-int8", ArtifactFormat.ONNX), passed("tflite-int8", ArtifactFormat.TFLITE), passed("tflite-fp32", ArtifactFormat.TFLITE)]
    rows = [row("onnx-int8", ArtifactFormat.ONNX, 70.0, 62.0, 80.0), row("tflite-int8", ArtifactFormat.TFLITE, 66.0, 60.0, 75.0),
            row("tflite-fp32", ArtifactFormat.TFLITE, 120.0, 110.0, 130.0)]
    choice = next(item for item in recommend(parity, rows, []) if item.target is DeploymentTarget.CPU_LATENCY)
    assert choice.artifact == "tflite-int8"
    assert choice.ties == ("onnx-int8 (ORT CPU)",)  # overlapping: a tie; tflite-fp32's interval is clear of it


def test_what_to_ship_uses_a_tuned_figure_and_names_the_kept_float_layers():
    parity = [passed("onnx-int8", ArtifactFormat.ONNX), passed("tflite-int8", ArtifactFormat.TFLITE)]
    rows = [row("onnx-int8", ArtifactFormat.ONNX, 95.0, 90.0, 100.0), row("tflite-int8", ArtifactFormat.TFLITE, 60.0, 58.0, 62.0)]
    tuned = TuneResult("onnx-int8", RuntimeName.ONNXRUNTIME, 1, SessionConfig(), SessionConfig(threads=1), 95.0, 50.0, 20_000.0, 8, (), 48.0, 52.0)
    entries = [entry("onnx-int8", ArtifactFormat.ONNX, 1000, ("conv_1", "dense")), entry("tflite-int8", ArtifactFormat.TFLITE, 900)]
    untuned = next(item for item in recommend(parity, rows, entries) if item.target is DeploymentTarget.CPU_LATENCY)
    assert untuned.artifact == "tflite-int8" and untuned.configuration == "" and untuned.kept_float_layers == ()
    choice = next(item for item in recommend(parity, rows, entries, [tuned]) if item.target is DeploymentTarget.CPU_LATENCY)
    assert choice.artifact == "onnx-int8" and choice.p50_us == 50.0 and choice.configuration == "threads=1 spinning=on"
    assert choice.kept_float_layers == ("conv_1", "dense") and choice.ties == ()


def test_the_pareto_front_keeps_what_no_other_file_beats():
    parity = [passed("small-slow", ArtifactFormat.TFLITE, 0.95), passed("big-fast", ArtifactFormat.ONNX, 0.95),
              passed("beaten", ArtifactFormat.TFLITE, 0.94), passed("tie", ArtifactFormat.ONNX, 0.95)]
    rows = [row("small-slow", ArtifactFormat.TFLITE, 200.0, 190.0, 210.0), row("big-fast", ArtifactFormat.ONNX, 60.0, 55.0, 65.0),
            row("beaten", ArtifactFormat.TFLITE, 210.0, 200.0, 220.0), row("tie", ArtifactFormat.ONNX, 62.0, 57.0, 70.0)]
    entries = [entry("small-slow", ArtifactFormat.TFLITE, 500), entry("big-fast", ArtifactFormat.ONNX, 2000),
               entry("beaten", ArtifactFormat.TFLITE, 600), entry("tie", ArtifactFormat.ONNX, 1900)]
    front = {candidate.artifact: candidate.on_front for candidate in pareto(parity, rows, entries)}
    # beaten: bigger, less accurate and no faster than small-slow; big-fast: a latency tie with the smaller "tie" file
    assert front == {"small-slow": True, "big-fast": False, "beaten": False, "tie": True}


def test_the_pareto_table_shows_each_files_8_bit_share_and_speed_against_its_own_formats_fp32():
    from edgecnn.core.artifact_details import WeightCounts

    parity = [passed("onnx-int8", ArtifactFormat.ONNX), passed("onnx-fp32", ArtifactFormat.ONNX), passed("tflite-int8", ArtifactFormat.TFLITE)]
    rows = [row("onnx-int8", ArtifactFormat.ONNX, 50.0, 48.0, 52.0), row("onnx-fp32", ArtifactFormat.ONNX, 100.0, 95.0, 105.0),
            row("tflite-int8", ArtifactFormat.TFLITE, 40.0, 38.0, 42.0)]
    spec = TensorSpec("x", (None, 28, 28, 1), "float32")
    weights = {"onnx-int8": WeightCounts(1000, 900), "onnx-fp32": WeightCounts(1000, 0), "tflite-int8": WeightCounts(1000, 1000)}
    entries = [ArtifactEntry(name, name, artifact_format, precision, spec, spec, 100, "", "", {}, 0.0, "", ArtifactDetails(weights=weights[name]))
               for name, artifact_format, precision in (("onnx-int8", ArtifactFormat.ONNX, Precision.INT8), ("onnx-fp32", ArtifactFormat.ONNX, Precision.FP32),
                                                        ("tflite-int8", ArtifactFormat.TFLITE, Precision.INT8))]
    candidates = {candidate.artifact: candidate for candidate in pareto(parity, rows, entries)}
    assert candidates["onnx-int8"].eight_bit_weights == 0.9 and candidates["onnx-int8"].speedup_vs_fp32 == 2.0
    assert candidates["onnx-fp32"].eight_bit_weights == 0.0 and candidates["onnx-fp32"].speedup_vs_fp32 == 1.0
    assert candidates["tflite-int8"].speedup_vs_fp32 is None  # no tflite-fp32 measured: no ratio against another format's file
    choice = next(item for item in recommend(parity, rows, entries) if item.target is DeploymentTarget.CPU_LATENCY)
    assert choice.artifact == "tflite-int8" and choice.eight_bit_weights == 1.0
