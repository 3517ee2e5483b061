"""Quantization choices: calibration method, weight granularity and Keras layers kept in float, for both formats,
recorded in the manifest and in each file; bad choices are one-line errors naming the option."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import assert_one_line_error, run_cli

from edgecnn.core.manifest import load_manifest
from edgecnn.core.records import encode
from edgecnn.core.tflite_metadata import METADATA_NAME, read
from edgecnn.runners import OnnxRunner


@pytest.fixture(scope="module")
def kept_float(trained_model, tmp_path_factory):
    """int8 files of the seed CNN with conv2 and dense kept in float, entropy calibration, per-tensor ONNX weights."""
    out = tmp_path_factory.mktemp("kept-float")
    for name in (trained_model.name, "train.json"):
        shutil.copy(trained_model.parent / name, out / name)
    run = run_cli("export", "--out", str(out), "--quantize", "int8", "--keep-float", "conv2", "--keep-float", "dense",
                  "--calibration-method", "entropy", "--per-tensor")
    assert run.returncode == 0, run.stderr
    return load_manifest(out / "manifest.json")


def test_choices_are_recorded_in_the_manifest_and_in_each_file(kept_float):
    import onnx

    onnx_entry, tflite_entry = kept_float.artifact("onnx-int8"), kept_float.artifact("tflite-int8")
    recorded = onnx_entry.details.quantization
    assert recorded is not None and recorded.calibration_method == "entropy" and recorded.weights == "int8 per-tensor"
    assert recorded.kept_float_layers == ("conv2", "dense") and recorded.kept_float_nodes
    in_file = {prop.key: prop.value for prop in onnx.load(kept_float.resolve(onnx_entry.path)).metadata_props}
    assert json.loads(in_file["quantization"]) == encode(recorded)
    tflite_recorded = tflite_entry.details.quantization
    assert tflite_recorded is not None and tflite_recorded.kept_float_layers == ("conv2", "dense") and "no choice" in tflite_recorded.calibration_method
    assert tflite_recorded.kept_float_nodes  # the operators the debugger kept float
    embedded = read(kept_float.resolve(tflite_entry.path).read_bytes())[METADATA_NAME]
    assert json.loads(embedded["quantization"]) == encode(tflite_recorded)


def test_kept_layers_compute_in_float_and_the_rest_in_int8(kept_float):
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    graph = onnx.load(kept_float.resolve(kept_float.artifact("onnx-int8").path)).graph
    quantized_inputs = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convs = {node.name: node for node in graph.node if node.op_type == "Conv"}
    conv1 = next(node for name, node in convs.items() if "conv1" in name)
    conv2 = next(node for name, node in convs.items() if "conv2" in name)
    assert conv1.input[1] in quantized_inputs, "conv1's weights should be int8 (only the named layers stay float)"
    assert conv2.input[1] not in quantized_inputs, "conv2 was named with --keep-float: its weights stay float"
    interpreter = Interpreter(model_path=str(kept_float.resolve(kept_float.artifact("tflite-int8").path)))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"].__name__ == "int8" and interpreter.get_output_details()[0]["dtype"].__name__ == "int8"
    dtypes = {detail["name"].split(";")[0]: detail["dtype"].__name__ for detail in interpreter.get_tensor_details()}
    assert dtypes["mnist_cnn_1/conv2_1/Relu"] == "float32" and dtypes["mnist_cnn_1/dense_1/Relu"] == "float32"
    assert "int8" in {dtype for name, dtype in dtypes.items() if name.startswith("mnist_cnn_1/conv1_1/")}


def test_kept_float_files_pass_verify(kept_float):
    run = run_cli("verify", "--manifest", str(kept_float.path), "--json")
    assert run.returncode == 0, run.stdout[-2000:]


@pytest.fixture(scope="module")
def kept_int16(trained_model, tmp_path_factory):
    """int8 files of the seed CNN with conv2 and dense in 16-bit activations, and the plain int8 files beside them."""
    folders = {}
    for variant, extra in (("plain", ()), ("int16", ("--keep-int16", "conv2", "--keep-int16", "dense"))):
        out = folders[variant] = tmp_path_factory.mktemp(f"int8-{variant}")
        for name in (trained_model.name, "train.json"):
            shutil.copy(trained_model.parent / name, out / name)
        run = run_cli("export", "--out", str(out), "--quantize", "int8", *extra)
        assert run.returncode == 0, run.stderr
    return {variant: load_manifest(folder / "manifest.json") for variant, folder in folders.items()}


def test_16_bit_layers_are_a16w8_in_onnx_and_the_whole_file_16x8_in_tflite(kept_int16):
    """ONNX: the named layers' activations are uint16 (opset 21), their weights and every other layer stay 8-bit, and
    the record says so; TFLite: the whole file takes, computes and gives int16 with int8 weights."""
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    manifest = kept_int16["int16"]
    entry = manifest.artifact("onnx-int8")
    model = onnx.load(manifest.resolve(entry.path))
    assert entry.details.opset == 21 and next(item.version for item in model.opset_import if item.domain == "") == 21
    initializers = {item.name: item for item in model.graph.initializer}
    zero_point_type = {node.output[0]: initializers[node.input[2]].data_type for node in model.graph.node if node.op_type == "QuantizeLinear"}
    convs = {node.name: node for node in model.graph.node if node.op_type == "Conv"}
    producers = {output: node for node in model.graph.node for output in node.output}
    conv2 = next(node for name, node in convs.items() if "conv2" in name)
    assert zero_point_type[producers[conv2.input[0]].input[0]] == onnx.TensorProto.UINT16, "conv2 reads 16-bit activations"
    assert initializers[producers[conv2.input[1]].input[2]].data_type == onnx.TensorProto.INT8, "and int8 weights"
    assert {onnx.TensorProto.UINT8, onnx.TensorProto.UINT16} <= set(zero_point_type.values())  # the rest stays 8-bit
    record = entry.details.quantization
    assert record is not None and record.int16_layers == ("conv2", "dense") and record.kept_float_layers == ("conv1",)
    assert entry.details.weights is not None and entry.details.weights.eight_bit_share > 0.99
    assert json.loads(OnnxRunner(manifest.resolve(entry.path)).embedded_metadata()["quantization"]) == encode(record)
    interpreter = Interpreter(model_path=str(manifest.resolve(manifest.artifact("tflite-int8").path)))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"].__name__ == "int16" and interpreter.get_output_details()[0]["dtype"].__name__ == "int16"
    tensor_types = {detail["dtype"].__name__ for detail in interpreter.get_tensor_details()}
    assert "int8" in tensor_types and "uint8" not in tensor_types  # int8 weights, int16 activations


def test_16_bit_activations_follow_keras_more_closely_than_8_bit_and_pass_verify(kept_int16):
    """The tier is worth trying: on the test images both 16-bit files' probabilities are closer to Keras' than the
    plain int8 files' (mean |Δp|), and they pass verify."""
    reports = {}
    for variant, manifest in kept_int16.items():
        run = run_cli("verify", "--manifest", str(manifest.path), "--json")
        assert run.returncode == 0, run.stdout[-2000:]
        reports[variant] = {row["name"]: row for row in json.loads(run.stdout)["artifacts"]}
    for name in ("onnx-int8", "tflite-int8"):
        assert reports["int16"][name]["status"] == "PASS"
        assert reports["int16"][name]["mean_abs_diff"] < reports["plain"][name]["mean_abs_diff"], name


