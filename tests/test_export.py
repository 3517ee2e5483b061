from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import assert_one_line_error, copy_exports, run_cli

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.manifest import ArtifactFormat, load_manifest
from edgecnn.stages.export import ARTIFACTS, ExportOptions, FormatChoice, IoType, Quantize, export, select_artifacts
from edgecnn.stages.export.inputs import converter_for

ENTRY_FIELDS = {"path", "format", "precision", "input", "output", "bytes", "sha256", "source_model_sha256", "converter"}


def test_all_writes_every_variant_with_a_complete_manifest(exported, trained_model):
    raw = json.loads(exported.read_text())
    names = [entry["name"] for entry in raw["artifacts"]]
    assert names == [spec.name for spec in ARTIFACTS if spec.in_all]
    model_sha = hashlib.sha256(trained_model.read_bytes()).hexdigest()
    assert raw["model"]["sha256"] == model_sha and raw["model"]["test_accuracy"] > 0.8 and raw["model"]["data"]["spec"]
    for entry in raw["artifacts"]:
        assert set(entry) >= ENTRY_FIELDS
        path = exported.parent / entry["path"]
        assert not Path(entry["path"]).is_absolute() and path.is_file()
        assert entry["bytes"] == path.stat().st_size
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["source_model_sha256"] == model_sha
        assert entry["converter"]["tensorflow"]
    assert not any(child.name.startswith(".export-staging") for child in exported.parent.iterdir())


def test_onnx_files_are_checked_named_and_self_describing(exported):
    manifest = load_manifest(exported)
    for entry in manifest.artifacts:
        if entry.format is not ArtifactFormat.ONNX:
            continue
        path = manifest.resolve(entry.path)
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(path)
        metadata = {prop.key: prop.value for prop in model.metadata_props}
        assert json.loads(metadata["class_labels"]) == [str(d) for d in range(10)]
        assert metadata["source_model_sha256"] == manifest.model.sha256
        assert {"input_layout", "input_scaling", "edgecnn_version", "keras_test_accuracy"} <= set(metadata)
        assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["probabilities"]
        assert entry.output.shape == (None, 10)
    assert manifest.artifact("onnx-fp32").input.shape == (None, 28, 28, 1)
    assert manifest.artifact("onnx-fp32-uint8-input").input.dtype == "uint8"
    assert manifest.artifact("onnx-fp32-uint8-input").input.shape == (None, 28, 28)


def test_fp32_onnx_matches_keras_on_the_whole_test_set(exported, real_arrays):
    import keras
    import onnxruntime as ort

    manifest = load_manifest(exported)
    model = keras.saving.load_model(manifest.resolve(manifest.model.path), safe_mode=True)
    images = real_arrays["x_test"]
    expected = model.predict(images[..., None].astype(np.float32) / 255.0, batch_size=1000, verbose=0)
    float_session = ort.InferenceSession(str(manifest.resolve("mnist_cnn.onnx")), providers=["CPUExecutionProvider"])
    raw_session = ort.InferenceSession(str(manifest.resolve("mnist_cnn_uint8_input.onnx")), providers=["CPUExecutionProvider"])
    from_float = float_session.run(None, {"image": images[..., None].astype(np.float32) / 255.0})[0]
    from_raw = raw_session.run(None, {"image": images})[0]
    assert np.abs(from_float - expected).max() <= 1e-5
    assert np.abs(from_raw - expected).max() <= 1e-5


def test_quantized_files_are_small_and_int8_tflite_has_int8_io(exported):
    manifest = load_manifest(exported)
    fp32 = manifest.artifact("onnx-fp32").bytes
    for name in ("onnx-int8", "tflite-int8", "tflite-dynamic"):
        assert manifest.artifact(name).bytes <= 0.30 * fp32, name
    assert manifest.artifact("tflite-fp16").bytes <= 0.55 * manifest.artifact("tflite-fp32").bytes
    tflite_int8 = manifest.artifact("tflite-int8")
    assert tflite_int8.input.dtype == "int8" and tflite_int8.output.dtype == "int8"
    assert tflite_int8.input.scale == pytest.approx(1 / 255, rel=1e-3) and tflite_int8.input.zero_point == -128
    assert tflite_int8.details.calibration is not None and tflite_int8.details.calibration.images == 500


