"""manifest.json's published JSON Schema (`edgecnn/manifest.schema.json`): it is what the records' type hints imply,
a manifest with every part of every record filled validates, damaged ones do not, and the typed records come back
whole from their JSON. (conftest.py also checks every manifest the suite writes against it.)"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from edgecnn.core.artifact import ArtifactFormat, TensorSpec
from edgecnn.core.artifact_details import (
    ArtifactDetails,
    CalibrationRecord,
    CleanupReport,
    DerivedFrom,
    Float16Record,
    OptimizerFinding,
    QuantizationRecord,
    SearchResult,
    SearchStep,
    SessionCheck,
)
from edgecnn.core.data_record import DataRecord, DataSummary, SourceKind
from edgecnn.core.description import InputScaling, ModelDescription, OutputKind, Preprocess
from edgecnn.core.manifest import (
    SCHEMA_FILENAME,
    SCHEMA_VERSION,
    ArtifactEntry,
    DerivedBound,
    FailedArtifact,
    Manifest,
    ModelEntry,
    ParityBounds,
    Precision,
    ReferenceRecord,
    manifest_schema,
)

PUBLISHED = Path(__file__).resolve().parents[1] / "edgecnn" / SCHEMA_FILENAME
DESCRIPTION = ModelDescription(28, 28, 1, InputScaling.UNIT, tuple("0123456789"), OutputKind.PROBABILITIES, Preprocess.DIGIT)
SUMMARY = DataSummary("mnist", SourceKind.MNIST, "~/.keras/datasets/mnist.npz", "mnist", (28, 28, 1), tuple("0123456789"), 60000, 10000,
                      "ab" * 32, digits=True)
EVERYTHING = ArtifactDetails(
    opset=17,
    graph_cleanup=CleanupReport("onnxslim 0.1", True, 20, 14, 2_400_000, 2_390_000, "outputs bit-identical on the probe images"),
    valid_pools_after_zero_pads=("pool1",),
    default_session_check=SessionCheck(2e-3, 1e-4, 64, False, OptimizerFinding(True, 3e-7, ("Pad_Fusion",), "minimal.onnx")),
    float16=Float16Record("onnxruntime.transformers.float16", True),
    quantization=QuantizationRecord("int8 per-channel", "minmax", ("conv1",), ("conv1/BiasAdd",), "QDQ", "uint8"),
    calibration=CalibrationRecord(500, "mnist", 0),
    accuracy_search=SearchResult.of(1.0, 0.99, "the 6,000 training images train held out", (
        SearchStep(("conv1",), 0.98, 0.4, 0.991, 0.985, 600_000, 25.0, False),
        SearchStep(("conv1", "dense"), 0.985, 0.1, 0.996, 0.993, 900_000, 31.0, True)), 12.5),
    derived_from=DerivedFrom("onnx-fp32", True),
    custom_metadata={"edgecnn_version": "0.1.0"},
    providers=("CPUExecutionProvider",),
    signatures=("serving_default",),
    metadata="edgecnn entry in the model's metadata table",
)


def manifest_with_every_part() -> dict:
    bound = DerivedBound(4e-3, 1e-3, 1000, "fp16: 4 x max |Δp| of Keras itself in float16")
    model = ModelEntry("mnist_cnn.keras", "cd" * 32, 0.99, DataRecord("mnist", SourceKind.MNIST, 60000, 10000, "ab" * 32), DESCRIPTION,
                       ReferenceRecord("verify_reference.npz", "ef" * 32, 10000, "cd" * 32, SUMMARY, ParityBounds(bound, 0.05, bound)))
    tensor = TensorSpec("image", (None, 28, 28, 1), "float32", layout="NHWC", meaning="grayscale pixels")
    quantized = replace(tensor, dtype="int8", scale=1 / 255, zero_point=-128)
    artifact = ArtifactEntry("onnx-int8", "mnist_cnn_int8.onnx", ArtifactFormat.ONNX, Precision.INT8, quantized, tensor, 650_000, "12" * 32,
                             "cd" * 32, {"onnx": "1.17.0"}, 3.2, "2026-12-03T06:00:00+00:00", EVERYTHING)
    failed = FailedArtifact("tflite-int8", ArtifactFormat.TFLITE, Precision.INT8, "the TFLite converter refused the model", "2026-12-03T06:00:00+00:00")
    return Manifest(Path("."), model, (artifact, ArtifactEntry(**{**artifact.__dict__, "name": "tflite-fp32", "details": ArtifactDetails()})),
                    (failed,)).to_dict()


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(PUBLISHED.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_published_schema_is_the_one_the_records_imply():
    """Regenerate with: python -c "import json; from edgecnn.core.manifest import manifest_schema; print(json.dumps(manifest_schema(), indent=2))" """
    assert json.loads(PUBLISHED.read_text()) == manifest_schema()
    assert manifest_schema()["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_a_manifest_with_every_part_filled_is_valid_and_comes_back_whole(validator):
    raw = json.loads(json.dumps(manifest_with_every_part()))
    assert list(validator.iter_errors(raw)) == []
    entry = ArtifactEntry.from_dict(raw["artifacts"][0])
    assert entry.details == EVERYTHING and entry.details.accuracy_search is not None and entry.details.accuracy_search.met
    assert ModelEntry.from_dict(raw["model"]).reference.data == SUMMARY


@pytest.mark.parametrize("damage", [
    lambda raw: raw.update(schema_version=1),
    lambda raw: raw["artifacts"][0].update(precision="int9"),
    lambda raw: raw["artifacts"][0].pop("sha256"),
    lambda raw: raw["artifacts"][0]["details"]["quantization"].update(weights=8),
    lambda raw: raw["artifacts"][0]["details"].update(quantisation={}),
    lambda raw: raw["artifacts"][0]["details"]["default_session_check"]["finding"].update(passes="Pad_Fusion"),
    lambda raw: raw["model"]["reference"]["data"].update(image_shape=[28, 28]),
    lambda raw: raw["model"]["description"].update(scaling="percent"),
], ids=["old schema_version", "unknown precision", "no sha256", "weights not text", "misspelled part", "passes not a list", "2-D image shape",
        "unknown scaling"])
def test_a_damaged_manifest_is_invalid(validator, damage):
    raw = json.loads(json.dumps(manifest_with_every_part()))
    damage(raw)
    assert list(validator.iter_errors(raw)), "the schema accepted a damaged manifest"


def test_an_older_manifests_details_read_with_defaults():
    """A manifest written before a part existed lacks its key: it reads as that part's default."""
    raw = copy.deepcopy(manifest_with_every_part()["artifacts"][1])
    raw["details"] = {"signatures": ["serving_default"]}
    assert ArtifactEntry.from_dict(raw).details == ArtifactDetails(signatures=("serving_default",))