def test_per_call_ranges_quantize_dense_inputs_on_each_call_with_int8_weights(trained_model, tmp_path):
    """--keep-dynamic: the named Dense layers read their input through ONNX Runtime's dynamic quantization (its range
    measured on each call, int8 weights in the file), the other layers stay static QDQ, the record and the file say so,
    nearly every weight is 8-bit, and the file passes verify."""
    import onnx

    manifest, entry = per_call_export(trained_model, tmp_path, "onnx")
    model = onnx.load(manifest.resolve(entry.path))
    initializers = {item.name: item for item in model.graph.initializer}
    products = [node for node in model.graph.node if node.op_type == "MatMulInteger"]
    assert len(products) == 2 and all(initializers[node.input[1]].data_type == onnx.TensorProto.INT8 for node in products)
    assert sum(node.op_type == "DynamicQuantizeLinear" for node in model.graph.node) == 2
    assert not any(node.op_type in ("Gemm", "MatMul") for node in model.graph.node), "no matrix product is left in float"
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node), "the convolutions stay static int8"
    record = entry.details.quantization
    assert record is not None and record.dynamic_layers == ("dense", "probabilities") and "per call" in record.activations
    assert json.loads(OnnxRunner(manifest.resolve(entry.path)).embedded_metadata()["quantization"]) == encode(record)
    assert_mostly_8_bit_and_passes_verify(manifest, entry)


def per_call_export(trained_model, out, file_format: str):
    """The seed CNN's int8 file of the format with its two Dense layers given per-call ranges (--keep-dynamic), and its
    manifest."""
    for name in (trained_model.name, "train.json"):
        shutil.copy(trained_model.parent / name, out / name)
    run = run_cli("export", "--out", str(out), "--format", file_format, "--quantize", "int8", "--keep-dynamic", "dense",
                  "--keep-dynamic", "probabilities")
    assert run.returncode == 0, run.stderr
    manifest = load_manifest(out / "manifest.json")
    return manifest, manifest.artifact(f"{file_format}-int8")


def assert_mostly_8_bit_and_passes_verify(manifest, entry) -> None:
    assert entry.details.weights is not None and entry.details.weights.eight_bit_share > 0.99
    verified = run_cli("verify", "--manifest", str(manifest.path), "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["artifacts"][0]["status"] == "PASS", verified.stdout[-2000:]


def test_per_call_ranges_in_tflite_give_dense_layers_int8_weights_in_litert_hybrid_kernels(trained_model, tmp_path):
    """--keep-dynamic in a TFLite int8 file: the named Dense layers' FULLY_CONNECTED operators take float input with
    int8 per-channel weights (LiteRT's hybrid kernels, which quantize the input on each call), the convolutions stay
    integer, the record and the file say so, nearly every weight is 8-bit, and the file passes verify."""
    from ai_edge_litert import schema_py_generated as schema

    from edgecnn.core.tflite_graph import operator_kind

    manifest, entry = per_call_export(trained_model, tmp_path, "tflite")
    flatbuffer = manifest.resolve(entry.path).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    graph = model.subgraphs[0]

    def operators(kind: int) -> list:
        return [op for op in graph.operators if operator_kind(model, op) == kind]

    products = operators(schema.BuiltinOperator.FULLY_CONNECTED)
    assert len(products) == 2
    for op in products:
        image, weights = (graph.tensors[index] for index in op.inputs[:2])
        assert image.type == schema.TensorType.FLOAT32 and weights.type == schema.TensorType.INT8
        assert len(weights.quantization.scale) == weights.shape[0] and not any(weights.quantization.zeroPoint)
    assert all(graph.tensors[op.inputs[0]].type == schema.TensorType.INT8 for op in operators(schema.BuiltinOperator.CONV_2D)), "convolutions stay int8"
    record = entry.details.quantization
    assert record is not None and record.dynamic_layers == ("dense", "probabilities") and not record.kept_float_layers
    assert "per call" in record.activations and json.loads(read(flatbuffer)[METADATA_NAME]["quantization"]) == encode(record)
    assert_mostly_8_bit_and_passes_verify(manifest, entry)


def test_tflite_matrix_products_with_int8_weights_compute_about_the_same_in_hybrid_kernels():
    """A Dense layer and 1x1 convolutions (over a 5x5 map and over a 1x1 map) are matrix products in a TFLite file; a 3x3
    convolution and a grouped 1x1 one are not. With int8 weights LiteRT runs the products as hybrid kernels whose outputs
    stay within 1% of the float file's, and the file sheds most of their weights' bytes."""
    import keras
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.core.backend import import_tensorflow
    from edgecnn.core.layers import LayerMap
    from edgecnn.core.tflite_graph import matrix_products, with_per_call_ranges
    from edgecnn.core.tflite_metadata import op_output_names

    tf = import_tensorflow()
    keras.utils.set_random_seed(0)
    image = keras.Input((5, 5, 2))
    mapped = keras.layers.Conv2D(8, 1, name="map")(image)
    grouped = keras.layers.Conv2D(8, 1, groups=4, name="grouped")(mapped)
    widened = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="wide")(grouped)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(widened)
    head = keras.layers.Conv2D(256, 1, name="head")(pooled)
    model = keras.Model(image, keras.layers.Dense(3, activation="softmax", name="fc")(keras.layers.Flatten(name="flatten")(head)))
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    found = matrix_products(flatbuffer)
    layer_map = LayerMap.build(op_output_names(flatbuffer), [layer.name for layer in model.layers[1:]])
    assert [layer_map.layer_of(name) for name in found] == ["map", "head", "fc"]
    hybrid = with_per_call_ranges(flatbuffer, found)
    images = np.random.default_rng(0).normal(size=(16, 1, 5, 5, 2)).astype(np.float32)

    def outputs(file: bytes) -> np.ndarray:
        interpreter = Interpreter(model_content=file)
        interpreter.allocate_tensors()
        given, wanted = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        rows = []
        for one in images:
            interpreter.set_tensor(given, one)
            interpreter.invoke()
            rows.append(interpreter.get_tensor(wanted)[0].copy())
        return np.array(rows)

    expected, computed = outputs(flatbuffer), outputs(hybrid)
    assert np.abs(computed - expected).max() < 0.01 * np.abs(expected).max()
    float_bytes = 4 * (2 * 8 + 256 * 32 + 3 * 256)
    assert len(flatbuffer) - len(hybrid) > 0.5 * float_bytes


