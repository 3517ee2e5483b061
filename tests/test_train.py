from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.train_report import LearningRateSchedule, TrainReport
from edgecnn.stages.train import TrainOptions, train


def small_run(small_npz, out, **overrides):
    options = {"data": str(small_npz), "epochs": 2, "out": out, "progress": False} | overrides
    return train(TrainOptions(**options))


@pytest.fixture(scope="module")
def first_run(small_npz, tmp_path_factory):
    return small_run(small_npz, tmp_path_factory.mktemp("train-a"))


def test_training_writes_model_report_and_curves(first_run, small_npz):
    assert first_run.model_path.is_file() and first_run.curves_path.is_file()
    assert first_run.curves_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(first_run.report_path.read_text())
    assert 0.8 < report["test_accuracy"] <= 1.0, "2 epochs on 1,800 real digits should already classify most of them"
    assert report["images_per_second"] > 0
    assert report["data"]["train_size"] == 2000 and report["data"]["fit_size"] == 1800 and report["data"]["test_size"] == len(np.load(small_npz)["y_test"])
    assert len(report["history"]) == 2 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(report["history"][0])
    assert report["seed"] == 0 and report["hyperparameters"]["batch_size"] == 128
    assert len(report["model"]["sha256"]) == 64 and report["versions"]["tensorflow"]
    from edgecnn.core.files import sha256_file

    assert report["model"]["sha256"] == sha256_file(first_run.model_path)


def test_the_report_is_typed_and_round_trips_through_json(first_run):
    read_back = TrainReport.from_json(first_run.report_path)
    assert read_back == first_run.report
    assert read_back.hyperparameters.schedule is LearningRateSchedule.CONSTANT and read_back.data.fit_size == 1800


def test_same_seed_gives_same_result(first_run, small_npz, tmp_path):
    again = small_run(small_npz, tmp_path)
    assert again.report.test_accuracy == first_run.report.test_accuracy
    assert [row["loss"] for row in again.report.history] == [row["loss"] for row in first_run.report.history]


def test_other_seed_gives_other_weights(first_run, small_npz, tmp_path):
    other = small_run(small_npz, tmp_path, seed=1)
    assert [row["loss"] for row in other.report.history] != [row["loss"] for row in first_run.report.history]


def test_augmentation_is_training_only(small_npz, tmp_path):
    result = small_run(small_npz, tmp_path, epochs=1, augment=True)
    assert result.report.hyperparameters.augment["rotation_degrees"] == 8.0
    assert result.report.hyperparameters.schedule is LearningRateSchedule.COSINE
    import keras

    saved = keras.saving.load_model(result.model_path, safe_mode=True)
    assert not any("random" in layer.name.lower() or layer.name == "augment" for layer in saved.layers)
    assert saved.count_params() == 600_810


@pytest.mark.parametrize(
    "overrides, option",
    [({"epochs": 0}, "--epochs"), ({"batch_size": -1}, "--batch-size"), ({"learning_rate": 0.0}, "--learning-rate"),
     ({"validation_split": 1.0}, "--validation-split")],
)
def test_bad_options_are_user_errors(small_npz, tmp_path, overrides, option):
    with pytest.raises(EdgecnnError) as raised:
        small_run(small_npz, tmp_path, **overrides)
    assert raised.value.where == option


def test_cli_rejects_a_file_as_output_folder(small_npz, tmp_path):
    blocker = tmp_path / "exports"
    blocker.write_text("not a folder")
    assert_one_line_error(run_cli("train", "--data", str(small_npz), "--out", str(blocker)), "is a file, not a folder", "--out")


MIRRORED_PROBE = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from edgecnn.stages.train import TrainOptions, train
from edgecnn.core.train_report import Distribution
result = train(TrainOptions(data=sys.argv[1], epochs=1, out=Path(sys.argv[2]), distribute=Distribution.MIRRORED, progress=False))
print(json.dumps({"distribution": result.report.to_dict()["distribution"], "accuracy": result.report.test_accuracy}))
"""


def test_mirrored_strategy_on_two_logical_cpus(small_npz, tmp_path):
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-c", MIRRORED_PROBE, str(small_npz), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["distribution"]["strategy"] == "mirrored" and report["distribution"]["replicas"] == 2
    assert report["distribution"]["global_batch_size"] == 256 and len(report["distribution"]["devices"]) == 2
    assert report["accuracy"] > 0.5 and (tmp_path / "mnist_cnn.keras").is_file()


def test_multi_worker_needs_tf_config(small_npz, tmp_path):
    env = {"TF_CONFIG": ""}
    assert_one_line_error(run_cli("train", "--data", str(small_npz), "--distribute", "multi-worker", "--out", str(tmp_path), env=env),
                          "TF_CONFIG", "--distribute")


@pytest.mark.parametrize("config, fragment", [
    ("{not json", "is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "must be a JSON object with a 'cluster'"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "names 1 workers and task index 3"),
])
def test_a_malformed_tf_config_is_the_users_input(small_npz, tmp_path, config, fragment):
    run = run_cli("train", "--data", str(small_npz), "--distribute", "multi-worker", "--out", str(tmp_path / "out"), env={"TF_CONFIG": config})
    assert_one_line_error(run, fragment, "TF_CONFIG")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
