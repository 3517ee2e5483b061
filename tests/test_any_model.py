"""Any Keras image classifier, any labelled images: models edgecnn did not build (keras.applications' MobileNetV3 at
32x32x3, a logits LeNet with a non-square 40x24 input), an image folder of RGB pictures of mixed sizes, and the
built-in 8x8 digits, each through the stages — with inputs that always need resizing and channel conversion."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, run_cli

from edgecnn.core.data import DataRequest, load_dataset
from edgecnn.core.description import Color, InputScaling, OutputKind, Preprocess
from edgecnn.core.images import load_image
from edgecnn.core.manifest import load_manifest
from edgecnn.runners import OnnxRunner, TfliteRunner


def test_a_keras_applications_model_is_described_from_itself(rgb_exported):
    manifest = load_manifest(rgb_exported)
    description = manifest.model.description
    assert description.image_shape == (32, 32, 3) and description.num_classes == 10
    assert description.scaling is InputScaling.RAW, "MobileNetV3 starts with its own Rescaling layer: it takes raw 0-255 pixels"
    assert description.output is OutputKind.PROBABILITIES and description.preprocess is Preprocess.RESIZE
    names = {entry.name: entry.path for entry in manifest.artifacts}
    assert names["onnx-fp32"] == "mobilenet_v3_small.onnx" and names["tflite-int8"] == "mobilenet_v3_small_int8.tflite"
    assert manifest.artifact("onnx-fp32-uint8-input").input.shape == (None, 32, 32, 3)
    tflite = TfliteRunner(manifest.resolve(names["tflite-fp32"]))
    assert tflite.description == description, "the description travels inside every file"
    assert manifest.model.data.image_size == (32, 32) and manifest.model.data.color is Color.RGB


def test_the_32x32_rgb_model_through_verify_bench_and_predict(rgb_exported, picture_files, tmp_path):
    verified = run_cli("verify", "--manifest", str(rgb_exported), "--json")
    report = json.loads(verified.stdout)
    rows = {row["name"]: row for row in report["artifacts"]}
    assert report["data"]["image_shape"] == [32, 32, 3] and report["model"]["name"] == "mobilenet_v3_small"
    for name in ("onnx-fp32", "onnx-fp32-uint8-input", "tflite-fp32"):
        assert rows[name]["passed"] and rows[name]["max_abs_diff"] <= 1e-4, rows[name]
    assert rows["onnx-fp16"]["agreement"] >= 0.99 and rows["tflite-int8"]["accuracy"] is not None

    benched = run_cli("bench", "--manifest", str(rgb_exported), "--batch-sizes", "1,4", "--iterations", "5", "--warmup", "1", "--json")
    assert benched.returncode == 0, benched.stderr
    measured = [row for row in json.loads(benched.stdout)["results"] if row["status"] == "measured"]
    assert len(measured) == 2 * 8

    manifest = load_manifest(rgb_exported)
    for name in ("onnx-fp32", "tflite-int8"):
        model = manifest.resolve(manifest.artifact(name).path)
        run = run_cli("predict", *map(str, picture_files), "--model", str(model), "--json")
        assert run.returncode == 0, run.stderr
        predicted = json.loads(run.stdout)
        runner = OnnxRunner(model) if name.startswith("onnx") else TfliteRunner(model)
        pixels = np.stack([load_image(path, manifest.model.description) for path in picture_files])
        assert pixels.shape == (24, 32, 32, 3)
        expected = runner.probabilities(pixels)
        assert [item["index"] for item in predicted] == expected.argmax(axis=1).tolist()
        assert all(item["label"] == manifest.model.description.class_names[item["index"]] for item in predicted)


@pytest.fixture(scope="module")
def logits_model(small_npz, tmp_path_factory) -> Path:
    """A user's LeNet on 40x24 (non-square) gray digits, ending in Dense(10) without softmax: it gives logits."""
    import keras

    keras.utils.set_random_seed(1)
    data = load_dataset(DataRequest(str(small_npz), (40, 24), Color.GRAY))
    image = keras.Input((40, 24, 1))
    features = keras.layers.Flatten()(keras.layers.MaxPooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(image)))
    model = keras.Model(image, keras.layers.Dense(10)(features), name="lenet")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train / np.float32(255), data.y_train, epochs=3, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("logits") / "lenet.keras"
    model.save(path)
    return path


