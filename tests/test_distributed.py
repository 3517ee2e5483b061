"""Multi-worker training for real: two `edgecnn train --distribute multi-worker` processes on 127.0.0.1, a worker
killed mid-training, and a restart that resumes from the last epoch's backup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecnn.stages.train import TrainOptions, train
from edgecnn.stages.train.distributed import local_cluster

EPOCHS = 5  # with 6,000 digits, past the steep start of learning: runs that differ only in dropout masks agree within a point


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Every worker a test starts; killed at teardown, so a failed or hung test leaves no process behind."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def start_workers(data: Path, out: Path, epochs: int, started: list[subprocess.Popen]) -> list[subprocess.Popen]:
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "edgecnn", "train", "--distribute", "multi-worker", "--data", str(data), "--epochs", str(epochs),
             "--out", str(out)],
            env={**os.environ, "TF_CONFIG": config}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for config in local_cluster(2)
    ]
    started.extend(workers)
    return workers


def finish(workers: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str]]:
    outputs = [worker.communicate(timeout=timeout)[1] for worker in workers]
    return [(worker.returncode, stderr) for worker, stderr in zip(workers, outputs, strict=True)]


@pytest.fixture(scope="module")
def slice_npz(real_arrays, tmp_path_factory) -> Path:
    """6,000 training digits and the first 2,000 test digits: enough for a stable accuracy comparison."""
    path = tmp_path_factory.mktemp("mw") / "mnist.npz"  # MNIST digits: the model is mnist_cnn
    np.savez(path, x_train=real_arrays["x_train"][:6000], y_train=real_arrays["y_train"][:6000],
             x_test=real_arrays["x_test"][:2000], y_test=real_arrays["y_test"][:2000])
    return path


@pytest.mark.slow  # trains for real, end to end
def test_two_worker_processes_train_one_model(slice_npz, tmp_path, started):
    out = tmp_path / "exports"
    results = finish(start_workers(slice_npz, out, EPOCHS, started))
    assert [code for code, _ in results] == [0, 0], [stderr[-2000:] for _, stderr in results]
    report = json.loads((out / "train.json").read_text())
    distribution = report["distribution"]
    assert distribution["strategy"] == "multi-worker" and distribution["replicas"] == 2
    assert distribution["global_batch_size"] == 256 and len(distribution["workers"]) == 2 and distribution["task_index"] == 0
    assert (out / "mnist_cnn.keras").is_file() and [row["epoch"] for row in report["history"]] == list(range(1, EPOCHS + 1))
    assert sorted(child.name for child in out.iterdir()) == [".worker-1", "mnist_cnn.keras", "train.json", "train_curves.png"]
    assert (out / ".worker-1" / "mnist_cnn.keras").is_file() and not (out / ".backup").exists()
    single = train(TrainOptions(data=str(slice_npz), epochs=EPOCHS, batch_size=256, out=tmp_path / "single", progress=False)).report
    assert abs(report["test_accuracy"] - single.test_accuracy) <= 0.01, (report["test_accuracy"], single.test_accuracy)


@pytest.mark.slow  # trains for real, end to end
def test_a_killed_worker_stops_the_other_and_a_restart_resumes(slice_npz, tmp_path, started):
    out = tmp_path / "exports"
    chief, other = start_workers(slice_npz, out, 6, started)
    deadline = time.monotonic() + 240
    while not (out / ".backup" / "checkpoint").is_file():  # the first epoch's backup is written
        assert time.monotonic() < deadline and chief.poll() is None, chief.communicate()[1][-2000:]
        time.sleep(0.2)
    other.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = chief.communicate(timeout=120)
    stopped_after = time.monotonic() - killed_at
    other.communicate()
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert chief.returncode == 1 and len(lines) == 1 and "lost a peer" in lines[0] and "resume from epoch" in lines[0], stderr[-2000:]
    assert stopped_after < 90 and "Traceback" not in stderr
    assert not (out / "mnist_cnn.keras").exists() and not (out / "train.json").exists()

    results = finish(start_workers(slice_npz, out, 6, started))
    assert [code for code, _ in results] == [0, 0], [stderr[-2000:] for _, stderr in results]
    report = json.loads((out / "train.json").read_text())
    resumed = report["distribution"]["resumed_from_epoch"]
    assert resumed >= 1 and [row["epoch"] for row in report["history"]] == list(range(resumed + 1, 7))
    assert report["test_accuracy"] > 0.8 and not (out / ".backup").exists()
