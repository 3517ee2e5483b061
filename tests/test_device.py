"""The device side: what a TensorFlow-free install runs (verify from the stored reference, selftest, bench's memory and
intervals, "What to ship" ties), and that nothing on that side imports the training side.

A device install is simulated here by blocking the training side's packages in a fresh interpreter; `.ci/run` also
builds a real one (a venv with `pip install .` only) and runs every device command there.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_one_line_error, copy_exports, perturb_largest_initializer, run_cli

TRAINING_SIDE = ("tensorflow", "keras", "tf2onnx", "onnxslim", "matplotlib", "scipy", "sklearn", "mlxtend")
DEVICE_PROBE = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # as absent as on a device install: importing it raises ImportError
from edgecnn.cli import main
try:
    main({args!r})
except SystemExit as exit:
    code = exit.code
print("MODULES", " ".join(sorted(name for name in sys.modules if name.startswith({watched!r}))))
sys.exit(code)
"""


def run_as_device(*args: str, watched: tuple[str, ...] = ("edgecnn.stages.train", "edgecnn.stages.export", "edgecnn.cli.build")) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter where the training side cannot be imported; stdout ends with the watched modules it loaded."""
    code = DEVICE_PROBE.format(blocked=TRAINING_SIDE, args=list(args), watched=watched)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def loaded_modules(completed: subprocess.CompletedProcess) -> set[str]:
    last = completed.stdout.strip().splitlines()[-1]
    assert last.startswith("MODULES"), completed.stdout + completed.stderr
    return set(last.split()[1:])


def verdicts(report: dict) -> dict[tuple[str, str], tuple]:
    return {(row["name"], row["runtime"]): (row["status"], row["accuracy"], row["agreement"], row["max_abs_diff"], tuple(row["flipped"]))
            for row in report["artifacts"]}


def test_verify_on_a_device_gives_the_workstations_verdicts_from_the_stored_reference(exported, small_npz, tmp_path):
    workstation = run_cli("verify", "--manifest", str(copy_exports(exported, tmp_path / "workstation")), "--data", str(small_npz), "--json")
    device_copy = copy_exports(exported, tmp_path / "copied")
    (device_copy.parent / "verify_confusion.png").unlink(missing_ok=True)
    device = run_as_device("verify", "--manifest", str(device_copy), "--json")
    assert workstation.returncode == 0, workstation.stderr
    assert device.returncode == 0, device.stderr
    on_device = json.loads(device.stdout[: device.stdout.rindex("MODULES")])
    assert verdicts(on_device) == verdicts(json.loads(workstation.stdout))
    assert len(on_device["artifacts"]) == 8 and "judged_on" in on_device["data"]
    assert "skipped the confusion chart" in device.stderr and not (device_copy.parent / "verify_confusion.png").exists()
    assert loaded_modules(device) == set()


def test_the_stored_reference_is_hash_checked(exported, tmp_path):
    manifest = copy_exports(exported, tmp_path / "copied")
    record = json.loads(manifest.read_text())["model"]["reference"]
    reference = manifest.parent / record["path"]
    with np.load(reference) as arrays:
        stored = {name: arrays[name] for name in arrays.files}
    stored["probabilities"] = stored["probabilities"][::-1].copy()  # someone's "fixed" reference
    np.savez_compressed(reference, **stored)
    assert_one_line_error(run_cli("verify", "--manifest", str(manifest)), "stored Keras reference changed since export")


def test_predict_info_and_selftest_never_import_the_training_side(exported, real_arrays, tmp_path):
    from PIL import Image

    picture = tmp_path / "digit.png"
    Image.fromarray(real_arrays["x_test"][0]).save(picture)
    model = str(exported.parent / "mnist_cnn.onnx")
    for args in (("predict", str(picture), "--model", model, "--json"), ("info", model), ("selftest", model)):
        completed = run_as_device(*args)
        assert completed.returncode == 0, completed.stderr
        assert loaded_modules(completed) == set(), args


def test_predict_of_one_picture_loads_only_what_it_runs(exported, real_arrays, tmp_path):
    """Start-up is counted (bench/device_ratios.py): one picture beside a manifest loads no typer, no manifest records
    (its sha256 is read from the artifact list), no table renderer, no other runtime's runner and no thread pool."""
    from PIL import Image

    picture = tmp_path / "digit.png"
    Image.fromarray(real_arrays["x_test"][0]).save(picture)
    heavy = ("typer", "argparse", "tempfile", "concurrent.futures", "edgecnn.core.manifest", "edgecnn.core.data", "edgecnn.report.render",
             "edgecnn.runners.litert", "edgecnn.runners.keras", "edgecnn.cli.app")
    completed = run_as_device("predict", str(picture), "--model", str(exported.parent / "mnist_cnn.onnx"), "--json", watched=heavy)
    assert completed.returncode == 0, completed.stderr
    assert loaded_modules(completed) == set()
    assert json.loads(completed.stdout[: completed.stdout.rindex("MODULES")])[0]["index"] == int(real_arrays["y_test"][0])


