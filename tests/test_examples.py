"""The embedding examples run against freshly exported models and agree with `edgecnn predict`, class for class, on
the same images: for the digit model official 28x28 test digits, 200x200 renderings of them on white and photo-like
noisy scans; for a 32x32 RGB model (keras.applications' MobileNetV3) pictures that all need resizing and channel
conversion. The same example code serves both: everything comes from the file's metadata."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, copy_exports, perturb_largest_initializer, run_cli
from PIL import Image, ImageFilter

EXAMPLES = REPO_ROOT / "examples"


def photo_like(digit: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Dark ink on an uneven gray paper, blurred, with sensor noise: what a phone photo of a digit looks like."""
    ink = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.BILINEAR), dtype=np.float64) / 255
    paper = 175 + 20 * np.linspace(0, 1, size[0])[np.newaxis, :] + rng.normal(0, 8, (size[1], size[0]))
    pixels = np.clip(paper * (1 - 0.85 * ink), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1.2)).convert("RGB")


@pytest.fixture(scope="module")
def shared_images(real_arrays, tmp_path_factory) -> list[str]:
    """60 images every example and predict classify: 30 test digits as they are, 20 as 200x200 black-on-white
    renderings, 10 as noisy photo-like scans of other sizes."""
    folder = tmp_path_factory.mktemp("example-images")
    rng = np.random.default_rng(0)
    digits = real_arrays["x_test"]
    paths = []
    for index in range(60):
        if index < 30:
            image = Image.fromarray(digits[index])
        elif index < 50:
            image = Image.fromarray(255 - digits[index]).resize((200, 200), Image.Resampling.BILINEAR)
        else:
            image = photo_like(digits[index], rng, (int(rng.integers(120, 260)), int(rng.integers(120, 260))))
        paths.append(str(folder / f"{index:02d}.png"))
        image.save(paths[-1])
    return paths


def predicted(model: Path, paths: list[str]) -> list[int]:
    run = run_cli("predict", *paths, "--model", str(model), "--json")
    assert run.returncode == 0, run.stderr
    return [item["index"] for item in json.loads(run.stdout)]


def printed_digits(output: str) -> list[int]:
    return [int(line.rsplit(": ", 1)[1].split()[0]) for line in output.strip().splitlines()]


def run_example(command: list[str]) -> list[int]:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd="/")
    assert completed.returncode == 0, completed.stderr
    return printed_digits(completed.stdout)


def test_the_shared_images_are_classified_sensibly_by_predict(exported, shared_images, real_arrays):
    classes = predicted(exported.parent / "mnist_cnn_uint8_input.onnx", shared_images)
    assert np.mean(np.array(classes) == real_arrays["y_test"][:60]) >= 0.8  # a 3-epoch model on small data


def test_python_example_agrees_with_predict(exported, shared_images):
    model = exported.parent / "mnist_cnn_uint8_input.onnx"
    assert run_example([sys.executable, str(EXAMPLES / "python" / "classify.py"), str(model), *shared_images]) == predicted(model, shared_images)


def test_litert_example_agrees_with_predict_on_the_int8_model(exported, shared_images):
    model = exported.parent / "mnist_cnn_int8.tflite"
    command = [sys.executable, str(EXAMPLES / "python" / "classify_litert.py"), str(model), *shared_images]
    assert run_example(command) == predicted(model, shared_images)


def test_node_example_agrees_with_predict(exported, shared_images):
    node = shutil.which("node")
    if node is None or not (EXAMPLES / "node" / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("node or the example's node_modules missing (cd examples/node && npm ci --ignore-scripts)")
    model = exported.parent / "mnist_cnn_uint8_input.onnx"
    assert run_example([node, str(EXAMPLES / "node" / "classify.js"), str(model), *shared_images]) == predicted(model, shared_images)


def test_the_examples_selftest_at_start_up_passes_and_refuses_a_changed_file(exported, tmp_path):
    """Python's selftest.py (which classify.py runs first) and the Node example's start-up check, on a good file and
    on the same file with its weights shuffled and its metadata (goldens included) left as it was."""
    model = copy_exports(exported, tmp_path / "copied").parent / "mnist_cnn_uint8_input.onnx"
    node = shutil.which("node") if (EXAMPLES / "node" / "node_modules" / "onnxruntime-node").is_dir() else None
    commands = [[sys.executable, str(EXAMPLES / "python" / "selftest.py"), str(model)]]
    if node is not None:
        commands.append([node, str(EXAMPLES / "node" / "classify.js"), str(model), "--selftest"])
    for expected, verdict in ((0, "selftest PASS: 8 goldens, top-1 8/8"), (1, "selftest FAIL")):
        for command in commands:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd="/")
            assert completed.returncode == expected and verdict in completed.stdout + completed.stderr, (command, completed.stdout, completed.stderr)
        perturb_largest_initializer(model)


