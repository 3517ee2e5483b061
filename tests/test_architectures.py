"""What real architectures broke, each on the smallest model that shows it: a zero Pad before MaxPool (ResNetV2's stem)
under ONNX Runtime's default optimizer, constants a layer captures (EfficientNet's Normalization), a grouped
convolution and the exact GELU (ConvNeXt), a graph clean-up that raises, a converter that refuses one format, `.h5`
files and models built for any image size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from edgecnn.core.manifest import ArtifactFormat, load_manifest
from edgecnn.stages.export import ExportOptions, FormatChoice, export
from edgecnn.stages.verify import VerifyOptions, verify


def keras_model(layers: list, shape: tuple[int, int, int] = (28, 28, 1), classes: int = 10):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def saved(model, path: Path) -> Path:
    model.save(path)
    return path


def ort_default_max_abs_diff(manifest_path: Path, images: np.ndarray) -> float:
    """The fp32 ONNX file in a plain InferenceSession (ORT's default options, as apps open it) against Keras."""
    import onnxruntime as ort

    from edgecnn.core.backend import load_model

    manifest = load_manifest(manifest_path)
    description = manifest.model.description
    session = ort.InferenceSession(str(manifest.resolve(manifest.artifact("onnx-fp32").path)), providers=["CPUExecutionProvider"])
    feed = description.model_input(images)
    keras_output = np.asarray(load_model(manifest.resolve(manifest.model.path))(feed, training=False))
    return float(np.abs(session.run(None, {"image": feed})[0] - keras_output).max())


@pytest.fixture(scope="module")
def pad_pool_export(small_npz, tmp_path_factory) -> Path:
    """ZeroPadding2D → MaxPooling2D on signed activations (a convolution with a negative bias), as in ResNetV2's stem."""
    import keras

    folder = tmp_path_factory.mktemp("padpool")
    model = keras_model([keras.layers.Conv2D(8, 3, bias_initializer=keras.initializers.Constant(-0.5)),
                         keras.layers.ZeroPadding2D(1), keras.layers.MaxPooling2D(3, strides=2)])
    path = saved(model, folder / "padpool.keras")
    return export(ExportOptions(model=path, data=str(small_npz), format=FormatChoice.ONNX, out=folder)).manifest_path


def test_a_zero_pad_before_max_pool_stays_right_under_ort_defaults(pad_pool_export, real_arrays):
    entry = load_manifest(pad_pool_export).artifact("onnx-fp32")
    assert entry.details.valid_pools_after_zero_pads, "the pool fed by the zero Pad is written with auto_pad=VALID"
    assert entry.details.default_session_check is not None and entry.details.default_session_check.passed
    assert ort_default_max_abs_diff(pad_pool_export, real_arrays["x_test"][:500, ..., None]) <= 1e-4
    assert verify(VerifyOptions(manifest=pad_pool_export)).passed


def undo_valid_pools(path: Path) -> None:
    """The file as export wrote it before the rewrite: the pool's own all-zero pads, which ORT's Pad_Fusion extends."""
    import onnx
    from onnx import helper

    model = onnx.load(path)
    for node in model.graph.node:
        if node.op_type == "MaxPool":
            kept = [attribute for attribute in node.attribute if attribute.name != "auto_pad"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("pads", [0, 0, 0, 0])])
    onnx.save(model, path)


def test_verify_names_the_ort_pass_that_breaks_a_correct_file_and_writes_the_minimal_graph(pad_pool_export, real_arrays, tmp_path):
    import shutil

    import onnx

    from edgecnn.core.files import sha256_file

    folder = tmp_path / "undone"
    shutil.copytree(pad_pool_export.parent, folder)
    manifest_path = folder / "manifest.json"
    onnx_path = folder / load_manifest(manifest_path).artifact("onnx-fp32").path
    undo_valid_pools(onnx_path)
    raw = json.loads(manifest_path.read_text())
    raw["artifacts"][0]["sha256"] = sha256_file(onnx_path)
    manifest_path.write_text(json.dumps(raw))
    damage = ort_default_max_abs_diff(manifest_path, real_arrays["x_test"][:500, ..., None])
    assert damage > 1e-2, "the negative control: ORT's default optimizer really changes this file's answers"

    result = verify(VerifyOptions(manifest=manifest_path)).results[0]
    assert result.status.value == "FAIL"
    reason = next(failure for failure in result.failures if failure.check == "runtime_optimizer").value
    assert "right with ONNX Runtime's graph optimizations off" in reason and "Pad_Fusion" in reason, reason
    assert result.optimizer is not None and result.optimizer.passes == ("Pad_Fusion",) and result.optimizer.reproduction
    reproduction = onnx.load(folder / result.optimizer.reproduction)
    assert [node.op_type for node in reproduction.graph.node] == ["Pad", "MaxPool"]
    with np.load(folder / result.optimizer.reproduction.replace(".onnx", ".npz")) as feeds:
        assert set(feeds.files) == {value.name for value in reproduction.graph.input}