FRESH_PROCESS = """
import sys, numpy as np
path, runtime = sys.argv[1], sys.argv[2]
data = np.load(sys.argv[3], allow_pickle=False)["x_test"][:1000]
for batch in (1, 1000):
    images = data[:batch]
    if runtime == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0]
        x = images if feed.type == "tensor(uint8)" else images[..., None].astype(np.float32) / 255.0
        out = session.run(None, {feed.name: x})[0]
    else:
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=path)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [batch, 28, 28, 1])
        interpreter.allocate_tensors()
        x = images[..., None].astype(np.float32) / 255.0
        scale, zero = detail["quantization"]
        if scale:
            x = np.clip(np.round(x / scale) + zero, -128 if detail["dtype"] == np.int8 else 0, 127 if detail["dtype"] == np.int8 else 255).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert out.shape == (batch, 10), out.shape
    print(batch, int(out.argmax(axis=1)[0]))
assert "tensorflow" not in sys.modules and "edgecnn" not in sys.modules
print("OK")
"""


def test_each_artifact_runs_in_a_fresh_process_without_tensorflow(exported, real_npz):
    manifest = load_manifest(exported)
    for entry in manifest.artifacts:
        completed = subprocess.run(
            [sys.executable, "-c", FRESH_PROCESS, str(manifest.resolve(entry.path)), entry.format.value, str(real_npz)],
            capture_output=True, text=True, timeout=120, cwd="/",
        )
        assert completed.returncode == 0 and completed.stdout.strip().endswith("OK"), (entry.name, completed.stderr[-2000:])


def test_uint8_io_tflite_variant(trained_model, tmp_path):
    result = export(ExportOptions(model=trained_model, format=FormatChoice.TFLITE, quantize=Quantize.INT8, io_type=IoType.UINT8, out=tmp_path))
    (entry,) = result.artifacts
    assert entry.name == "tflite-int8-uint8-io" and entry.input.dtype == "uint8" and entry.input.zero_point == 0


def test_reexport_updates_entries_and_keeps_others(exported, tmp_path):
    manifest_path = copy_exports(exported, tmp_path / "copy")
    before = load_manifest(manifest_path)
    model = manifest_path.parent / Path(before.model.path).name
    export(ExportOptions(model=model, format=FormatChoice.ONNX, out=manifest_path.parent))
    after = load_manifest(manifest_path)
    kept = [entry.name for entry in before.artifacts if entry.name != "onnx-fp32"]
    assert [entry.name for entry in after.artifacts] == kept + ["onnx-fp32"]  # others untouched, the re-exported entry last
    assert after.artifact("onnx-fp32").created >= before.artifact("onnx-fp32").created
    assert after.artifact("tflite-int8") == before.artifact("tflite-int8")


def test_failed_export_leaves_previous_files_byte_identical(exported, tmp_path, monkeypatch):
    manifest_path = copy_exports(exported, tmp_path / "copy")
    folder = manifest_path.parent
    before = {child.name: child.read_bytes() for child in folder.iterdir() if child.is_file()}

    def killed_converter(spec, inputs, base):
        raise KeyboardInterrupt("simulated kill mid-conversion")  # a refusal is a failed row; a kill stops the export

    monkeypatch.setattr(converter_for(ArtifactFormat.TFLITE), "convert", killed_converter)
    model = folder / Path(load_manifest(manifest_path).model.path).name
    with pytest.raises(KeyboardInterrupt, match="simulated"):
        export(ExportOptions(model=model, format=FormatChoice.ALL, out=folder))
    after = {child.name: child.read_bytes() for child in folder.iterdir() if child.is_file()}
    assert after == before
    assert not [child for child in folder.iterdir() if child.name.startswith(".export-staging")]


