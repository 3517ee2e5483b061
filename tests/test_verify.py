from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import assert_one_line_error, copy_exports, run_cli, run_in_fresh_process, tamper_onnx

from edgecnn.core.files import sha256_file
from edgecnn.core.manifest import Precision, load_manifest, update_manifest
from edgecnn.measure.thresholds import DEFAULT_THRESHOLDS, Thresholds
from edgecnn.stages.verify import ParityResult, Status, VerifyOptions, compare, verify

REPORT_FIELDS = {"path", "sha256", "accuracy", "delta_points", "agreement", "max_abs_diff", "mean_abs_diff", "thresholds", "passed",
                 "flipped", "mcnemar_p"}


@pytest.fixture(scope="module")
def verified_copy(exported, tmp_path_factory):
    manifest_path = copy_exports(exported, tmp_path_factory.mktemp("verify") / "exports")
    return manifest_path, verify(VerifyOptions(manifest=manifest_path))


@pytest.fixture(scope="module")
def full_report(verified_copy):
    """verify.json as the full run wrote it, read before any other test re-verifies into the same folder."""
    return json.loads(verified_copy[1].report_path.read_text())


def test_every_exported_artifact_passes(verified_copy, full_report, small_npz):
    manifest_path, result = verified_copy
    assert result.passed, [(r.name, r.failures) for r in result.results]
    report = full_report
    assert report["passed"] is True and report["data"]["test_size"] == len(np.load(small_npz)["y_test"])
    assert len(report["artifacts"]) == 8
    for entry in report["artifacts"]:
        assert set(entry) >= REPORT_FIELDS
    fp32 = next(entry for entry in report["artifacts"] if entry["name"] == "onnx-fp32")
    assert fp32["max_abs_diff"] <= 1e-5 and fp32["agreement"] == 1.0 and fp32["flipped"] == []
    assert result.confusion_path.read_bytes()[:4] == b"\x89PNG"


def test_reverify_uses_cached_keras_predictions_without_tensorflow(verified_copy, full_report):
    manifest_path, _ = verified_copy
    code, imported = run_in_fresh_process("verify", "--manifest", str(manifest_path), "--artifact", "onnx-fp32", watched=("tensorflow",))
    assert code == 0 and imported == set()


