"""OpenVINO specifics beyond the runtime contract: fp32 files run in fp32 even where the CPU plugin would pick bf16,
and a lower inference precision is recorded as what ran, with verify's matching bound."""

from __future__ import annotations

import pytest

from edgecnn.core.manifest import Precision, load_manifest
from edgecnn.measure.thresholds import thresholds_for
from edgecnn.runners import Arithmetic, registry
from edgecnn.runners.registry import RuntimeName

pytestmark = pytest.mark.skipif(not registry.installed(RuntimeName.OPENVINO), reason='OpenVINO is not installed (pip install "edgecnn[openvino]")')


def test_fp32_files_run_in_fp32_and_a_lower_precision_is_what_ran(exported):
    from edgecnn.runners.openvino import OpenVinoConfig, OpenVinoRunner

    fp32_file = load_manifest(exported).resolve("mnist_cnn.onnx")
    asked = OpenVinoRunner(fp32_file, OpenVinoConfig())
    assert asked.config.properties()["INFERENCE_PRECISION_HINT"] == "f32" and asked.arithmetic is Arithmetic.FP32
    capabilities = __import__("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in capabilities:
        pytest.skip("this CPU has no bf16: OpenVINO cannot run in a lower precision here")
    lowered = OpenVinoRunner(fp32_file, OpenVinoConfig(inference_precision="bf16"))
    assert lowered.arithmetic is Arithmetic.BF16
    assert thresholds_for(Precision.FP32, lowered.arithmetic).atol == 1e-2 and "bf16" in thresholds_for(Precision.FP32, lowered.arithmetic).basis


def test_tune_varies_threads_streams_and_the_performance_hint():
    from edgecnn.runners.openvino import PLUGIN, OpenVinoConfig, PerformanceHint

    candidates = PLUGIN.tune_candidates(OpenVinoConfig(), cores=4, batch_size=8)
    assert {config.hint for config in candidates} == set(PerformanceHint)
    assert {config.threads for config in candidates} == {1, 2, 4} and {config.streams for config in candidates} == {1, 2}
    assert len({PLUGIN.parity_key(config) for config in candidates}) == 1  # none of them changes the numbers


def test_explain_runs_through_openvino_and_compares_what_it_computes(exported, tmp_path):
    """verify --explain --runtime openvino: the ONNX file's graph with every layer's tensor as an output, compiled by
    OpenVINO; every seed layer gets a row, the fp32 file tracks Keras above its floor and the int8 file shows the
    quantization noise (below the fp32 file's SQNR at the output). A TFLite file is refused in one line."""
    import json

    from conftest import assert_one_line_error, copy_exports, run_cli

    from edgecnn.stages.explain import SQNR_FLOORS_DB

    manifest = copy_exports(exported, tmp_path / "exports")
    reports = {}
    for artifact in ("onnx-fp32", "onnx-int8"):
        run = run_cli("verify", "--manifest", str(manifest), "--explain", artifact, "--runtime", "openvino", "--explain-images", "200", "--json")
        assert run.returncode == 0, run.stderr
        reports[artifact] = json.loads(run.stdout)
        assert reports[artifact]["runtime"] == "OpenVINO CPU, inference precision f32"
        assert [row["layer"] for row in reports[artifact]["layers"]] == ["conv1", "conv2", "pool", "conv_dropout", "flatten", "dense",
                                                                         "dense_dropout", "probabilities"]
    fp32 = [row for row in reports["onnx-fp32"]["layers"] if row["sqnr_db"] is not None]
    assert fp32 and all(row["sqnr_db"] >= SQNR_FLOORS_DB[Precision.FP32] for row in fp32)
    output = {name: report["layers"][-1]["sqnr_db"] for name, report in reports.items()}
    assert output["onnx-int8"] < output["onnx-fp32"] - 20, output
    refused = run_cli("verify", "--manifest", str(manifest), "--explain", "tflite-int8", "--runtime", "openvino")
    assert_one_line_error(refused, "OpenVINO gives the layer outputs of ONNX files")