def test_concurrent_exports_into_one_folder_keep_both(trained_model, tmp_path):
    runs = [
        subprocess.Popen([sys.executable, "-m", "edgecnn", "export", "--format", fmt, "--model", str(trained_model), "--out", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for fmt in ("onnx", "tflite")
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    names = {entry.name for entry in load_manifest(tmp_path / "manifest.json").artifacts}
    assert names == {"onnx-fp32", "tflite-fp32"}


@pytest.mark.parametrize(
    "args, option",
    [
        (["--format", "onnx", "--quantize", "dynamic"], "--quantize"),
        (["--format", "tflite", "--uint8-input"], "--uint8-input"),
        (["--format", "onnx", "--io-type", "uint8"], "--io-type"),
        (["--format", "tflite", "--uint8-input", "--io-type", "uint8"], "--uint8-input"),
        (["--format", "onnx", "--opset", "5"], "--opset"),
        (["--format", "coreml"], "--format"),
        (["--quantize", "int4"], "--quantize"),
    ],
)
def test_impossible_requests_are_one_line_errors(args, option, tmp_path):
    assert_one_line_error(run_cli("export", *args, "--out", str(tmp_path)), option)


def test_bad_model_files(tmp_path):
    missing = tmp_path / "missing.keras"
    assert_one_line_error(run_cli("export", "--model", str(missing), "--out", str(tmp_path / "o")), "not found", str(missing))
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(os.urandom(2048))
    assert_one_line_error(run_cli("export", "--model", str(garbage), "--out", str(tmp_path / "o")), "not a valid .keras", str(garbage))
    not_keras = tmp_path / "zip.keras"
    with zipfile.ZipFile(not_keras, "w") as archive:
        archive.writestr("hello.txt", "not a model")
    assert_one_line_error(run_cli("export", "--model", str(not_keras), "--out", str(tmp_path / "o")), "cannot load Keras model", str(not_keras))
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_lambda_layer_model_is_refused(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    from edgecnn.core.backend import load_model

    with pytest.raises(EdgecnnError, match="Lambda layer"):
        load_model(path)


def test_file_where_output_folder_should_be(trained_model, tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("x")
    assert_one_line_error(run_cli("export", "--model", str(trained_model), "--out", str(blocker)), "is a file, not a folder")


def test_selection_table():
    assert [spec.name for spec in select_artifacts(ExportOptions(format=FormatChoice.ONNX, quantize=Quantize.INT8))] == ["onnx-int8"]
    assert [spec.name for spec in select_artifacts(ExportOptions(format=FormatChoice.TFLITE, quantize=Quantize.FP16))] == ["tflite-fp16"]
    assert [spec.name for spec in select_artifacts(ExportOptions(format=FormatChoice.ONNX, uint8_input=True))] == ["onnx-fp32-uint8-input"]


def test_without_format_every_format_with_the_requested_variant_is_selected():
    def names(**request):
        return [spec.name for spec in select_artifacts(ExportOptions(**request))]

    assert names() == names(format=FormatChoice.ALL) == [spec.name for spec in ARTIFACTS if spec.in_all]
    assert names(quantize=Quantize.INT8) == ["onnx-int8", "tflite-int8"]
    assert names(quantize=Quantize.FP16) == ["onnx-fp16", "tflite-fp16"]
    assert names(format=FormatChoice.ALL, quantize=Quantize.INT8) == ["onnx-int8", "tflite-int8"]
    assert names(quantize=Quantize.DYNAMIC) == ["tflite-dynamic"]
    assert names(uint8_input=True) == ["onnx-fp32-uint8-input"]
    assert names(io_type=IoType.UINT8) == ["tflite-int8-uint8-io"]
    assert names(format=FormatChoice.TFLITE) == ["tflite-fp32"]
    with pytest.raises(EdgecnnError, match="not available for onnx"):
        select_artifacts(ExportOptions(format=FormatChoice.ONNX, quantize=Quantize.DYNAMIC))


def test_staging_folders_of_killed_exports_are_removed_by_the_next_one(exported, tmp_path):
    """A folder left by an export that died (its process is gone) is removed; one of a live export is kept."""
    import subprocess

    from edgecnn.stages.export.run import STAGING_PREFIX

    manifest_path = copy_exports(exported, tmp_path / "exports")
    folder = manifest_path.parent
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = folder / f"{STAGING_PREFIX}{finished.pid}-abc123"
    older = folder / f"{STAGING_PREFIX}k2j4h1"  # from an edgecnn that did not name its folders after the process
    live = folder / f"{STAGING_PREFIX}{os.getppid()}-def456"
    for staging in (dead, older, live):
        staging.mkdir()
        (staging / "half-written.onnx").write_bytes(b"\x00" * 10)
    run = run_cli("export", "--model", str(folder / "mnist_cnn.keras"), "--format", "onnx", "--out", str(folder))
    assert run.returncode == 0, run.stderr
    assert not dead.exists() and not older.exists() and live.is_dir()


def test_format_choice_offers_every_exported_format():
    from edgecnn.core.manifest import ArtifactFormat
    from edgecnn.stages.export import FormatChoice

    assert {choice.value for choice in FormatChoice} == {fmt.value for fmt in ArtifactFormat if fmt.is_artifact} | {"all"}