def perturbed_onnx(source: Path, destination: Path, scale: float) -> None:
    """The same graph with the dense layer's weights disturbed: a regression verify must catch."""
    model = onnx.load(source)
    rng = np.random.default_rng(0)
    biggest = max(model.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
    weights = onnx.numpy_helper.to_array(biggest)
    noisy = weights + rng.normal(0, scale * weights.std(), weights.shape).astype(weights.dtype)
    biggest.CopyFrom(onnx.numpy_helper.from_array(noisy, biggest.name))
    onnx.save(model, destination)


def test_perturbed_weights_fail_and_every_artifact_is_still_reported(exported, tmp_path):
    manifest_path = copy_exports(exported, tmp_path / "exports")
    manifest = load_manifest(manifest_path)
    perturbed_onnx(manifest.resolve("mnist_cnn.onnx"), manifest_path.parent / "perturbed.onnx", scale=3.0)
    perturbed = manifest_path.parent / "perturbed.onnx"
    entry = replace(
        manifest.artifact("onnx-fp32"), name="onnx-perturbed", path=perturbed.name,
        sha256=sha256_file(perturbed), bytes=perturbed.stat().st_size,
    )
    update_manifest(manifest_path.parent, manifest.model, [entry])

    run = run_cli("verify", "--manifest", str(manifest_path))
    assert run.returncode == 1, run.stderr
    report = json.loads((manifest_path.parent / "verify.json").read_text())
    by_name = {item["name"]: item for item in report["artifacts"]}
    assert len(by_name) == 9 and by_name["onnx-perturbed"]["status"] == "FAIL"
    failures = {failure["check"]: failure["value"] for failure in by_name["onnx-perturbed"]["failures"]}
    assert set(failures) == {"max_abs_diff", "runtime_optimizer"}  # fp32 is judged on |Δp|, which rules out decided flips
    assert "also outside it with ONNX Runtime's graph optimizations off" in failures["runtime_optimizer"], "the file itself differs"
    assert all(item["passed"] for name, item in by_name.items() if name != "onnx-perturbed")
    assert "FAIL" in run.stdout


def test_changed_bytes_are_reported_as_changed_not_verified(exported, tmp_path):
    manifest_path = copy_exports(exported, tmp_path / "exports")
    tamper_onnx(manifest_path.parent / "mnist_cnn.onnx")
    run = run_cli("verify", "--manifest", str(manifest_path), "--artifact", "onnx-fp32", "--json")
    assert run.returncode == 1
    (item,) = json.loads(run.stdout)["artifacts"]
    assert item["status"] == "CHANGED" and item["accuracy"] is None and "changed since export" in item["failures"][0]["value"]
    trusted = run_cli("verify", "--manifest", str(manifest_path), "--artifact", "onnx-fp32", "--no-verify-hash")
    assert trusted.returncode == 0, trusted.stderr


def test_mcnemar_and_statistics_on_known_predictions():
    labels = np.arange(100) % 10
    reference = np.eye(10, dtype=np.float32)[labels]
    worse = reference.copy()
    worse[:10] = np.eye(10, dtype=np.float32)[(labels[:10] + 1) % 10]
    base = ParityResult("x", "x.onnx", Precision.INT8, "0" * 64, Status.PASS, DEFAULT_THRESHOLDS[Precision.INT8])
    result = compare(base, worse, reference, labels)
    assert result.accuracy == 0.9 and result.delta_points == -10.0 and result.agreement == 0.9
    assert result.mcnemar_p == pytest.approx(2 * 0.5**10)
    assert result.flipped == tuple(range(10))
    assert [failure.check for failure in result.failures] == ["agreement", "accuracy_change_points"] and result.status is Status.FAIL
    assert [criterion.decision.value for criterion in result.criteria] == ["FAIL", "FAIL"]
    same = compare(base, reference, reference, labels)
    assert same.status is Status.INCONCLUSIVE and same.mcnemar_p == 1.0, "100 of 100 agree: too few images to certify 99% at 95%"
    assert "about 300 test images would decide it" in same.failures[0].describe()
    many = np.arange(1000) % 10
    assert compare(base, np.eye(10, dtype=np.float32)[many], np.eye(10, dtype=np.float32)[many], many).passed


def test_threshold_overrides_apply():
    strict = DEFAULT_THRESHOLDS[Precision.INT8].overridden(Thresholds(min_agreement=1.0))
    assert (strict.max_drop_points, strict.min_agreement, strict.atol) == (0.5, 1.0, None) and "overridden" in strict.basis


@pytest.mark.parametrize(
    "args, fragment",
    [(["--min-agreement", "1.5"], "--min-agreement"), (["--atol", "-1"], "--atol"), (["--max-drop", "-0.1"], "--max-drop"),
     (["--artifact", "onnx-fp64"], "no artifact named 'onnx-fp64'")],
)
def test_bad_verify_options(verified_copy, args, fragment):
    manifest_path, _ = verified_copy
    assert_one_line_error(run_cli("verify", "--manifest", str(manifest_path), *args), fragment)


def test_bad_manifests(tmp_path):
    missing = tmp_path / "none" / "manifest.json"
    assert_one_line_error(run_cli("verify", "--manifest", str(missing)), "manifest not found", str(missing))
    malformed = tmp_path / "manifest.json"
    malformed.write_text("{not json")
    assert_one_line_error(run_cli("verify", "--manifest", str(malformed)), "not valid JSON")
    malformed.write_text(json.dumps({"schema_version": 2, "model": None, "artifacts": [{"name": "x"}]}))
    assert_one_line_error(run_cli("verify", "--manifest", str(malformed)), "malformed manifest")


def test_manifest_paths_must_stay_inside_the_folder(exported, tmp_path):
    manifest_path = copy_exports(exported, tmp_path / "exports")
    raw = json.loads(manifest_path.read_text())
    raw["artifacts"][0]["path"] = "../../etc/passwd"
    manifest_path.write_text(json.dumps(raw))
    assert_one_line_error(run_cli("verify", "--manifest", str(manifest_path)), "points outside the folder of manifest.json")


@pytest.mark.parametrize(("instructions", "seven_bit", "artifact", "named"), [
    ("avx2", False, "onnx-int8", True), ("vnni", False, "onnx-int8", False), ("avx2", True, "onnx-int8", False),
    ("avx2", False, "tflite-int8", False),
])
def test_a_miss_on_saturating_int8_kernels_names_the_remedy(exported, monkeypatch, instructions, seven_bit, artifact, named):
    """An ONNX int8 file with 8-bit weights that misses on ONNX Runtime's CPU kernels of an x86 CPU without VNNI says
    that 7-bit weights (`export --reduce-range`) avoid the saturation; with VNNI, 7-bit weights or LiteRT it does not."""
    from edgecnn.core.provenance import Int8Sums
    from edgecnn.report.tables import parity_rows
    from edgecnn.runners import Backend, RuntimeName
    from edgecnn.stages import verify as verify_module

    monkeypatch.setattr(verify_module, "int8_dot_product", lambda: Int8Sums(instructions))
    entry = load_manifest(exported).artifact(artifact)
    entry = replace(entry, details=replace(entry.details, quantization=replace(entry.details.quantization, reduce_range=seven_bit)))
    runtime = RuntimeName.ONNXRUNTIME if artifact.startswith("onnx") else RuntimeName.LITERT
    ran = ParityResult(entry.name, entry.path, entry.precision, entry.sha256, Status.INCONCLUSIVE, Thresholds(), runtime=runtime,
                       provider_used=Backend("CPUExecutionProvider", "cpu"))
    assert verify_module.on_saturating_kernels(entry, ran) is named
    verdict = str(parity_rows([replace(ran, saturating_kernels=named)]).rows[0][-1])
    assert ("export with --reduce-range" in verdict) is named
