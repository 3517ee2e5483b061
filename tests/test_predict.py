from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, copy_exports, external_data_model, run_cli, run_in_fresh_process, tamper_onnx
from PIL import Image

from edgecnn.core.manifest import load_manifest
from edgecnn.runners import OnnxRunner, TfliteRunner


@pytest.fixture(scope="module")
def digit_pngs(real_arrays, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pngs")
    paths = []
    for index, digit in enumerate(real_arrays["x_test"][:100]):
        Image.fromarray(digit).save(folder / f"{index:03d}.png")
        paths.append(folder / f"{index:03d}.png")
    return paths


@pytest.mark.parametrize("artifact", ["mnist_cnn.onnx", "mnist_cnn_int8.tflite"])
def test_predict_matches_what_verify_computes_on_the_first_100_test_digits(exported, digit_pngs, real_arrays, artifact):
    model = exported.parent / artifact
    run = run_cli("predict", *map(str, digit_pngs), "--model", str(model), "--json", "--top-k", "2")
    assert run.returncode == 0, run.stderr
    predicted = [item["index"] for item in json.loads(run.stdout)]
    runner = OnnxRunner(model) if artifact.endswith(".onnx") else TfliteRunner(model)
    expected = runner.infer(real_arrays["x_test"][:100]).argmax(axis=1)
    assert predicted == expected.tolist()
    assert np.mean(np.array(predicted) == real_arrays["y_test"][:100]) > 0.8
    assert all(len(item["top"]) == 2 for item in json.loads(run.stdout))


def test_predict_never_imports_tensorflow(exported, digit_pngs):
    code, imported = run_in_fresh_process("predict", str(digit_pngs[0]), "--model", str(exported.parent / "mnist_cnn.onnx"))
    assert code == 0 and imported == set()


def test_predict_refuses_a_tampered_model_unless_told(exported, digit_pngs, tmp_path):
    manifest = copy_exports(exported, tmp_path / "exports")
    model_path = manifest.parent / "mnist_cnn.onnx"
    tamper_onnx(model_path)
    assert_one_line_error(run_cli("predict", str(digit_pngs[0]), "--model", str(model_path)), "changed since export", str(model_path))
    assert run_cli("predict", str(digit_pngs[0]), "--model", str(model_path), "--no-verify-hash").returncode == 0


def test_the_model_is_checked_against_a_manifest_that_lists_it_and_a_broken_one_is_named(exported, digit_pngs, tmp_path):
    """predict reads the recorded sha256 from the artifact list alone (start-up); a list it cannot read so is loaded
    whole, and the manifest's own one-line error names what is wrong."""
    manifest = copy_exports(exported, tmp_path / "exports")
    model_path = manifest.parent / "mnist_cnn.onnx"
    raw = json.loads(manifest.read_text())
    listed = next(entry for entry in raw["artifacts"] if entry["path"] == model_path.name)
    listed["path"] = "./" + listed["path"]  # another spelling of the same file still matches
    manifest.write_text(json.dumps(raw))
    assert run_cli("predict", str(digit_pngs[0]), "--model", str(model_path)).returncode == 0
    listed["sha256"] = "0" * 64
    manifest.write_text(json.dumps(raw))
    assert_one_line_error(run_cli("predict", str(digit_pngs[0]), "--model", str(model_path)), "changed since export")
    del listed["sha256"]
    manifest.write_text(json.dumps(raw))
    assert_one_line_error(run_cli("predict", str(digit_pngs[0]), "--model", str(model_path)), "malformed manifest")
    raw["artifacts"] = [entry for entry in raw["artifacts"] if entry is not listed]
    manifest.write_text(json.dumps(raw))
    assert run_cli("predict", str(digit_pngs[0]), "--model", str(model_path)).returncode == 0  # not listed: nothing to check


@pytest.fixture(scope="module")
def scan_folder(real_arrays, tmp_path_factory):
    """120 test digits in nested folders, a corrupt PNG among them, and files predict must skip."""
    root = tmp_path_factory.mktemp("scans")
    for index, digit in enumerate(real_arrays["x_test"][:120]):
        folder = root / f"batch{index // 50}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(digit).save(folder / f"{index:04d}.png")
    (root / "batch1" / "0060.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "notes.txt").write_text("not an image")
    return root


def expected_labels(exported, real_arrays, count=120):
    return OnnxRunner(exported.parent / "mnist_cnn.onnx").infer(real_arrays["x_test"][:count]).argmax(axis=1).tolist()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_folder_is_classified_in_batches_and_written_with_an_error_row(exported, real_arrays, scan_folder, tmp_path, suffix):
    output = tmp_path / f"predictions{suffix}"
    run = run_cli("predict", str(scan_folder), "--model", str(exported.parent / "mnist_cnn.onnx"), "--output", str(output), "--batch-size", "32")
    assert run.returncode == 1, run.stderr  # one unreadable image: reported, the run goes on, exit 1 at the end
    assert "classified 119 of 120 images (1 unreadable)" in run.stdout
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        labels = [row["index"] for row in rows]
        assert all(row["label"] == str(row["index"]) for row in rows if "error" not in row)
        assert all(len(row["probabilities"]) == 10 for row in rows if "error" not in row)
    else:
        rows = list(csv.DictReader(output.open()))
        labels = [int(row["label"]) if row["label"] else None for row in rows]
        assert list(rows[0]) == ["path", "label", *(f"p{d}" for d in range(10)), "error"]
    assert [Path(row["path"]).name for row in rows] == [f"{index:04d}.png" for index in range(120)]  # sorted, no notes.txt
    assert "cannot decode image" in rows[60]["error"] and labels[60] is None
    expected = expected_labels(exported, real_arrays)
    assert labels[:60] + labels[61:] == expected[:60] + expected[61:]


def test_globs_and_strict(exported, scan_folder):
    model = str(exported.parent / "mnist_cnn.onnx")
    run = run_cli("predict", str(scan_folder / "batch0" / "*.png"), "--model", model, "--json")
    assert run.returncode == 0 and len(json.loads(run.stdout)) == 50
    strict = run_cli("predict", str(scan_folder), "--model", model, "--strict")
    assert_one_line_error(strict, "cannot decode image", "0060.png")


def test_info_describes_onnx_and_tflite(exported):
    manifest = load_manifest(exported)
    onnx_run = run_cli("info", str(manifest.resolve("mnist_cnn_int8.onnx")), "--json")
    assert onnx_run.returncode == 0, onnx_run.stderr
    info = json.loads(onnx_run.stdout)
    assert info["format"] == "onnx" and info["inputs"][0]["name"] == "image" and info["opset"]["ai.onnx"] == 17
    assert info["sha256"] == manifest.artifact("onnx-int8").sha256 and info["ops"]["QuantizeLinear"] >= 1
    assert json.loads(info["metadata"]["class_labels"]) == [str(d) for d in range(10)]
    tflite_run = run_cli("info", str(manifest.resolve("mnist_cnn_int8.tflite")))
    assert tflite_run.returncode == 0 and "scale 0.00392157, zero point -128" in tflite_run.stdout and "CONV_2D" in tflite_run.stdout


def test_info_refuses_external_data_outside_the_folder(tmp_path):
    path = external_data_model(tmp_path)
    assert_one_line_error(run_cli("info", str(path)), "'../secret.bin' points outside", str(path))


def test_a_bad_model_is_reported_before_bad_images(tmp_path):
    """With an unreadable model and unreadable images, the model is what the user hears about first."""
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"\x08\x07 not onnx")
    run = run_cli("predict", str(tmp_path / "no-such-folder" / "*.png"), "--model", str(model))
    assert_one_line_error(run, "cannot load the model", str(model))


def test_a_reader_that_stops_early_gets_no_error(exported, digit_pngs):
    """`edgecnn predict DIR --json | head`: the closed pipe ends the run quietly, as any Unix tool's."""
    import subprocess
    import sys

    pictures = [str(path) for path in digit_pngs] * 10  # ~250 KB of JSON: more than a pipe holds
    command = [sys.executable, "-m", "edgecnn", "predict", *pictures, "--model", str(exported.parent / "mnist_cnn.onnx"), "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(1) == b"["
    process.stdout.close()
    assert process.wait(timeout=120) == 1
    assert process.stderr.read() == b""


def test_forked_decoders_give_the_rows_of_one_batch_and_raise_strict_errors(exported, scan_folder):
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from edgecnn.core.errors import EdgecnnError
    from edgecnn.stages.predict import PredictOptions, decoding_pool, predict

    pool, workers = decoding_pool(batches=3)
    with pool:
        assert isinstance(pool, ProcessPoolExecutor) is sys.platform.startswith("linux") and 1 <= workers <= 3
    model = exported.parent / "mnist_cnn.onnx"
    many = predict(PredictOptions(images=(str(scan_folder),), model=model, batch_size=7)).predictions  # 18 batches, forked decoders
    one = predict(PredictOptions(images=(str(scan_folder),), model=model, batch_size=1000)).predictions  # one batch, decoded here
    assert [(row.path, row.index, row.error) for row in many] == [(row.path, row.index, row.error) for row in one]
    assert np.allclose([row.probabilities for row in many if not row.error], [row.probabilities for row in one if not row.error], atol=1e-6)
    with pytest.raises(EdgecnnError, match="cannot decode image"):
        predict(PredictOptions(images=(str(scan_folder),), model=model, batch_size=7, strict=True))
