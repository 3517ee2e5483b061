"""`verify --explain`: every Keras layer of the model gets a row (measured, or folded into a named layer), fp32 files
track Keras above the fp32 floor at every layer, an int8 file shows the quantization noise, and a FAILing verify row
points to the command."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error, copy_exports, run_cli

from edgecnn.core.manifest import Precision
from edgecnn.measure.thresholds import Thresholds
from edgecnn.report.tables import parity_rows
from edgecnn.stages.explain import SQNR_FLOORS_DB
from edgecnn.stages.verify import CheckFailure, ParityResult, Status

SEED_LAYERS = ["conv1", "conv2", "pool", "conv_dropout", "flatten", "dense", "dense_dropout", "probabilities"]


@pytest.fixture(scope="module")
def explained(exported, tmp_path_factory):
    manifest = copy_exports(exported, tmp_path_factory.mktemp("explain") / "exports")
    reports = {}
    for artifact in ("onnx-fp32", "tflite-fp32", "onnx-int8", "tflite-int8"):
        run = run_cli("verify", "--manifest", str(manifest), "--explain", artifact, "--explain-images", "200", "--json")
        assert run.returncode == 0, run.stderr
        reports[artifact] = json.loads(run.stdout)
    return manifest, reports


@pytest.mark.parametrize("artifact", ["onnx-fp32", "tflite-fp32", "onnx-int8", "tflite-int8"])
def test_every_keras_layer_of_the_seed_model_is_mapped(explained, artifact):
    rows = explained[1][artifact]["layers"]
    assert [row["layer"] for row in rows] == SEED_LAYERS
    for row in rows:
        assert row["sqnr_db"] is not None or row["folded_into"] in SEED_LAYERS, row
    assert {row["layer"]: row["folded_into"] for row in rows if row["sqnr_db"] is None} == {"conv_dropout": "pool", "dense_dropout": "dense"}


@pytest.mark.parametrize("artifact", ["onnx-fp32", "tflite-fp32"])
def test_fp32_files_track_keras_above_the_fp32_floor_at_every_layer(explained, artifact):
    report = explained[1][artifact]
    assert report["floor_db"] == SQNR_FLOORS_DB[Precision.FP32] and report["first_below_floor"] is None
    assert min(row["sqnr_db"] for row in report["layers"] if row["sqnr_db"] is not None) > 60


@pytest.mark.parametrize("artifact", ["onnx-int8", "tflite-int8"])
def test_int8_files_show_quantization_noise_below_fp32s(explained, artifact):
    int8 = [row["sqnr_db"] for row in explained[1][artifact]["layers"] if row["sqnr_db"] is not None]
    assert 20 < min(int8) < 60 and (explained[0].parent / f"explain_{artifact}.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_artifact_is_one_line(exported):
    assert_one_line_error(run_cli("verify", "--manifest", str(exported), "--explain", "onnx-int4"), "no artifact 'onnx-int4'", "onnx-int8", "--explain")


def test_a_failing_verify_row_points_to_explain():
    failing = ParityResult("onnx-int8", "m_int8.onnx", Precision.INT8, "0" * 64, Status.FAIL, Thresholds(min_agreement=0.99),
                           failures=(CheckFailure("agreement", 0.9, 0.99),))
    verdict = str(parity_rows([failing]).rows[0][-1])
    assert "edgecnn verify --explain onnx-int8" in verdict