def test_int8_operators_xnnpack_lacks_are_written_as_ones_it_runs_and_compute_about_the_same(real_arrays, small_npz, tmp_path):
    """LiteRT's XNNPACK delegate has no int8 HARD_SWISH (MobileNetV3's activation) and no int8 RELU on its own (one the
    converter cannot fuse, as where a branch also reads the tensor before it): the converter's own file runs in one
    partition per stretch between them (the negative control). Written as ADD and MULs, those splits are gone; every
    rewritten output is within one output step of the exact activation of its own int8 input, as LiteRT's kernels are,
    on real digits, and the probabilities within 0.02; a float file comes back as it was. `export` does it to every
    int8 file and records which."""
    import collections

    import keras
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.core.backend import import_tensorflow
    from edgecnn.core.manifest import load_manifest
    from edgecnn.core.tflite_graph import delegable_int8, operator_kind
    from edgecnn.stages.export import ExportOptions, FormatChoice, Quantize, export

    tf = import_tensorflow()
    keras.utils.set_random_seed(0)
    image = keras.Input((28, 28, 1))
    swished = keras.layers.Activation("hard_swish", name="swish_1")(keras.layers.Conv2D(8, 3, strides=2, name="conv_1")(image))
    swished = keras.layers.Activation("hard_swish", name="swish_2")(keras.layers.Conv2D(16, 3, strides=2, name="conv_2")(swished))
    branch = keras.layers.Conv2D(16, 1, name="conv_3")(swished)
    mixed = keras.layers.Add(name="mix")([branch, keras.layers.Conv2D(16, 1, name="conv_4")(keras.layers.ReLU(name="relu")(branch))])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(mixed)
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax", name="fc")(pooled))
    digits = real_arrays["x_test"][:64, :, :, None].astype(np.float32) / 255.0
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([digits[index : index + 1]] for index in range(32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    original = converter.convert()
    rewritten, names = delegable_int8(original)
    exact = {schema.BuiltinOperator.HARD_SWISH: lambda x: x * np.clip(x + 3, 0, 6) / 6, schema.BuiltinOperator.RELU: lambda x: np.maximum(x, 0)}

    def lacking(file: bytes) -> dict[str, tuple[int, str]]:
        """The operators XNNPACK lacks, by output tensor: their kind and input tensor."""
        model_t = schema.ModelT.InitFromPackedBuf(file, 0)
        graph = model_t.subgraphs[0]
        return {graph.tensors[op.outputs[0]].name.decode(): (operator_kind(model_t, op), graph.tensors[op.inputs[0]].name.decode())
                for op in graph.operators if operator_kind(model_t, op) in exact}

    operators = lacking(original)
    assert sorted(kind for kind, _ in operators.values()) == sorted([schema.BuiltinOperator.HARD_SWISH] * 2 + [schema.BuiltinOperator.RELU])
    assert sorted(operators) == sorted(names) and not lacking(rewritten)

    def run(file: bytes) -> tuple[int, list[np.ndarray], np.ndarray]:
        """XNNPACK partitions; each operator's distance, in output steps, from the exact activation of its own int8
        input; the probabilities."""
        delegated = Interpreter(model_content=file, num_threads=1)  # keeping every tensor would split the partitions
        delegated.allocate_tensors()
        partitions = collections.Counter(op["op_name"] for op in delegated._get_ops_details())["DELEGATE"]
        interpreter = Interpreter(model_content=file, num_threads=1, experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        details = {detail["name"]: detail for detail in interpreter.get_tensor_details()}
        distances: list[list[np.ndarray]] = [[] for _ in names]
        probabilities = []
        for one in digits:
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], one[None])
            interpreter.invoke()
            probabilities.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy())
            for rows, name in zip(distances, names, strict=True):
                kind, source = operators[name]
                (in_scale, in_zero), (out_scale, out_zero) = details[source]["quantization"], details[name]["quantization"]
                x = (interpreter.get_tensor(details[source]["index"]).astype(np.float32) - in_zero) * in_scale
                wanted = np.clip(np.round(exact[kind](x) / out_scale) + out_zero, -128, 127)
                rows.append(np.abs(interpreter.get_tensor(details[name]["index"]) - wanted))
        return partitions, [np.array(rows) for rows in distances], np.array(probabilities)

    partitions_before, own_kernels, expected = run(original)
    partitions_after, rewritten_ops, computed = run(rewritten)
    assert partitions_before - partitions_after == len(names), "each operator XNNPACK lacks splits its graph; the rewritten ones do not"
    assert max(distance.max() for distance in own_kernels + rewritten_ops) <= 1, "LiteRT's kernels and the rewrite: within one step of exact"
    assert all(distance.mean() < 0.1 for distance in rewritten_ops)
    assert np.abs(computed - expected).max() < 0.02 and np.mean(computed.argmax(1) == expected.argmax(1)) >= 0.95
    plain = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert delegable_int8(plain) == (plain, []), "float HARD_SWISH and RELU run in XNNPACK: untouched"
    model.save(tmp_path / "lacking.keras")
    exported = export(ExportOptions(model=tmp_path / "lacking.keras", data=str(small_npz), format=FormatChoice.TFLITE, quantize=Quantize.INT8,
                                    out=tmp_path / "out"))
    entry = load_manifest(exported.manifest_path).artifact("tflite-int8")
    assert len(entry.details.rewritten_for_xnnpack) == 3 and not lacking((tmp_path / "out" / entry.path).read_bytes())