def test_captured_constants_are_frozen_into_the_graph_never_inputs(small_npz, tmp_path):
    """Keras 3's Normalization built with a mean and variance (EfficientNet's) captures them as tensors: tf2onnx's
    from_function made them graph inputs, and the file asked apps for them."""
    import keras

    model = keras_model([keras.layers.Normalization(mean=0.3, variance=0.09), keras.layers.Conv2D(4, 3, activation="relu")])
    path = saved(model, tmp_path / "normalized.keras")
    manifest_path = export(ExportOptions(model=path, data=str(small_npz), format=FormatChoice.ONNX, out=tmp_path / "out")).manifest_path
    import onnx

    graph = onnx.load(load_manifest(manifest_path).resolve("normalized.onnx")).graph
    initialized = {tensor.name for tensor in graph.initializer}
    assert [value.name for value in graph.input if value.name not in initialized] == ["image"]
    assert verify(VerifyOptions(manifest=manifest_path)).passed


def test_a_grouped_convolution_and_the_exact_gelu_convert(small_npz, tmp_path, real_arrays):
    """ConvNeXt's depthwise convolution is a grouped Conv2D, which Keras 3 runs in an XLA-compiled function that tf2onnx
    left as a StatefulPartitionedCall; its GELU uses TensorFlow's Erfc, which tf2onnx has no handler for."""
    import keras

    model = keras_model([keras.layers.Conv2D(8, 3), keras.layers.Conv2D(8, 5, groups=8, padding="same"), keras.layers.Activation("gelu")])
    path = saved(model, tmp_path / "grouped.keras")
    manifest_path = export(ExportOptions(model=path, data=str(small_npz), format=FormatChoice.ONNX, out=tmp_path / "out")).manifest_path
    assert ort_default_max_abs_diff(manifest_path, real_arrays["x_test"][:200, ..., None]) <= 1e-4
    assert verify(VerifyOptions(manifest=manifest_path)).passed


def test_a_clean_up_that_raises_is_skipped_and_recorded(small_npz, tmp_path, monkeypatch):
    import keras
    import onnxslim

    def broken(model):
        raise UnicodeDecodeError("utf-8", b"\x82", 0, 1, "invalid start byte")

    monkeypatch.setattr(onnxslim, "slim", broken)
    path = saved(keras_model([keras.layers.Conv2D(4, 3, activation="relu")]), tmp_path / "plain.keras")
    manifest_path = export(ExportOptions(model=path, data=str(small_npz), format=FormatChoice.ONNX, out=tmp_path / "out")).manifest_path
    cleanup = load_manifest(manifest_path).artifact("onnx-fp32").details.graph_cleanup
    assert cleanup is not None and not cleanup.applied and "onnxslim raised UnicodeDecodeError" in cleanup.reason
    assert verify(VerifyOptions(manifest=manifest_path)).passed


def test_a_refused_format_costs_only_its_own_files(small_npz, tmp_path, monkeypatch):
    """The TFLite converter refusing an op: the ONNX files are published, the TFLite rows are failed rows with the
    converter's line (its op and where), an earlier manifest row of that name is gone, and verify judges the rest."""
    import keras

    from edgecnn.stages.export.inputs import converter_for

    path = saved(keras_model([keras.layers.Conv2D(4, 3, activation="relu")]), tmp_path / "model.keras")
    out = tmp_path / "out"
    export(ExportOptions(model=path, data=str(small_npz), format=FormatChoice.TFLITE, out=out))
    assert (out / "model_fp32.tflite").is_file()

    def refuses(spec, inputs, base):
        raise RuntimeError('loc(fused["Conv2D:", "model/conv2d/Conv2D@__inference_serve_12"]): error: \'tf.Conv2D\' op is neither '
                           'a custom op nor a flex op\n<unknown>:0: note: see current operation')

    monkeypatch.setattr(converter_for(ArtifactFormat.TFLITE), "convert", refuses)
    result = export(ExportOptions(model=path, data=str(small_npz), out=out))
    assert {entry.name for entry in result.artifacts} == {"onnx-fp32", "onnx-fp32-uint8-input", "onnx-fp16", "onnx-int8"}
    manifest = load_manifest(result.manifest_path)
    failed = {row.name: row.reason for row in manifest.failed}
    assert set(failed) == {"tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8"}
    assert failed["tflite-fp32"] == "tflite export of tflite-fp32 refused the model: 'tf.Conv2D' op is neither a custom op nor a flex op (at model/conv2d/Conv2D)"
    assert not (out / "model_fp32.tflite").exists(), "the row the export could not make again is removed, not left stale"
    assert verify(VerifyOptions(manifest=result.manifest_path, artifacts=("onnx-fp32", "onnx-fp16"))).passed


