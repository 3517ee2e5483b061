"""Execution providers: session configuration as a recorded choice, strictness, rows that survive a failed artifact,
--tune, doctor and the one-line provider errors. Everything here runs without a GPU; tests marked `gpu` run only
where the CUDA provider really works (see bench/RESULTS.md for the GPU figures)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from conftest import assert_one_line_error, copy_exports, cuda_usable, run_cli

from edgecnn.core.files import sha256_file
from edgecnn.core.manifest import Precision, load_manifest, update_manifest
from edgecnn.measure.thresholds import thresholds_for
from edgecnn.runners import Arithmetic, OnnxRunner, Provider, SessionConfig, TfliteRunner
from edgecnn.runners.onnxrt import Placement, measure_placement


def gpu(test):
    """The `gpu` marker (select with -m gpu), skipped where no usable CUDA provider exists."""
    return pytest.mark.gpu(pytest.mark.skipif(not cuda_usable(), reason="no usable CUDA execution provider (edgecnn doctor says why)")(test))


@pytest.fixture(scope="module")
def exports(exported, tmp_path_factory):
    return copy_exports(exported, tmp_path_factory.mktemp("providers") / "exports")


def test_cuda_options_are_recorded_as_ort_spells_them():
    config = SessionConfig(provider=Provider.CUDA, device_id=1, tf32=False, prefer_nhwc=True, cuda_graph=True)
    assert config.provider_options() == {
        "device_id": "1", "use_tf32": "0", "cudnn_conv_algo_search": "EXHAUSTIVE", "prefer_nhwc": "1", "enable_cuda_graph": "1",
    }
    described = config.describe()
    assert described["providers"] == [["CUDAExecutionProvider", config.provider_options()]]
    assert described["session_config_entries"]["session.disable_cpu_ep_fallback"] == "1" and described["tf32"] is False
    assert SessionConfig().describe()["tf32"] is None  # TF32 means nothing on the CPU


def test_the_recorded_snippet_builds_the_same_session(exports):
    model = str(exports.parent / "mnist_cnn.onnx")
    config = SessionConfig(threads=1, spinning=False)
    namespace: dict = {}
    exec(config.snippet(model), namespace)
    session = namespace["session"]
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_thresholds_follow_precision_and_the_arithmetic_that_ran():
    assert thresholds_for(Precision.FP32, Arithmetic.FP32).atol == 1e-4
    tf32 = thresholds_for(Precision.FP32, Arithmetic.TF32)
    assert tf32.atol == 2e-3 and "TF32" in tf32.basis
    assert thresholds_for(Precision.FP32, Arithmetic.BF16).atol == 1e-2 and "bf16" in thresholds_for(Precision.FP32, Arithmetic.BF16).basis
    assert thresholds_for(Precision.INT8, Arithmetic.TF32) == thresholds_for(Precision.INT8, Arithmetic.FP32)
    assert all(thresholds_for(precision, arithmetic).basis for precision in Precision for arithmetic in Arithmetic)


def test_what_ran_decides_the_arithmetic(exports):
    """ORT reports TF32 only where CUDA ran with use_tf32 (a CPU fallback computes fp32); LiteRT computes fp32."""
    onnx_file, tflite_file = exports.parent / "mnist_cnn.onnx", exports.parent / "mnist_cnn_fp32.tflite"
    fallback = OnnxRunner(onnx_file, SessionConfig(provider=Provider.CUDA, allow_fallback=True))
    assert fallback.arithmetic is (Arithmetic.TF32 if cuda_usable() else Arithmetic.FP32)
    assert TfliteRunner(tflite_file).arithmetic is Arithmetic.FP32


def test_verify_on_cuda_keeps_a_tflite_files_fp32_bound(exports):
    """LiteRT runs TFLite files on the CPU whatever --provider says: their bound is fp32's, not TF32's (2e-3)."""
    run = run_cli("verify", "--manifest", str(exports), "--provider", "cuda", "--artifact", "tflite-fp32", "--json")
    assert run.returncode == 0, run.stderr
    (item,) = json.loads(run.stdout)["artifacts"]
    assert item["runtime"] == "litert" and item["arithmetic"] == "fp32" and item["thresholds"]["atol"] == 1e-4


def test_placement_is_read_from_the_profiler(exports):
    placement = measure_placement(exports.parent / "mnist_cnn_int8.onnx", SessionConfig(provider=Provider.CUDA))
    if not cuda_usable():  # everything ran on the CPU, and the count says so
        assert placement.nodes > 10 and len(placement.off_provider) == placement.nodes
        assert f"{placement.nodes} of {placement.nodes} nodes ran on CPUExecutionProvider" in placement.describe()
        assert "DequantizeLinear" in placement.describe()
    assert Placement(nodes=5, off_provider=()).describe() == "all 5 nodes on the provider"


@pytest.mark.skipif(cuda_usable(), reason="a working CUDA provider is present")
@pytest.mark.parametrize("command", ["verify", "bench", "predict"])
def test_cuda_without_gpu_is_one_line_pointing_to_doctor(exports, command, real_arrays, tmp_path):
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray(real_arrays["x_test"][0]).save(image)
    args = {
        "verify": ("--manifest", str(exports)),
        "bench": ("--manifest", str(exports), "--batch-sizes", "1", "--iterations", "3"),
        "predict": (str(image), "--model", str(exports.parent / "mnist_cnn.onnx")),
    }[command]
    run = run_cli(command, *args, "--provider", "cuda")
    assert_one_line_error(run, "CUDAExecutionProvider", "edgecnn doctor", 'pip install "edgecnn[cuda]"', "(--provider cuda)")
    assert run.stdout == ""


@pytest.mark.skipif(cuda_usable(), reason="a working CUDA provider is present")
def test_tensorrt_error_is_one_line_with_tensorrts_own_install(exports):
    run = run_cli("bench", "--manifest", str(exports), "--provider", "tensorrt", "--batch-sizes", "1", "--iterations", "3")
    assert_one_line_error(run, "TensorrtExecutionProvider", "libnvinfer.so.10", "TensorRT 10", "tensorrt-cu")
    assert run.stdout == "" and "EP Error" not in run.stderr


def test_verify_records_the_provider_and_tf32_choice(exports):
    run = run_cli("verify", "--manifest", str(exports), "--provider", "cuda", "--no-tf32", "--allow-fallback",
                  "--artifact", "onnx-fp32", "--artifact", "onnx-fp16", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    session = report["runtimes"]["onnxruntime"]
    assert session["provider"] == "cuda" and session["tf32"] is False
    assert session["providers"][0] == ["CUDAExecutionProvider", SessionConfig(provider=Provider.CUDA, tf32=False).provider_options()]
    expected = "CUDAExecutionProvider" if cuda_usable() else "CPUExecutionProvider"
    assert {item["provider_used"] for item in report["artifacts"]} == {expected}
    assert all(item["thresholds"]["basis"] for item in report["artifacts"])


def test_fp16_onnx_is_half_the_size_keeps_fp32_io_and_passes_verify_on_cpu(exports):
    manifest = load_manifest(exports)
    fp16, fp32 = manifest.artifact("onnx-fp16"), manifest.artifact("onnx-fp32")
    assert fp16.input.dtype == fp16.output.dtype == "float32"
    assert 0.45 < fp16.bytes / fp32.bytes < 0.55
    weights = onnx.load(exports.parent / fp16.path).graph.initializer
    assert {tensor.data_type for tensor in weights if tensor.dims and np.prod(tensor.dims) > 100} == {onnx.TensorProto.FLOAT16}
    run = run_cli("verify", "--manifest", str(exports), "--artifact", "onnx-fp16", "--json")
    assert run.returncode == 0, run.stderr
    (item,) = json.loads(run.stdout)["artifacts"]
    assert item["status"] == "PASS" and 0 < item["max_abs_diff"] <= 1e-2 and item["agreement"] >= 0.995


def test_an_artifact_that_cannot_run_becomes_a_row_and_the_others_are_measured(exports, tmp_path):
    manifest_path = copy_exports(exports, tmp_path / "exports")
    manifest = load_manifest(manifest_path)
    broken = manifest_path.parent / "custom_op.onnx"
    model = onnx.load(manifest_path.parent / "mnist_cnn.onnx")
    model.graph.node[-1].op_type = "NoSuchOp"  # an op no ONNX Runtime provider has a kernel for
    model.graph.node[-1].domain = "edgecnn.test"
    model.opset_import.append(onnx.helper.make_opsetid("edgecnn.test", 1))
    onnx.save(model, broken)
    entry = replace(manifest.artifact("onnx-fp32"), name="onnx-custom-op", path=broken.name, sha256=sha256_file(broken))
    update_manifest(manifest_path.parent, manifest.model, [entry])
    run = run_cli("bench", "--manifest", str(manifest_path), "--artifact", "onnx-fp32", "--artifact", "onnx-custom-op",
                  "--artifact", "onnx-int8", "--batch-sizes", "1,4", "--iterations", "5", "--warmup", "1")
    assert run.returncode == 1, run.stderr
    rows = json.loads((manifest_path.parent / "bench.json").read_text())["results"]
    failed = [row for row in rows if row["status"] == "failed"]
    assert [row["artifact"] for row in failed] == ["onnx-custom-op"] and "NoSuchOp" in failed[0]["reason"]
    measured = [(row["artifact"], row["batch_size"]) for row in rows if row["status"] == "measured"]
    assert measured == [("onnx-fp32", 1), ("onnx-fp32", 4), ("onnx-int8", 1), ("onnx-int8", 4)]
    assert "FAILED" in run.stdout


def test_a_file_the_provider_has_no_kernels_for_is_an_unsupported_row_not_a_failure(exports, tmp_path, monkeypatch):
    """int8 QDQ on CUDA: the provider loads but refuses some nodes. Simulated on the CPU by refusing the int8 file."""
    from edgecnn.runners import OnnxRunner, PlacementError
    from edgecnn.stages import bench

    load = OnnxRunner._load

    def refuse_int8(runner):
        if runner.path.name.endswith("_int8.onnx"):
            raise PlacementError("cannot run entirely on CPUExecutionProvider: 3 of 35 nodes ran elsewhere", runner.path)
        return load(runner)

    monkeypatch.setattr(OnnxRunner, "_load", refuse_int8)
    options = bench.BenchOptions(manifest=exports, artifacts=("onnx-fp32", "onnx-int8"), batch_sizes=(1,), iterations=3, warmup=1, out=tmp_path)
    report = bench.bench(options)
    statuses = {row.artifact: row.status for row in report.results}
    assert statuses == {"onnx-fp32": bench.RowStatus.MEASURED, "onnx-int8": bench.RowStatus.UNSUPPORTED} and report.passed
    unsupported = next(row for row in report.results if not row.measured)
    assert "3 of 35 nodes" in unsupported.reason and "--allow-fallback" in unsupported.reason


def test_gpu_bench_skips_tflite_unless_named_and_reports_placement(exports, tmp_path):
    run = run_cli("bench", "--manifest", str(exports), "--provider", "cuda", "--allow-fallback", "--batch-sizes", "1",
                  "--iterations", "3", "--warmup", "1", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert {row["format"] for row in rows} == {"onnx"} and len(rows) == 4
    if not cuda_usable():
        assert all("nodes ran on CPUExecutionProvider" in row["placement"] for row in rows)
    named = run_cli("bench", "--manifest", str(exports), "--provider", "cuda", "--allow-fallback", "--artifact", "tflite-int8",
                    "--batch-sizes", "1", "--iterations", "3", "--out", str(tmp_path))
    assert named.returncode == 0, named.stderr
    (row,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert row["artifact"] == "tflite-int8" and row["provider_used"] == "LiteRT (XNNPACK, CPU)"


def test_tune_on_cpu_keeps_a_passing_configuration_and_records_it(exports, tmp_path):
    run = run_cli("bench", "--manifest", str(exports), "--tune", "--artifact", "onnx-fp32", "--batch-sizes", "1,16",
                  "--seconds", "0.05", "--warmup", "5", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    tuning = json.loads((tmp_path / "bench.json").read_text())["tuning"]
    assert [(item["artifact"], item["batch_size"]) for item in tuning] == [("onnx-fp32", 1), ("onnx-fp32", 16)]
    for item in tuning:
        assert item["configurations_tried"] == 5 and item["rejected"] == []
        assert item["best_p50_us"] <= item["default_p50_us"]
        assert item["speedup_over_defaults"] == pytest.approx(item["default_p50_us"] / item["best_p50_us"], rel=1e-2)
        assert item["default"]["intra_op_num_threads"] == 0 and "InferenceSession" in item["best"]["snippet"]
    assert "speed-up" in run.stdout


def test_tune_needs_a_manifest(tmp_path, exports):
    assert_one_line_error(run_cli("bench", "--model", str(exports.parent / "mnist_cnn.onnx"), "--tune"), "--tune")


def test_predict_with_fallback_runs_on_cpu(exports, real_arrays, tmp_path):
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray(real_arrays["x_test"][0]).save(image)
    run = run_cli("predict", str(image), "--model", str(exports.parent / "mnist_cnn.onnx"), "--provider", "cuda", "--allow-fallback", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["index"] == int(real_arrays["y_test"][0])


def test_doctor_without_a_gpu_names_what_is_missing():
    run = run_cli("doctor", "--json")
    report = json.loads(run.stdout)
    assert report["provider"] == "cuda" and "CPUExecutionProvider" in report["available_providers"]
    if cuda_usable():
        assert run.returncode == 0 and report["usable"]
        return
    assert run.returncode == 1 and not report["usable"] and report["fix"]
    assert report["problem"] and "pip install" in report["fix"]
    if report["cuda_built_for"]:  # onnxruntime-gpu: the CUDA and cuDNN libraries are listed by file name
        files = {library["file"] for library in report["libraries"]}
        assert any(name.startswith("libcublas.so.") for name in files) and "libcudnn.so.9" in files
        assert not all(library["found"] for library in report["libraries"])
    text = run_cli("doctor")
    assert text.returncode == 1 and "NOT usable" in text.stdout and "fix" in text.stdout


def test_doctor_cpu_is_usable_and_says_whether_int8_sums_saturate():
    from edgecnn.core.provenance import int8_dot_product

    run = run_cli("doctor", "--provider", "cpu")
    assert run.returncode == 0 and "cpu          usable" in run.stdout
    expected = {"vnni": "VNNI (32-bit sums)", "avx2": "--reduce-range", "": "not x86"}[int8_dot_product()]
    assert expected in next(line for line in run.stdout.splitlines() if line.startswith("cpu int8"))


@pytest.mark.parametrize(("flags", "instructions"), [
    ("flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni", "vnni"),
    ("flags\t\t: fpu sse2 avx avx2 fma avx_vnni", "vnni"),
    ("flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw", "avx2"),  # AVX-512 without VNNI sums pairs in 16 bits too
    ("Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp", ""),  # ARM64: 32-bit dot products
])
def test_the_cpus_int8_instructions_are_read_from_its_flags(tmp_path, flags, instructions):
    from edgecnn.core.provenance import int8_dot_product

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{flags}\n\nprocessor\t: 1\n{flags}\n")
    assert int8_dot_product(cpuinfo) == instructions
    assert int8_dot_product(tmp_path / "absent") == ""


@gpu
def test_gpu_verify_and_bench_on_cuda(exports, tmp_path):
    verify = run_cli("verify", "--manifest", str(exports), "--provider", "cuda", "--json")
    report = json.loads(verify.stdout)
    for item in report["artifacts"]:
        assert item["status"] == "PASS" or (item["status"] == "ERROR" and "cannot run entirely" in item["failures"][0]["value"])
    bench = run_cli("bench", "--manifest", str(exports), "--provider", "cuda", "--batch-sizes", "1,256", "--seconds", "0.2",
                    "--out", str(tmp_path))
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    measured = [row for row in rows if row["status"] == "measured"]
    assert measured and all(row["provider_used"] == "CUDAExecutionProvider" and not row["transfer_included"] for row in measured)
    assert all(row["status"] in ("measured", "unsupported") for row in rows) and bench.returncode == 0, bench.stdout
