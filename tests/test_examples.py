"""The embedding examples run against a freshly exported model and agree with `edgecnn predict`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, run_cli
from PIL import Image

EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="module")
def digits_and_expected(exported, real_arrays, tmp_path_factory):
    folder = tmp_path_factory.mktemp("example-digits")
    paths = []
    for index, digit in enumerate(real_arrays["x_test"][:50]):
        Image.fromarray(digit).save(folder / f"{index:02d}.png")
        paths.append(str(folder / f"{index:02d}.png"))
    model = exported.parent / "mnist_cnn_uint8_input.onnx"
    run = run_cli("predict", *paths, "--model", str(model), "--json")
    assert run.returncode == 0, run.stderr
    return model, paths, [item["digit"] for item in json.loads(run.stdout)]


def printed_digits(output: str) -> list[int]:
    return [int(line.rsplit(": ", 1)[1].split()[0]) for line in output.strip().splitlines()]


def test_python_example_agrees_with_predict(digits_and_expected):
    model, paths, expected = digits_and_expected
    completed = subprocess.run([sys.executable, str(EXAMPLES / "python" / "classify.py"), str(model), *paths],
                               capture_output=True, text=True, timeout=120, cwd="/")
    assert completed.returncode == 0, completed.stderr
    assert printed_digits(completed.stdout) == expected


def test_node_example_agrees_with_predict(digits_and_expected):
    node = shutil.which("node")
    if node is None or not (EXAMPLES / "node" / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("node or the example's node_modules missing (cd examples/node && npm ci --ignore-scripts)")
    model, paths, expected = digits_and_expected
    completed = subprocess.run([node, str(EXAMPLES / "node" / "classify.js"), str(model), *paths],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert printed_digits(completed.stdout) == expected
