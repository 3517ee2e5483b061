"""The zoo's fast subset on every CI run: EfficientNet, ResNetV2 and ConvNeXt at their smallest sizes, fitted briefly,
through bench/zoo.py's own path (export of the fp32 and fp16 files, an independent ONNX Runtime session with its
default options, verify, predict on pictures of another size, selftest, bench). `python bench/zoo.py` runs every family."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("zoo", REPO_ROOT / "bench" / "zoo.py")
assert spec is not None and spec.loader is not None
zoo = sys.modules["zoo"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up while it runs
spec.loader.exec_module(zoo)

SUBSET = ("EfficientNetB0", "ResNet50V2", "ConvNeXtTiny")


@pytest.fixture(scope="module")
def digits(real_npz, tmp_path_factory) -> Path:
    return zoo.digits_npz(str(real_npz), tmp_path_factory.mktemp("zoo"), train=320, test=200)


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBSET)
def test_a_keras_applications_family_goes_through_every_stage(name, digits, tmp_path):
    family = next(family for family in zoo.FAMILIES if family.name == name)
    row = zoo.run_family(family, digits, tmp_path / name, epochs=1, quantize="fp16", log=lambda line: None)
    assert not row.error, row.error
    expected = {"onnx-fp32", "tflite-fp32", "onnx-fp16", "tflite-fp16"}
    assert {name for name, state in row.exported.items() if state == "ok"} == expected, row.exported
    assert row.ort_default_max_abs_diff is not None and row.ort_default_max_abs_diff <= 1e-4, "as apps open it: ORT's defaults"
    assert row.verdicts["onnx-fp32"] == "PASS" and row.verdicts["tflite-fp32"] == "PASS", row.verdicts
    assert row.predict_agreement is not None and row.predict_agreement >= 0.95
    assert all(row.selftest.values()), row.selftest
    assert set(row.latency_us) == expected