def test_matrix_products_are_rewritten_as_matmuls_that_compute_the_same(tmp_path):
    """Pointwise convolutions (over a 5x5 map, and over the pooled 1x1 map as MobileNetV3's head) and a Gemm with
    transposed weights are matrix products, and their MatMul form gives the same outputs under the same names; a 1x1
    convolution with stride 2 and a 3x3 one are not, and stay as they are."""
    import numpy as np
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    from edgecnn.core.onnx_graph import as_matmuls, matrix_products
    from edgecnn.stages.export import ExportOptions, FormatChoice, Quantize
    from edgecnn.stages.export.onnx import with_per_call_ranges

    rng = np.random.default_rng(0)
    weights = {"head_w": rng.normal(size=(6, 4, 1, 1)), "head_b": rng.normal(size=6), "fc_w": rng.normal(size=(3, 6)), "fc_b": rng.normal(size=3),
               "map_w": rng.normal(size=(4, 2, 1, 1)), "map_b": rng.normal(size=4), "strided_w": rng.normal(size=(4, 4, 1, 1)),
               "wide_w": rng.normal(size=(4, 4, 3, 3))}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "map_w", "map_b"], ["mapped"], name="model/map/conv"),
         helper.make_node("Conv", ["mapped", "strided_w"], ["strided"], name="model/strided/conv", strides=[2, 2]),
         helper.make_node("Conv", ["strided", "wide_w"], ["widened"], name="model/wide/conv", pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["widened"], ["pooled"], name="model/pool"),
         helper.make_node("Conv", ["pooled", "head_w", "head_b"], ["head"], name="model/head/conv"),
         helper.make_node("Flatten", ["head"], ["flat"], name="model/flatten"),
         helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="model/fc/gemm", transB=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 5, 5])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()])
    model = shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    images = rng.normal(size=(4, 2, 5, 5)).astype(np.float32)

    def outputs(proto):
        return onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": images})[0]

    expected = outputs(model)
    found = matrix_products(model)
    assert found == ["model/map/conv", "model/head/conv", "model/fc/gemm"]
    added, matmuls = as_matmuls(model, found)
    assert matmuls == ["model/map/conv/MatMul", "model/head/conv/MatMul", "model/fc/gemm/MatMul"] and set(matmuls) <= set(added)
    assert [node.op_type for node in model.graph.node] == ["Transpose", "MatMul", "Add", "Transpose", "Conv", "Conv", "GlobalAveragePool",
                                                           "Transpose", "MatMul", "Add", "Transpose", "Flatten", "MatMul", "Add"]
    assert np.allclose(outputs(model), expected, atol=1e-5)
    # and ONNX Runtime's dynamic quantizer takes each of them, the convolution over a 5x5 map as a 4-D MatMul
    staged = tmp_path / "matmuls.onnx"
    onnx.save(model, staged)
    dynamic = with_per_call_ranges(staged, matmuls, ExportOptions(format=FormatChoice.ONNX, quantize=Quantize.INT8, reduce_range=False))
    kinds = [node.op_type for node in dynamic.graph.node]
    assert kinds.count("MatMulInteger") == 3 and "MatMul" not in kinds and kinds.count("Conv") == 2
    relative = np.abs(outputs(dynamic) - expected).max() / np.abs(expected).max()
    assert 1e-6 < relative < 0.05, relative  # int8 weights and per-call ranges: close to float, not equal to it