def test_h5_files_load_in_safe_mode(small_npz, tmp_path):
    import keras

    plain = saved(keras_model([keras.layers.Conv2D(4, 3, activation="relu")]), tmp_path / "legacy.h5")
    run = run_cli("export", "--model", str(plain), "--data", str(small_npz), "--format", "onnx", "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert load_manifest(tmp_path / "out" / "manifest.json").artifact("onnx-fp32").path == "legacy.onnx"

    unsafe = saved(keras_model([keras.layers.Lambda(lambda x: x * 2)]), tmp_path / "lambda.h5")
    refused = run_cli("export", "--model", str(unsafe), "--data", str(small_npz), "--out", str(tmp_path / "refused"))
    assert_one_line_error(refused, "Lambda", "lambda.h5")
    assert not (tmp_path / "refused" / "manifest.json").exists()

    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5")
    assert_one_line_error(run_cli("export", "--model", str(fake), "--data", str(small_npz), "--out", str(tmp_path / "fake")), "HDF5", "fake.h5")


def test_a_model_built_for_any_size_takes_it_from_image_size_or_the_data(small_npz, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    path = saved(keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)), tmp_path / "anysize.keras")

    sized = run_cli("export", "--model", str(path), "--data", str(small_npz), "--image-size", "24x20", "--color", "rgb",
                    "--out", str(tmp_path / "sized"))
    assert sized.returncode == 0, sized.stderr
    assert "takes any image size; exporting it for 24x20, from --image-size" in sized.stderr
    manifest = load_manifest(tmp_path / "sized" / "manifest.json")
    assert manifest.model.description.image_shape == (24, 20, 3)
    assert {entry.input.shape[1:3] for entry in manifest.artifacts} == {(24, 20)}, "every file, TFLite too, takes the fixed size"
    assert verify(VerifyOptions(manifest=tmp_path / "sized" / "manifest.json", artifacts=("onnx-fp32", "tflite-fp32"))).passed

    from_data = run_cli("export", "--model", str(path), "--data", str(small_npz), "--color", "rgb", "--format", "onnx", "--out", str(tmp_path / "data"))
    assert from_data.returncode == 0, from_data.stderr
    assert "exporting it for 28x28, the data's size" in from_data.stderr


def test_reshapes_to_the_shape_a_tensor_already_has_are_removed_and_others_kept():
    """tf2onnx's Reshape to [-1, C, 1, 1] of a 1x1 feature map (MobileNetV2's last blocks at 32x32) is removed, its
    reader reading its input; a flatten and a Reshape that gives the graph's output stay; the answers are the same."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.core.onnx_graph import identity_reshapes_removed

    shapes = [numpy_helper.from_array(np.array(shape, np.int64), name)
              for name, shape in (("same", [-1, 4, 1, 1]), ("flat", [-1, 4]), ("same_again", [0, 4]))]
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "same"], ["same_out"], name="identity"),
         helper.make_node("Relu", ["same_out"], ["relu_out"], name="relu"),
         helper.make_node("Reshape", ["relu_out", "flat"], ["flat_out"], name="flatten"),
         helper.make_node("Reshape", ["flat_out", "same_again"], ["y"], name="gives_the_output")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], shapes)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    original = model.SerializeToString()
    rewritten, removed = identity_reshapes_removed(model)
    onnx.checker.check_model(rewritten, full_check=True)
    assert removed == ["identity"] and [node.name for node in rewritten.graph.node] == ["relu", "flatten", "gives_the_output"]
    assert rewritten.graph.node[0].input[0] == "x" and "same" not in {tensor.name for tensor in rewritten.graph.initializer}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    feed = {"x": np.random.default_rng(0).standard_normal((3, 4, 1, 1)).astype(np.float32)}
    before, after = (ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"]).run(None, feed)[0]
                     for proto in (original, rewritten.SerializeToString()))
    assert np.array_equal(before, after)