def test_a_logits_model_with_a_non_square_input_is_verified_on_probabilities(logits_model, small_npz, tmp_path, picture_files):
    out = tmp_path / "exports"
    exported = run_cli("export", "--model", str(logits_model), "--data", str(small_npz), "--image-size", "40x24", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    manifest = load_manifest(out / "manifest.json")
    description = manifest.model.description
    assert description.output is OutputKind.LOGITS and description.image_shape == (40, 24, 1)
    assert manifest.artifact("onnx-fp32").input.shape == (None, 40, 24, 1), "no height/width swap"
    assert manifest.artifact("onnx-fp32-uint8-input").input.shape == (None, 40, 24)
    onnx_runner = OnnxRunner(out / "lenet.onnx")
    raw = onnx_runner.infer(load_dataset(manifest.model.data_request()).x_test[:20])
    assert not np.allclose(raw.sum(axis=1), 1.0, atol=1e-2), "the file keeps the model's own output: logits"

    verified = run_cli("verify", "--manifest", str(out / "manifest.json"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "softmax of the logits" in verified.stdout
    report = json.loads((out / "verify.json").read_text())
    assert report["compared"].startswith("probabilities: softmax")
    rows = {row["name"]: row for row in report["artifacts"]}
    assert all(row["max_abs_diff"] <= 1.0 for row in rows.values()), "probabilities differ by at most 1"
    assert all(row["passed"] for row in rows.values()) and len(rows) == 8

    predicted = json.loads(run_cli("predict", *map(str, picture_files[:6]), "--model", str(out / "lenet_int8.tflite"), "--json").stdout)
    assert all(abs(sum(entry["probability"] for entry in item["top"]) - 1) < 0.02 for item in
               json.loads(run_cli("predict", str(picture_files[0]), "--model", str(out / "lenet.onnx"), "--json", "--top-k", "10").stdout))
    assert len(predicted) == 6 and all(item["label"] in description.class_names for item in predicted)


def test_pipeline_takes_a_users_model_instead_of_training(logits_model, small_npz, tmp_path):
    out = tmp_path / "exports"
    run = run_cli("pipeline", "--model", str(logits_model), "--data", str(small_npz), "--image-size", "40x24", "--format", "onnx",
                  "--out", str(out))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert not (out / "train.json").exists(), "nothing was trained"
    markdown = (out / "report.md").read_text()
    assert "Model lenet: 40x24x1 input" in markdown and "logits out" in markdown and "Trained elsewhere" in markdown
    assert {entry.path for entry in load_manifest(out / "manifest.json").artifacts} == {"lenet.onnx"}


@pytest.mark.slow  # trains for real, end to end
def test_an_image_folder_through_train_and_pipeline(real_arrays, tmp_path):
    from test_data import write_image_folder

    root = write_image_folder(tmp_path / "Garden Pets", real_arrays, classes=("cat", "dog", "eel"), per_class=30)
    out = tmp_path / "exports"
    trained = run_cli("train", "--data", str(root), "--image-size", "24x20", "--epochs", "2", "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    model = out / "garden_pets_cnn.keras"
    report = json.loads((out / "train.json").read_text())
    assert model.is_file() and report["description"]["class_names"] == ["cat", "dog", "eel"]
    assert report["description"]["height"] == 24 and report["description"]["width"] == 20 and report["description"]["channels"] == 3
    assert report["description"]["preprocess"] == "resize" and report["data"]["image_size"] == [24, 20]

    run = run_cli("pipeline", "--skip-train", "--out", str(out))
    rows = json.loads((out / "verify.json").read_text())["artifacts"]
    # 18 test images: the files judged on |Δp| PASS; an int8 or dynamic file cannot be decided at 95% on so few (exit 3)
    assert run.returncode in (0, 3), run.stdout[-2000:] + run.stderr
    assert all(row["status"] == "PASS" for row in rows if row["precision"] in ("fp32", "fp16"))
    assert {row["status"] for row in rows} <= {"PASS", "INCONCLUSIVE"} and (run.returncode == 3) == any(row["status"] == "INCONCLUSIVE" for row in rows)
    markdown = (out / "report.md").read_text()
    ship = markdown.split("## What to ship", 1)[1].split("## ", 1)[0]
    assert "Model garden_pets_cnn: 24x20x3 input" in ship and "3 classes (cat, dog, eel)" in ship
    assert {entry.path for entry in load_manifest(out / "manifest.json").artifacts} >= {"garden_pets_cnn.onnx", "garden_pets_cnn_int8.tflite"}
    picture = next((root / "dog").glob("*.png"))
    predicted = json.loads(run_cli("predict", str(picture), "--model", str(out / "garden_pets_cnn.onnx"), "--json").stdout)
    assert predicted[0]["label"] in ("cat", "dog", "eel")


def test_the_built_in_8x8_digits_train_export_and_verify(tmp_path):
    out = tmp_path / "exports"
    assert run_cli("train", "--data", "sklearn-digits", "--epochs", "3", "--out", str(out)).returncode == 0
    report = json.loads((out / "train.json").read_text())
    assert report["model"]["path"] == "sklearn_digits_cnn.keras" and report["description"]["height"] == 8
    assert report["description"]["preprocess"] == "resize", "8x8 digits are not MNIST's: no digit recipe by guess"
    assert run_cli("export", "--format", "onnx", "--out", str(out)).returncode == 0
    verified = run_cli("verify", "--manifest", str(out / "manifest.json"), "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["data"]["image_shape"] == [8, 8, 1]


def test_a_different_model_replaces_the_folder_only_when_asked(trained_model, logits_model, small_npz, tmp_path):
    out = tmp_path / "exports"
    assert run_cli("export", "--model", str(trained_model), "--format", "onnx", "--out", str(out)).returncode == 0
    refused = run_cli("export", "--model", str(logits_model), "--image-size", "40x24", "--data", str(small_npz), "--format", "onnx",
                      "--out", str(out))
    assert refused.returncode == 2 and "pass --replace" in refused.stderr and (out / "mnist_cnn.onnx").is_file()
    replaced = run_cli("export", "--model", str(logits_model), "--image-size", "40x24", "--data", str(small_npz), "--format", "onnx",
                       "--out", str(out), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    manifest = load_manifest(out / "manifest.json")
    assert manifest.model.path == "lenet.keras" and {entry.path for entry in manifest.artifacts} == {"lenet.onnx"}
    assert not (out / "mnist_cnn.onnx").exists(), "the other model's artifacts are removed, never mixed"


def test_an_older_manifest_is_rewritten_by_export(exported, tmp_path):
    from conftest import copy_exports

    manifest_path = copy_exports(exported, tmp_path / "old")
    raw = json.loads(manifest_path.read_text())
    raw["schema_version"] = 1
    raw["model"].pop("description")
    manifest_path.write_text(json.dumps(raw))
    refused = run_cli("verify", "--manifest", str(manifest_path))
    assert refused.returncode == 2 and "run edgecnn export again" in refused.stderr
    run = run_cli("export", "--model", str(manifest_path.parent / "mnist_cnn.keras"), "--format", "onnx", "--out", str(manifest_path.parent))
    assert run.returncode == 0, run.stderr
    assert load_manifest(manifest_path).model.description.image_shape == (28, 28, 1)


def test_no_image_size_or_class_count_is_written_into_the_package():
    """Only the digit recipe (images.py) and the MNIST source definitions (data.py) may name 28 or 784."""
    found = subprocess.run(["grep", "-rnE", r"\b(28|784)\b", str(REPO_ROOT / "edgecnn"), "--include=*.py"], capture_output=True, text=True).stdout
    places = {re.sub(r":\d+:.*", "", line).rsplit("/", 1)[-1] for line in found.splitlines()}
    assert places <= {"images.py", "data.py"}, found
    data_lines = [line for line in found.splitlines() if "/data.py:" in line]
    assert all("MNIST" in line or "mnist" in line for line in data_lines), data_lines


def test_a_mean_std_override_is_recorded_and_computed_inside_the_uint8_graph(logits_model, small_npz, tmp_path):
    """--input-scaling mean-std: the description in the manifest and the files says so, the uint8-input graph applies
    (pixel - mean) / std itself, and it agrees with Keras fed the same scaled input."""
    out = tmp_path / "exports"
    run = run_cli("export", "--model", str(logits_model), "--data", str(small_npz), "--image-size", "40x24", "--uint8-input",
                  "--input-scaling", "mean-std", "--mean", "33.3", "--std", "78.6", "--out", str(out))
    assert run.returncode == 0, run.stderr
    description = load_manifest(out / "manifest.json").model.description
    assert description.scaling is InputScaling.MEAN_STD and description.mean == (33.3,) and description.std == (78.6,)
    assert OnnxRunner(out / "lenet_uint8_input.onnx").description == description
    verified = run_cli("verify", "--manifest", str(out / "manifest.json"), "--json")
    row = json.loads(verified.stdout)["artifacts"][0]
    assert verified.returncode == 0 and row["name"] == "onnx-fp32-uint8-input" and row["max_abs_diff"] <= 1e-5, row