@pytest.mark.parametrize("command", ["train", "export"])
def test_training_commands_on_a_device_install_name_the_extra(command, tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:  # a .keras file: export gets as far as importing Keras
        archive.writestr("config.json", "{}")
    model = ("--model", str(tmp_path / "model.keras")) if command == "export" else ()
    completed = run_as_device(command, "--data", "sklearn-digits", *model, "--out", str(tmp_path), watched=())
    lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
    assert completed.returncode == 2 and len(lines) == 1, completed.stderr
    assert 'pip install "edgecnn[train]"' in lines[0] and "Traceback" not in completed.stderr


def test_selftest_passes_on_every_artifact(exported):
    manifest = json.loads(exported.read_text())
    for entry in manifest["artifacts"]:
        run = run_cli("selftest", str(exported.parent / entry["path"]), "--json")
        result = json.loads(run.stdout)
        assert run.returncode == 0 and result["passed"], (entry["name"], run.stdout, run.stderr)
        assert result["goldens"] == 8 and result["top1_agreeing"] == 8
        if entry["precision"] in ("fp32", "fp16"):
            assert result["bound"] is not None and result["max_abs_diff"] <= result["bound"]
        else:
            assert result["bound"] is None  # int8/dynamic files are bound by top-1 on confident goldens


@pytest.mark.parametrize("artifact", ["mnist_cnn.onnx", "mnist_cnn_int8.onnx"])
def test_selftest_fails_on_a_file_whose_weights_changed(exported, tmp_path, artifact):
    manifest = copy_exports(exported, tmp_path / "copied")
    path = manifest.parent / artifact
    perturb_largest_initializer(path)
    run = run_cli("selftest", str(path))
    assert run.returncode == 1 and run.stdout.startswith("FAIL"), run.stdout + run.stderr


def test_selftest_on_a_file_without_goldens_is_a_one_line_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Softmax", ["flat"], ["y"], axis=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 4, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert_one_line_error(run_cli("selftest", str(path)), "carries no golden inputs", "plain.onnx")


def test_goldens_are_confident_correct_test_images_of_several_classes():
    from edgecnn.core.reference import GOLDEN_MARGIN, Reference, golden_indices

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=500)
    probabilities = np.full((500, 10), 0.02, dtype=np.float32)
    probabilities[np.arange(500), labels] = np.where(rng.random(500) < 0.5, 0.82, 0.3)  # half confident, half not
    reference = Reference(np.zeros((500, 28, 28, 1), np.uint8), labels, probabilities, np.arange(500))
    chosen = golden_indices(reference, 28 * 28)
    assert len(chosen) == 8 and len(set(labels[chosen])) == 8
    assert np.all(probabilities[chosen].max(axis=1) - 0.02 >= GOLDEN_MARGIN)
    assert len(golden_indices(reference, 224 * 224 * 3)) == 1  # a large input: one golden keeps the file small


def test_mcnemar_exact_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    from edgecnn.stages.verify import mcnemar_exact_p

    for only_keras, only_artifact in ((0, 0), (1, 0), (3, 9), (10, 10), (7, 30), (120, 95)):
        expected = 1.0 if only_keras + only_artifact == 0 else scipy_stats.binomtest(min(only_keras, only_artifact), only_keras + only_artifact, 0.5).pvalue
        assert mcnemar_exact_p(only_keras, only_artifact) == pytest.approx(expected, rel=1e-9)


def test_the_p50_interval_widens_with_drift_between_rounds():
    from edgecnn.measure.timing import LatencyStats

    rng = np.random.default_rng(1)
    steady = [rng.normal(100_000, 2_000, 400) for _ in range(5)]
    drifting = [rng.normal(100_000 * factor, 2_000, 400) for factor in (0.8, 1.0, 1.3, 0.9, 1.2)]
    calm, noisy = LatencyStats.from_rounds(steady), LatencyStats.from_rounds(drifting)
    assert calm.p50_low_us <= calm.p50_us <= calm.p50_high_us and calm.rounds == 5 and calm.iterations == 2000
    assert noisy.p50_high_us - noisy.p50_low_us > 5 * (calm.p50_high_us - calm.p50_low_us)
    assert calm.overlaps(noisy)
    assert not calm.overlaps(LatencyStats.from_rounds([samples * 1.5 for samples in steady]))


def test_bench_reports_memory_and_intervals(exported, tmp_path):
    manifest = copy_exports(exported, tmp_path / "copied")
    run = run_cli("bench", "--manifest", str(manifest), "--artifact", "onnx-int8", "--artifact", "tflite-int8", "--batch-sizes", "1,8",
                  "--seconds", "0.2", "--rounds", "3", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["settings"]["rounds"] == 3 and "child process" in report["settings"]["memory"]
    for result in report["results"]:
        assert result["rounds"] == 3 and result["p50_low_us"] <= result["p50_us"] <= result["p50_high_us"], result
        assert 0 < result["peak_memory_mib"] < 2048, result
    by_batch = {(result["artifact"], result["batch_size"]): result["peak_memory_mib"] for result in report["results"]}
    assert by_batch["onnx-int8", 8] >= by_batch["onnx-int8", 1]  # cumulative: batches run in ascending order