def test_reduce_range_keeps_weights_in_7_bits_where_the_integer_kernels_compute_what_the_file_says(trained_model, small_npz, tmp_path):
    """--reduce-range: every int8 weight lies in [-64, 64] (ONNX Runtime's 7-bit range), the record and the file say so,
    and the file passes verify. Its point: ONNX Runtime's integer kernels (the default session) give what the QDQ file
    means (every optimization off: each node dequantized and computed in float) up to rounding, on any x86 CPU, while a
    file with 8-bit weights may differ by a saturated sum on one without VNNI (`edgecnn doctor`)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from edgecnn.core.artifact import INPUT_NAME
    from edgecnn.core.data import load_dataset

    for name in (trained_model.name, "train.json"):
        shutil.copy(trained_model.parent / name, tmp_path / name)
    run = run_cli("export", "--out", str(tmp_path), "--format", "onnx", "--quantize", "int8", "--reduce-range")
    assert run.returncode == 0, run.stderr
    manifest = load_manifest(tmp_path / "manifest.json")
    entry = manifest.artifact("onnx-int8")
    path = manifest.resolve(entry.path)
    record = entry.details.quantization
    assert record is not None and record.reduce_range
    assert json.loads(OnnxRunner(path).embedded_metadata()["quantization"]) == encode(record)
    model = onnx.load(path)
    initializers = {item.name: item for item in model.graph.initializer}
    weights = [numpy_helper.to_array(initializers[node.input[0]]) for node in model.graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] in initializers and initializers[node.input[0]].data_type == onnx.TensorProto.INT8]
    assert weights and all(int(np.abs(weight.astype(np.int32)).max()) <= 64 for weight in weights)
    assert max(int(np.abs(weight.astype(np.int32)).max()) for weight in weights) == 64  # the range is used, not shrunk further

    images = manifest.source_model().description.model_input(load_dataset(str(small_npz)).x_test[:500])
    unoptimized = ort.SessionOptions()
    unoptimized.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    integer, in_float = (ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: images})[0]
                         for options in (ort.SessionOptions(), unoptimized))
    assert np.abs(integer - in_float).max() < 0.05 and (integer.argmax(1) == in_float.argmax(1)).mean() >= 0.998
    verified = run_cli("verify", "--manifest", str(manifest.path), "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["artifacts"][-1]["status"] == "PASS", verified.stdout[-2000:]


@pytest.mark.parametrize(("given", "instructions", "seven_bit", "reason"), [
    (None, "avx2", True, "without VNNI"), (None, "vnni", False, "with VNNI"), (None, "", False, "not x86"),
    (True, "vnni", True, "--reduce-range"), (False, "avx2", False, "--no-reduce-range"),
])
def test_weights_take_7_bits_by_default_only_where_the_cpu_lacks_vnni(monkeypatch, given, instructions, seven_bit, reason):
    from edgecnn.core import provenance
    from edgecnn.stages.export import ExportOptions
    from edgecnn.stages.export.onnx import weight_range

    monkeypatch.setattr(provenance, "int8_dot_product", lambda: provenance.Int8Sums(instructions))
    chosen, why = weight_range(ExportOptions(reduce_range=given))
    assert chosen is seven_bit and reason in why


def test_the_default_keeps_the_first_convolution_in_onnx_only(exported):
    manifest = load_manifest(exported)
    assert manifest.artifact("onnx-int8").details.quantization.kept_float_layers == ("conv1",)
    assert manifest.artifact("tflite-int8").details.quantization.kept_float_layers == ()
    assert OnnxRunner(manifest.resolve(manifest.artifact("onnx-int8").path)).embedded_metadata()["quantization"]


@pytest.mark.parametrize(("args", "fragments"), [
    (("--quantize", "int8", "--keep-float", "no_such_layer"), ("no layer named 'no_such_layer'", "conv1", "--keep-float")),
    (("--quantize", "int8", "--keep-float", "conv_dropout"), ("'conv_dropout' has no node of its own", "--keep-float")),
    (("--format", "tflite", "--quantize", "int8", "--calibration-method", "entropy"), ("no calibration method choice", "--calibration-method")),
    (("--format", "tflite", "--quantize", "int8", "--per-tensor"), ("ONNX int8 files only", "--per-tensor")),
    (("--format", "onnx", "--keep-float", "conv2"), ("none is being exported", "--keep-float")),
    (("--format", "tflite", "--quantize", "int8", "--quantizer", "nncf"), ("ONNX int8 files only", "--quantizer")),
    (("--format", "onnx", "--quantize", "int8", "--quantizer", "nncf", "--per-tensor"), ("NNCF sets its own ranges", "--quantizer")),
    (("--format", "tflite", "--quantize", "int8", "--reduce-range"), ("--quantizer onnxruntime only", "--reduce-range")),
    (("--format", "onnx", "--quantize", "int8", "--quantizer", "nncf", "--reduce-range"), ("--quantizer onnxruntime only", "--reduce-range")),
    (("--format", "onnx", "--keep-int16", "conv2"), ("none is being exported", "--keep-int16")),
    (("--quantize", "int8", "--keep-int16", "no_such_layer"), ("no layer named 'no_such_layer'", "--keep-int16")),
    (("--format", "onnx", "--quantize", "int8", "--keep-int16", "conv2", "--keep-float", "conv2"), ("a layer has one tier", "--keep-int16")),
    (("--format", "onnx", "--quantize", "int8", "--keep-int16", "conv2", "--quantizer", "nncf"), ("NNCF places 8-bit", "--keep-int16")),
    (("--format", "tflite", "--quantize", "int8", "--keep-int16", "conv2", "--keep-float", "dense"), ("the whole file 16-bit", "--keep-int16")),
    (("--format", "onnx", "--keep-dynamic", "dense"), ("none is being exported", "--keep-dynamic")),
    (("--format", "tflite", "--quantize", "int8", "--keep-dynamic", "dense", "--keep-int16", "conv2"), ("the whole file 16-bit", "--keep-dynamic")),
    (("--format", "tflite", "--quantize", "int8", "--keep-dynamic", "conv2"), ("'conv2' has no matrix product", "--keep-dynamic")),
    (("--format", "onnx", "--quantize", "int8", "--keep-dynamic", "dense", "--keep-int16", "dense"), ("a layer has one tier", "--keep-dynamic")),
    (("--format", "onnx", "--quantize", "int8", "--keep-dynamic", "dense", "--quantizer", "nncf"), ("--quantizer onnxruntime", "--keep-dynamic")),
    (("--format", "onnx", "--quantize", "int8", "--keep-dynamic", "conv2"), ("'conv2' has no matrix product", "--keep-dynamic")),
])
def test_bad_quantization_choices_are_one_line_errors(trained_model, tmp_path, args, fragments):
    for name in (trained_model.name, "train.json"):
        shutil.copy(trained_model.parent / name, tmp_path / name)
    run = run_cli("export", "--out", str(tmp_path), *args)
    assert_one_line_error(run, *fragments)
    assert not (tmp_path / "manifest.json").exists()


def test_the_search_judges_on_training_images_only_never_test_or_calibration(trained_model, small_npz, tmp_path, monkeypatch):
    """Every image the search evaluates is a training image, none is a test image, none was used for calibration;
    and a candidate that misses makes it keep the most sensitive layers in float, step by step, with a trail."""
    import numpy as np

    from edgecnn.stages.export import ExportOptions, Quantize, export
    from edgecnn.stages.export import search as search_module

    data = np.load(small_npz)
    train_hashes = {image.tobytes() for image in data["x_train"]}
    test_hashes = {image.tobytes() for image in data["x_test"]}
    seen: dict[str, object] = {}
    evaluated = search_module.evaluated

    def spy(spec, converted, inputs, validation, *args):
        seen["validation"], seen["calibration"] = validation.images, inputs.calibration
        step, probabilities = evaluated(spec, converted, inputs, validation, *args)
        first_try = not any(key == spec.name for key in seen.get("steps", []))
        seen.setdefault("steps", []).append(spec.name)
        return (step if not first_try else search_module.replace(step, within_budget=False)), probabilities  # force one more step

    monkeypatch.setattr(search_module, "evaluated", spy)
    for name in (trained_model.name, "train.json"):
        (tmp_path / name).write_bytes((trained_model.parent / name).read_bytes())
    result = export(ExportOptions(model=tmp_path / trained_model.name, quantize=Quantize.INT8, max_drop=0.5, out=tmp_path))
    validation = {image[..., 0].tobytes() for image in seen["validation"]}  # (N, 28, 28, 1) → the npz's (N, 28, 28)
    calibration = {image[..., 0].tobytes() for image in seen["calibration"]}
    assert validation and validation <= train_hashes and not validation & test_hashes and not validation & calibration
    for name, searched in result.searches.items():
        first, second, third = searched.steps[:3]
        # a layer leaving int8 goes to the tier before float first: per run in ONNX (per-call ranges for a Dense layer,
        # 16-bit activations for the rest), the whole file in TFLite (16x8)
        lifted = set(second.int16_layers) | set(second.dynamic_layers)
        assert lifted and not first.int16_layers and not first.dynamic_layers, name
        if name.startswith("onnx"):
            assert second.kept_float_layers == first.kept_float_layers and lifted <= set(third.kept_float_layers) | set(third.dynamic_layers)
            assert set(second.dynamic_layers) <= {"dense", "probabilities"} and not set(second.int16_layers) & {"dense", "probabilities"}
        else:  # the whole file in 16x8, then the float tier, where Dense layers take per-call ranges (LiteRT's hybrid kernels)
            assert not second.kept_float_layers and not second.dynamic_layers and not third.int16_layers
            assert third.kept_float_layers or third.dynamic_layers
            assert set(third.dynamic_layers) <= {"dense", "probabilities"} and not set(third.kept_float_layers) & {"dense", "probabilities"}
        assert "held out for validation" in searched.validation
        # 200 held-out images cannot certify 99% agreement at 95% (that takes 299): the search, judged by verify's
        # criteria, never counts such a candidate as meeting the budget
        assert not searched.met and all(step.agreement_low < 0.99 for step in searched.steps), name
        entry = next(entry for entry in result.artifacts if entry.name == name)
        assert entry.details.quantization is not None and entry.details.quantization.kept_float_layers in [step.kept_float_layers for step in searched.steps]
        assert entry.details.accuracy_search == searched and entry.details.accuracy_search.steps[1].int16_layers == second.int16_layers


def test_the_search_judges_on_validation_data_when_given_and_refuses_test_images(trained_model, small_npz, real_arrays, tmp_path, monkeypatch):
    """--validation-data: the search judges on every image of it (both splits) and on nothing else, calibration avoids
    --data's training images that are among them, and the trail names the file; images from --data's test split, a
    size the model does not take, or the option without --max-drop are one-line errors naming it."""
    import numpy as np

    from edgecnn.stages.export import ExportOptions, FormatChoice, Quantize, export
    from edgecnn.stages.export import search as search_module

    unseen = real_arrays["x_train"][2000:2400], real_arrays["y_train"][2000:2400]  # past the small slice the model was fit on
    repeated = real_arrays["x_train"][:40], real_arrays["y_train"][:40]  # --data training images: calibration must avoid them
    validation_npz = tmp_path / "unseen.npz"
    np.savez(validation_npz, x_train=np.concatenate([unseen[0][:200], repeated[0]]), y_train=np.concatenate([unseen[1][:200], repeated[1]]),
             x_test=unseen[0][200:], y_test=unseen[1][200:])
    model = tmp_path / "model" / trained_model.name  # without its train.json: a user's model, whose hold-out is unknown
    model.parent.mkdir()
    shutil.copy(trained_model, model)
    seen: dict[str, object] = {}
    evaluated = search_module.evaluated

    def spy(spec, converted, inputs, validation, *args):
        seen["validation"], seen["calibration"], seen["source"] = validation.images, inputs.calibration, validation.source
        return evaluated(spec, converted, inputs, validation, *args)

    monkeypatch.setattr(search_module, "evaluated", spy)
    result = export(ExportOptions(model=model, data=str(small_npz), format=FormatChoice.ONNX, quantize=Quantize.INT8, max_drop=0.5,
                                  validation_data=str(validation_npz), out=tmp_path / "out"))
    given = {image.tobytes() for image in np.concatenate([unseen[0], repeated[0]])}
    judged = {image[..., 0].tobytes() for image in seen["validation"]}  # (N, 28, 28, 1) → the npz's (N, 28, 28)
    assert judged == given and len(seen["validation"]) == 440
    assert not {image[..., 0].tobytes() for image in seen["calibration"]} & given and len(seen["calibration"]) == 500
    assert "440 images of --validation-data" in result.searches["onnx-int8"].validation and str(validation_npz.resolve()) in seen["source"]

    peeking = tmp_path / "peeking.npz"
    np.savez(peeking, x_train=unseen[0], y_train=unseen[1], x_test=np.load(small_npz)["x_test"][:3], y_test=np.load(small_npz)["y_test"][:3])
    wide = tmp_path / "wide.npz"
    np.savez(wide, x_train=np.zeros((20, 32, 32), np.uint8), y_train=np.arange(20) % 10, x_test=np.zeros((10, 32, 32), np.uint8), y_test=np.arange(10))
    for extra, fragments in ((["--max-drop", "0.5", "--validation-data", str(peeking)], ("3 of its images are in the test split", "--validation-data")),
                             (["--max-drop", "0.5", "--validation-data", str(wide)], ("the model takes 28x28", "--validation-data")),
                             (["--validation-data", str(validation_npz)], ("add --max-drop", "--validation-data"))):
        out = tmp_path / f"refused-{len(fragments[0])}"
        run = run_cli("export", "--model", str(model), "--data", str(small_npz), "--format", "onnx", "--quantize", "int8", "--out", str(out), *extra)
        assert_one_line_error(run, *fragments)
        assert not (out / "manifest.json").exists()


def test_a_16x8_file_the_converter_refuses_is_recorded_and_the_search_goes_on_in_float(small_npz, tmp_path, monkeypatch):
    """LiteRT has no 16x8 HARD_SWISH (MobileNetV3's activation): the whole-file 16x8 candidate is refused, the trail
    says so, and the search goes on with float layers instead of failing the file."""
    import keras

    from edgecnn.stages.export import ExportOptions, FormatChoice, Quantize, export
    from edgecnn.stages.export import search as search_module

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    features = keras.layers.Activation("hard_swish")(keras.layers.Conv2D(8, 3, name="conv")(inputs))
    outputs = keras.layers.Dense(10, activation="softmax", name="dense")(keras.layers.Flatten()(features))
    path = tmp_path / "hard_swish.keras"
    keras.Model(inputs, outputs).save(path)
    evaluated = search_module.evaluated

    def first_misses(spec, converted, *args):
        step, probabilities = evaluated(spec, converted, *args)
        quantization = converted.details.quantization
        untouched = not (quantization.kept_float_layers or quantization.int16_layers or quantization.dynamic_layers)
        return (search_module.replace(step, within_budget=False) if untouched else step), probabilities

    monkeypatch.setattr(search_module, "evaluated", first_misses)
    result = export(ExportOptions(model=path, data=str(small_npz), format=FormatChoice.TFLITE, quantize=Quantize.INT8, max_drop=5.0, out=tmp_path))
    searched = result.searches["tflite-int8"]
    assert len(searched.refused) == 1 and "HARD_SWISH" in searched.refused[0] and "16-bit" in searched.refused[0]
    assert not any(step.int16_layers for step in searched.steps) and (searched.steps[1].kept_float_layers or searched.steps[1].dynamic_layers)
    assert [entry.name for entry in result.artifacts] == ["tflite-int8"] and not result.failed


@pytest.mark.parametrize(("int16_meets", "int16_p50", "winner"), [(False, 1.0, "float"), (True, 1.05, "int16"), (True, 5.0, "float")])
def test_the_bisection_finds_the_shortest_tail_in_the_tier_that_meets_the_budget(int16_meets, int16_p50, winner):
    """A model whose budget is met once its last 7 layers leave int8 (in float; in 16-bit activations too when
    `int16_meets`): the search tries each tier's whole network but its first layer, bisects in the 16-bit tier when it
    met and is not slower than float (within 10%), else in float, and writes its 7-layer candidate (tried again when
    the last try was another file)."""
    from edgecnn.stages.export.search import SearchStep, Tier, bisect_tail

    order = [f"layer{index}" for index in range(20)]
    tried_tails: list[tuple[str, int]] = []

    def tried(floats: list[str], int16: list[str] | None = None, per_call: set[str] | None = None) -> tuple[str, SearchStep]:
        lifted = [layer for layer in [*floats, *(int16 or [])] if layer != "layer3"]  # layer3: kept by the ranked steps before
        tier = "int16" if int16 else "float"
        tried_tails.append((tier, len(lifted)))
        met = all(layer in lifted for layer in order[-7:]) and (tier == "float" or int16_meets)
        step = SearchStep(tuple(floats), 0.9, 0.0, 1.0 if met else 0.9, 0.99 if met else 0.89, 1, int16_p50 if int16 else 1.0, met, tuple(int16 or ()))
        return f"{tier} file with {len(lifted)}", step

    steps: list[SearchStep] = []
    best = bisect_tail(["layer3"], order, set(), tried, steps, (Tier.INT16, Tier.FLOAT))
    assert tried_tails[:2] == [("int16", 18), ("float", 18)] and best == f"{winner} file with 7" and steps[-1].within_budget
    assert {tier for tier, _ in tried_tails[2:]} == {winner}  # the bisection stays in the tier it chose
    assert bool(steps[-1].int16_layers) == (winner == "int16") and len(steps) <= 2 + 6  # log2(18) tries, and the best again


def test_a_float_tail_keeps_per_call_ranges_only_on_the_late_matrix_products_that_still_meet_the_budget():
    """A model whose budget is met once its last 7 layers leave int8, but not with per-call ranges on its two earlier
    matrix products (over wide maps): the longest float tail with every product per call misses, the same tail with
    them all in float meets, and the search keeps per-call ranges on the three late products, in the bisection too."""
    from edgecnn.stages.export.search import SearchStep, Tier, bisect_tail

    order = [f"layer{index}" for index in range(20)]
    products = {"layer11", "layer13", "layer15", "layer17", "layer19"}

    def tried(floats: list[str], int16: list[str] | None = None, per_call: set[str] | None = None) -> tuple[str, SearchStep]:
        dynamic = sorted(set(floats) & (products if per_call is None else per_call))
        met = set(order[-7:]) <= set(floats) and not {"layer11", "layer13"} & set(dynamic)
        floated = tuple(layer for layer in floats if layer not in dynamic)
        return f"{len(floats)} lifted, per call {dynamic}", SearchStep(floated, 0.9, 0.0, 1.0, 0.99 if met else 0.98, 1, 1.0, met, (), tuple(dynamic))

    steps: list[SearchStep] = []
    best = bisect_tail(["layer0"], order, products, tried, steps, (Tier.FLOAT,))
    assert not steps[0].within_budget and steps[0].dynamic_layers and steps[1].within_budget and not steps[1].dynamic_layers
    assert best == "8 lifted, per call ['layer15', 'layer17', 'layer19']" and steps[-1].within_budget  # layer0 and the 7-layer tail
    assert len(steps) <= 1 + 1 + 3 + 5 + 1  # the tail, all in float, log2(5) suffixes, log2(18) tails, the best again


def test_matrix_products_take_per_call_ranges_in_either_tier():
    """The search's candidates: a Dense layer (a matrix product) leaving int8 takes per-call ranges whether its run goes to
    16-bit activations or to float; the convolutions go where they were sent; without products nothing changes."""
    from edgecnn.stages.export.search import tiers_of

    assert tiers_of(["conv1", "dense"], ["conv2", "probabilities"], {"dense", "probabilities"}, True) == (("conv1",), ("conv2",), ("dense", "probabilities"))
    assert tiers_of(["conv1", "dense"], ["conv2"], set(), True) == (("conv1", "dense"), ("conv2",), ())
    # TFLite's 16x8 tier is the whole file: per-call ranges come in the float tier only
    assert tiers_of(["dense"], ["conv2", "probabilities"], {"dense", "probabilities"}, False) == ((), ("conv2", "probabilities"), ("dense",))


def test_a_16_bit_candidate_much_slower_than_float_gives_way_to_it():
    from edgecnn.stages.export.search import SearchStep, keeps_16_bit

    def step(p50: float, met: bool = True) -> SearchStep:
        return SearchStep((), 0.9, 0.0, 0.995, 0.992, 1000, p50, met)

    assert keeps_16_bit(step(105.0), step(100.0)) and keeps_16_bit(step(900.0), step(100.0, met=False))
    assert not keeps_16_bit(step(3800.0), step(26.0))  # LiteRT's 16x8 seed CNN against its int8 file


def test_renamed_convolutions_are_found_by_their_weights_and_orphans_follow_their_input():
    """tf2onnx renames the convolutions it rewrites (`Conv__7`) but keeps the layer's scope in their weights; an op Keras
    recorded without a layer (MobileNetV3's hard-sigmoid multiply) goes with the layer whose output it reads."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.core.layers import onnx_node_layers, with_orphans

    weight = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "model_1/conv_1/convolution/merged_input:0")
    scale = numpy_helper.from_array(np.array([0.5], np.float32), "model_1/Mul/y:0")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", weight.name], ["Conv__7:0"], name="Conv__7"),
         helper.make_node("Mul", ["Conv__7:0", scale.name], ["model_1/Mul:0"], name="model_1/Mul"),
         helper.make_node("Relu", ["model_1/Mul:0"], ["y"], name="model_1/re_lu_1/Relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], [weight, scale])
    model = helper.make_model(graph)
    owners = onnx_node_layers(model, ["conv", "re_lu"])
    assert owners == {"Conv__7": "conv", "model_1/Mul": None, "model_1/re_lu_1/Relu": "re_lu"}
    assert onnx_node_layers(model, ["conv", "re_lu"], by_weights=False)["Conv__7"] is None  # explain: its output is not the conv's
    grouped = with_orphans(((node.name, node.input, node.output) for node in graph.node), owners)
    assert grouped == {"Conv__7": "conv", "model_1/Mul": "conv", "model_1/re_lu_1/Relu": "re_lu"}


def test_keeping_layers_in_float_groups_every_node_alike_before_and_after_quantization():
    """The quantizer reads one graph and writes another: a node that reads the model's input (tf2onnx's Transpose) goes
    with the layer that reads it; a Relu/Clip goes with the node before it, into which ORT's QDQ quantizer folds it; and
    a node the quantizer gave the removed activation's output name still goes with its weights' layer."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.stages.export.onnx import node_groups

    first = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "model_1/conv_1/convolution/merged_input:0")
    second = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "model_1/conv_2_1/convolution/merged_input:0")
    low, high = numpy_helper.from_array(np.array(0, np.float32), "low"), numpy_helper.from_array(np.array(6, np.float32), "high")

    def graph(*nodes):
        return helper.make_model(helper.make_graph(
            list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], [first, second, low, high]))

    transpose = helper.make_node("Transpose", ["x"], ["Transpose__3:0"], name="Transpose__3", perm=[0, 3, 1, 2])
    conv = helper.make_node("Conv", ["Transpose__3:0", first.name], ["Conv__7:0"], name="Conv__7")
    float_graph = graph(transpose, conv,
                        helper.make_node("Clip", ["Conv__7:0", "low", "high"], ["model_1/re_lu_1/Relu6:0"], name="model_1/re_lu_1/Relu6"),
                        helper.make_node("Conv", ["model_1/re_lu_1/Relu6:0", second.name], ["y"], name="Conv__9"))
    assert node_groups(float_graph, ["conv", "re_lu", "conv_2"]) == {
        "Transpose__3": "conv", "Conv__7": "conv", "model_1/re_lu_1/Relu6": "conv", "Conv__9": "conv_2"}
    folded = graph(transpose, helper.make_node("Conv", ["Transpose__3:0", first.name], ["model_1/re_lu_1/Relu6:0"], name="Conv__7"),
                   helper.make_node("Conv", ["model_1/re_lu_1/Relu6:0", second.name], ["y"], name="Conv__9"))
    assert node_groups(folded, ["conv", "re_lu", "conv_2"]) == {"Transpose__3": "conv", "Conv__7": "conv", "Conv__9": "conv_2"}


def test_the_search_ranks_layers_on_the_images_int8_changes_most():
    import numpy as np

    from edgecnn.stages.export.search import most_changed

    keras_probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.7, 0.3], [0.5, 0.5]])
    int8 = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.45, 0.55], [0.5, 0.5]])
    assert most_changed(int8, keras_probabilities, 2).tolist() == [1, 3]  # both flipped, whatever their distance
    assert most_changed(int8, keras_probabilities, 3).tolist() == [1, 2, 3]  # then the largest change that did not flip


LIFTED = ("MobileNetV3Small", "MobileNetV2", "MobileNet-gray")


@pytest.fixture(scope="module")
def zoo_digits(real_npz, tmp_path_factory):
    from conftest import bench_script

    zoo = bench_script("zoo")
    return zoo, zoo.digits_npz(str(real_npz), tmp_path_factory.mktemp("lifted"), train=320, test=200)


@pytest.mark.slow
@pytest.mark.parametrize("name", LIFTED)
def test_keeping_every_layer_in_float_leaves_no_node_quantized(name, zoo_digits, tmp_path):
    """The search's reach, on three architectures: the int8 file with every layer it has nodes for kept in float has no
    (de)quantization left and gives the fp32 file's answers — converter-made nodes, the activations the quantizer folds
    and the input's reformatting all go with a layer. (Before, MobileNetV3Small kept four quantized activations.)"""
    import keras
    import numpy as np
    import onnx

    from edgecnn.core.data import DataRequest, load_dataset
    from edgecnn.core.description import Color
    from edgecnn.core.layers import keras_layer_names
    from edgecnn.runners import infer_in_batches, open_runner
    from edgecnn.stages.export import ExportOptions, FormatChoice, Quantize, export
    from edgecnn.stages.export.onnx import layers_with_nodes

    zoo, digits = zoo_digits
    family = next(family for family in zoo.FAMILIES if family.name == name)
    keras_path, _ = zoo.fitted_model(family, digits, tmp_path, epochs=1)
    color = Color.of_channels(family.channels)
    common = {"model": keras_path, "data": str(digits), "image_size": family.size, "color": color, "out": tmp_path, "format": FormatChoice.ONNX}
    export(ExportOptions(**common))
    export(ExportOptions(**common, quantize=Quantize.INT8))
    manifest = load_manifest(tmp_path / "manifest.json")
    if name == "MobileNetV2":  # its last blocks see 1x1 maps at 32x32: tf2onnx's Reshapes to the same shape are gone
        assert len(manifest.artifact("onnx-fp32").details.identity_reshapes_removed) >= 4
    int8_path = manifest.resolve(manifest.artifact("onnx-int8").path)
    layers = keras_layer_names(keras.saving.load_model(keras_path, safe_mode=True))
    plain_nodes = onnx.load(int8_path).graph.node
    assert any(node.op_type == "QuantizeLinear" for node in plain_nodes)
    with_nodes = layers_with_nodes(int8_path, layers)
    export(ExportOptions(**common, quantize=Quantize.INT8, keep_float=tuple(layer for layer in layers if layer in with_nodes)))
    manifest = load_manifest(tmp_path / "manifest.json")
    assert not [node.name for node in onnx.load(int8_path).graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    images = load_dataset(DataRequest(str(digits), family.size, color)).x_test
    answers = []
    for artifact in ("onnx-fp32", "onnx-int8"):
        entry = manifest.artifact(artifact)
        runner = open_runner(entry.format, manifest.resolve(entry.path), description=manifest.source_model().description)
        answers.append(infer_in_batches(runner, images))
        runner.close()
    assert np.abs(answers[0] - answers[1]).max() <= 1e-6
    zoo.release_tensorflow_state()


def test_the_8_bit_share_counts_weights_not_quantization_parameters_or_shapes(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.runners.onnx_layers import onnx_weight_counts

    initializers = [numpy_helper.from_array(np.ones((4, 1, 3, 3), np.int8), "w_quantized"),
                    numpy_helper.from_array(np.full(4, 0.1, np.float32), "w_scale"), numpy_helper.from_array(np.zeros(4, np.int8), "w_zero_point"),
                    numpy_helper.from_array(np.zeros(4, np.float32), "bias"), numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w_quantized", "w_scale", "w_zero_point"], ["w"], axis=0),
         helper.make_node("Conv", ["x", "w", "bias"], ["c"]), helper.make_node("Reshape", ["c", "shape"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers)
    path = tmp_path / "qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    counts = onnx_weight_counts(path)
    assert (counts.elements, counts.eight_bit) == (36 + 4, 36) and counts.eight_bit_share == 0.9


def test_nncf_quantizes_onnx_int8_files_that_pass_verify_and_record_it(trained_model, small_npz, tmp_path):
    """`--quantizer nncf` (OpenVINO's post-training quantization, with bias correction): the first convolution stays
    float as with ONNX Runtime's quantizer, every other weight is int8, the file passes verify on ONNX Runtime and on
    OpenVINO, and the file and the manifest name the quantizer."""
    pytest.importorskip("nncf")
    import onnx

    for name in (trained_model.name, "train.json"):
        shutil.copy(trained_model.parent / name, tmp_path / name)
    run = run_cli("export", "--out", str(tmp_path), "--format", "onnx", "--quantize", "int8", "--quantizer", "nncf", "--data", str(small_npz))
    assert run.returncode == 0, run.stderr
    assert "Statistics collection" not in run.stdout  # NNCF's progress bars stay off the terminal
    manifest = load_manifest(tmp_path / "manifest.json")
    entry = manifest.artifact("onnx-int8")
    quantization = entry.details.quantization
    assert quantization is not None and quantization.quantizer is not None and quantization.quantizer.startswith("nncf ")
    assert quantization.kept_float_layers == ("conv1",) and "bias correction" in quantization.calibration_method
    path = manifest.resolve(entry.path)
    assert json.loads(OnnxRunner(path).embedded_metadata()["quantization"])["quantizer"] == quantization.quantizer
    model = onnx.load(path)
    conv1 = next(node for node in model.graph.node if node.op_type == "Conv")
    assert conv1.input[1] in {initializer.name for initializer in model.graph.initializer}, "conv1's weights stay float"
    assert entry.details.weights is not None and entry.details.weights.eight_bit_share > 0.99
    for runtime in ("onnxruntime", "openvino"):
        verified = run_cli("verify", "--manifest", str(tmp_path / "manifest.json"), "--runtime", runtime, "--json")
        assert verified.returncode == 0, verified.stderr
        assert [row["status"] for row in json.loads(verified.stdout)["artifacts"]] == ["PASS"]