def test_the_javascript_preprocessing_gives_the_same_pixels_as_predict(shared_images):
    """Not just the same class: the same 784 pixels, for every image (the browser page runs this very file)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node missing")
    from edgecnn.core.images import load_digit, load_grayscale

    script = (
        "const { toMnist } = require(process.argv[1]); const fs = require('fs');"
        "const [w, h] = [Number(process.argv[3]), Number(process.argv[4])];"
        "process.stdout.write(Buffer.from(toMnist(new Uint8Array(fs.readFileSync(process.argv[2])), w, h)));"
    )
    for path in shared_images[25:]:
        gray = load_grayscale(Path(path))
        raw = Path(path).with_suffix(".gray")
        raw.write_bytes(gray.tobytes())
        completed = subprocess.run([node, "-e", script, str(EXAMPLES / "web" / "preprocess.js"), str(raw), str(gray.shape[1]), str(gray.shape[0])],
                                   capture_output=True, timeout=60, check=True)
        assert np.array_equal(np.frombuffer(completed.stdout, np.uint8).reshape(28, 28), load_digit(Path(path))), path


def test_tflite_files_carry_their_metadata(exported):
    from edgecnn.core.tflite_metadata import read

    for name in ("mnist_cnn_fp32.tflite", "mnist_cnn_int8.tflite"):
        facts = read((exported.parent / name).read_bytes())["edgecnn"]
        assert json.loads(facts["class_labels"]) == [str(digit) for digit in range(10)] and facts["edgecnn_version"]
        assert len(facts["source_model_sha256"]) == 64 and facts["input_layout"] == "NHWC [batch, 28, 28, 1]"
    run = run_cli("info", str(exported.parent / "mnist_cnn_int8.tflite"))
    assert run.returncode == 0 and "meta     input_zero_point = -128" in run.stdout and "meta     class_labels" in run.stdout


def predicted_probabilities(model: Path, paths: list[Path], tmp_path: Path) -> np.ndarray:
    output = tmp_path / f"{model.stem}.jsonl"
    run = run_cli("predict", *map(str, paths), "--model", str(model), "--output", str(output))
    assert run.returncode == 0, run.stderr
    return np.array([json.loads(line)["probabilities"] for line in output.read_text().splitlines()])


def example_command(kind: str) -> list[str]:
    if kind == "node":
        node = shutil.which("node")
        if node is None or not (EXAMPLES / "node" / "node_modules" / "onnxruntime-node").is_dir():
            pytest.skip("node or the example's node_modules missing (cd examples/node && npm ci --ignore-scripts)")
        return [node, str(EXAMPLES / "node" / "classify.js")]
    script = "classify_litert.py" if kind == "litert" else "classify.py"
    return [sys.executable, str(EXAMPLES / "python" / script)]


@pytest.mark.parametrize("kind, artifact", [
    ("python", "onnx-fp32-uint8-input"), ("python", "onnx-fp32"), ("litert", "tflite-int8"), ("litert", "tflite-fp32"),
    ("node", "onnx-fp32-uint8-input"), ("node", "onnx-fp32"),
])
def test_examples_classify_a_32x32_rgb_model_like_predict(rgb_exported, picture_files, tmp_path, kind, artifact):
    from edgecnn.core.manifest import load_manifest

    model = load_manifest(rgb_exported).resolve(load_manifest(rgb_exported).artifact(artifact).path)
    expected = predicted_probabilities(model, picture_files, tmp_path)
    completed = subprocess.run([*example_command(kind), str(model), *map(str, picture_files), "--json"], capture_output=True, text=True,
                               timeout=300, cwd="/")
    assert completed.returncode == 0, completed.stderr
    rows = [json.loads(line) for line in completed.stdout.splitlines()]
    got = np.array([row["probabilities"] for row in rows])
    assert got.shape == expected.shape == (len(picture_files), 10)
    assert [row["index"] for row in rows] == expected.argmax(axis=1).tolist()
    assert np.abs(got - expected).max() <= 0.01
