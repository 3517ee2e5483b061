from __future__ import annotations

import json
import shutil

import pytest
from conftest import SHARED_NPZ, run_cli


def test_pipeline_with_skip_train_writes_the_report(trained_model, small_npz, tmp_path):
    out = tmp_path / "exports"
    shutil.copytree(trained_model.parent, out)
    run = run_cli("pipeline", "--skip-train", "--out", str(out), "--data", str(small_npz))
    assert run.returncode == 0, run.stderr
    markdown = (out / "report.md").read_text()
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## What to ship", "## Every artifact", "## Size × latency × accuracy", "## Data and training", "## Exported artifacts",
                        "## Parity with Keras", "## Latency", "## Provenance"]
    assert "| Pareto front |" in markdown  # at least one passing file that no other beats
    assert "| CPU, batch 1 |" in markdown and "| CPU, throughput |" in markdown and "what to ship" in run.stdout
    # every artifact passes: once in the parity table, once in the "Every artifact" summary
    assert markdown.count("| PASS") == 2 * 8 and "mnist_cnn_int8.tflite" in markdown and "![Latency](bench.png)" in markdown
    assert "![Size × latency × accuracy](front.png)" in markdown and (out / "front.png").stat().st_size > 10_000
    # the int8 files store nearly all of the seed CNN's 600,810 weights in 8 bits (ONNX keeps the first convolution's 320
    # in float), the fp32 files none
    pareto = markdown.split("## Size × latency × accuracy")[1].split("## ")[0]
    assert "| onnx-int8 | ORT CPU |" in pareto and "| 100% |" in pareto and "| 0% |" in pareto
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # curves, the size × latency × accuracy front, confusion matrices, latency
    assert html.count("<table>") == 6 and '<span class="pass">PASS</span>' in html
    bench = json.loads((out / "bench.json").read_text())
    assert {row["batch_size"] for row in bench["results"]} == {1, 64}


def test_pipeline_with_corruptions_shows_them_in_the_report(trained_model, small_npz, tmp_path):
    out = tmp_path / "exports"
    shutil.copytree(trained_model.parent, out)
    run = run_cli("pipeline", "--skip-train", "--out", str(out), "--data", str(small_npz), "--format", "onnx", "--corruptions")
    assert run.returncode in (0, 3), run.stderr
    markdown = (out / "report.md").read_text()
    section = markdown.split("## Robustness on corrupted pictures")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| corruption")]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == ["rotation", "gaussian-noise", "blur", "brightness", "contrast", "jpeg", "resize", "crop"]
    assert all(row.count("PASS") + row.count("FAIL") + row.count("INCONCLUSIVE") == 1 for row in rows), "one cell per file exported (onnx-fp32)"
    assert "![Robustness on corrupted pictures](verify_corruptions.png)" in section
    assert "Robustness on corrupted pictures</h2>" in (out / "report.html").read_text()
    assert len(json.loads((out / "verify.json").read_text())["corruptions"]["splits"]) == 8


@pytest.mark.slow
def test_main_job_end_to_end_on_offline_data(tmp_path):
    """Acceptance, as the README's main command runs it (EDGECNN_DATA points at the offline npz in CI):
    10 epochs reach >= 97.5% on the official test set, every artifact passes parity, and the report is written."""
    if not SHARED_NPZ.is_file():
        pytest.skip("shared offline npz not present")
    run = run_cli("pipeline", cwd=tmp_path, env={"EDGECNN_DATA": str(SHARED_NPZ)})
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "exports"
    train = json.loads((out / "train.json").read_text())
    assert train["data"]["test_size"] == 10000 and train["test_accuracy"] >= 0.975
    verify = json.loads((out / "verify.json").read_text())
    assert verify["passed"] and len(verify["artifacts"]) == 8
    by_name = {item["name"]: item for item in verify["artifacts"]}
    assert by_name["onnx-fp32"]["max_abs_diff"] <= 1e-5 and by_name["onnx-fp32-uint8-input"]["max_abs_diff"] <= 1e-5
    assert by_name["onnx-int8"]["delta_points"] >= -0.3 and by_name["tflite-int8"]["delta_points"] >= -0.3
    manifest = json.loads((out / "manifest.json").read_text())
    sizes = {entry["name"]: entry["bytes"] for entry in manifest["artifacts"]}
    assert sizes["onnx-int8"] <= 0.3 * sizes["onnx-fp32"] and sizes["tflite-int8"] <= 0.3 * sizes["onnx-fp32"]
    assert (out / "report.html").is_file()
