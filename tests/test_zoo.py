"""The zoo's fast subset on every CI run: EfficientNet, ResNetV2 and ConvNeXt at their smallest sizes, fitted briefly,
through bench/zoo.py's own path (export of the fp32 and fp16 files, an independent ONNX Runtime session with its
default options, verify, predict on pictures of another size, selftest, bench). `python bench/zoo.py` runs every family."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import bench_script

zoo = bench_script("zoo")

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
