"""Training on several devices or machines with tf.distribute.

Mirrored (local devices) goes through Keras' `model.fit`. MultiWorkerMirrored does not: Keras 3's `fit` fails under it
with more than one worker (keras-team/keras#20585: its symbolic build and its metric reduction call the strategy's
cross-worker reduce on values it cannot take, "Attempt to convert a value (PerReplica…) to a Tensor"). Multi-worker
training therefore runs TensorFlow's documented custom loop: `strategy.run` of one step per global batch, gradients
all-reduced by the optimizer, and an epoch checkpoint (`tf.train.CheckpointManager`, what Keras' BackupAndRestore does
inside `fit`) that a restarted cluster resumes from. A worker that dies makes the collectives of the others fail within
the strategy's health-check interval; that becomes a one-line `WorkerLostError`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.backend import import_keras, import_tensorflow
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.files import ensure_output_dir
from edgecnn.core.train_report import Distribution

BACKUP_FOLDER = ".backup"


class WorkerLostError(EdgecnnError):
    """A peer in multi-worker training stopped answering; the run cannot continue but can resume."""

    exit_code = 1


@dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-worker cluster, as TF_CONFIG names it."""

    workers: tuple[str, ...]
    task_index: int
    is_chief: bool


def cluster_from_environment() -> Cluster:
    """The cluster TF_CONFIG describes; anything malformed is the user's input, named as such in one line."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG", ""))
        cluster, task = config["cluster"], config["task"]
        workers = tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))
        index = int(task.get("index", 0))
        kind = task["type"]
    except json.JSONDecodeError as exc:
        raise EdgecnnError(f"is not valid JSON ({exc.msg} at character {exc.pos})", "TF_CONFIG") from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise EdgecnnError(f"must be a JSON object with a 'cluster' of worker addresses and a 'task' with 'type' and 'index' ({type(exc).__name__}: {exc})",
                           "TF_CONFIG") from None
    if not workers or not 0 <= index < len(workers) or not all(isinstance(address, str) for address in workers):
        raise EdgecnnError(f"names {len(workers)} workers and task index {index}: expected worker addresses and an index among them", "TF_CONFIG")
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not cluster.get("chief"))
    return Cluster(workers, index, is_chief)


def local_cluster(workers: int) -> list[str]:
    """TF_CONFIG values for `workers` processes on 127.0.0.1, one per worker, on ports free right now: for trying
    multi-worker training (and testing it) on one machine."""
    sockets = [socket.socket() for _ in range(workers)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    addresses = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    for sock in sockets:
        sock.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}) for index in range(workers)]


def distribution_strategy(kind: Distribution) -> Any:
    """tf.distribute: Mirrored over the local GPUs (or every logical CPU when there is none), MultiWorkerMirrored
    over the machines TF_CONFIG names; the default strategy otherwise. The global batch is per-replica x replicas."""
    tf = import_tensorflow()
    if kind is Distribution.MIRRORED:
        devices = [device.name for device in tf.config.list_logical_devices("GPU")] or [
            device.name for device in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind is Distribution.MULTI_WORKER:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def worker_output_dir(out: Path, cluster: Cluster) -> Path:
    """Every worker saves (the collectives need all of them), but only the chief writes to --out."""
    return out if cluster.is_chief else ensure_output_dir(out / f".worker-{cluster.task_index}")


@dataclass(frozen=True)
class LoopOutcome:
    history: tuple[dict[str, float], ...]
    training_seconds: float
    resumed_from_epoch: int


def fit_across_workers(
    model: Any, dataset: Any, validation: tuple[np.ndarray, np.ndarray] | None, epochs: int, strategy: Any, out: Path, shared_out: Path
) -> LoopOutcome:
    """TensorFlow's multi-worker custom loop with an epoch backup. Every worker saves its own copy (saving is collective)
    but all restore the chief's, in `shared_out/.backup`: workers that resumed from different epochs would run different
    numbers of steps and wait on each other forever, so the restored epoch is also checked across workers."""
    tf = import_tensorflow()
    distributed = strategy.experimental_distribute_dataset(dataset)
    step = training_step(model, strategy)
    with strategy.scope():  # the optimizer's slots exist before the restore, so Adam's moments are restored too
        model.optimizer.build(model.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(out / BACKUP_FOLDER), max_to_keep=1)
    try:
        checkpoint.restore(tf.train.latest_checkpoint(str(shared_out / BACKUP_FOLDER)))
        resumed = agreed_epoch(strategy, int(epoch.numpy()))
        history, training_seconds = [], 0.0
        for index in range(resumed, epochs):
            started = time.perf_counter()
            loss, correct, seen = 0.0, 0.0, 0.0
            for batch in distributed:
                batch_loss, batch_correct, batch_seen = step(batch)
                loss, correct, seen = loss + float(batch_loss) * float(batch_seen), correct + float(batch_correct), seen + float(batch_seen)
            seconds = time.perf_counter() - started
            training_seconds += seconds
            row = {"epoch": index + 1, "seconds": round(seconds, 3), "loss": loss / seen, "accuracy": correct / seen}
            if validation is not None:
                row |= dict(zip(("val_loss", "val_accuracy"), evaluate_locally(model, *validation), strict=True))
            history.append(row)
            epoch.assign(index + 1)
            manager.save()
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError, tf.errors.InternalError) as exc:
        raise WorkerLostError(
            f"lost a peer during multi-worker training ({type(exc).__name__}); restart every worker with the same command "
            f"to resume from epoch {int(epoch.numpy())}", "--distribute"
        ) from None
    shutil.rmtree(out / BACKUP_FOLDER, ignore_errors=True)
    return LoopOutcome(tuple(history), training_seconds, resumed)


def agreed_epoch(strategy: Any, epoch: int) -> int:
    """The epoch every worker restored, or a one-line error when they differ (sum and sum of squares across workers:
    n·Σe² = (Σe)² exactly when all are equal, and every worker computes the same two sums)."""
    tf = import_tensorflow()

    @tf.function
    def sums() -> tuple[Any, Any]:
        value = tf.constant(float(epoch), tf.float64)
        ones, squares = strategy.run(lambda: (value, value * value))
        return strategy.reduce("SUM", ones, axis=None), strategy.reduce("SUM", squares, axis=None)

    total, total_squares = (float(value) for value in sums())
    if strategy.num_replicas_in_sync * total_squares != total * total:
        raise EdgecnnError(
            f"workers restored different epochs from their backups (this one: {epoch}); every worker must read the chief's "
            f"{BACKUP_FOLDER} under --out (a shared folder), or delete the backups to start over", "--out"
        )
    return epoch


def training_step(model: Any, strategy: Any) -> Any:
    """One global batch: each replica's gradients of its share of the mean loss, summed across workers by the optimizer."""
    tf = import_tensorflow()
    keras = import_keras()
    per_example = keras.losses.CategoricalCrossentropy(reduction=None)

    def replica_step(batch: Any) -> tuple[Any, Any, Any]:
        images, labels = batch
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            losses = per_example(labels, probabilities)
            loss = tf.nn.compute_average_loss(losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), tf.argmax(labels, -1)), tf.float32))
        seen = tf.cast(tf.shape(labels)[0], tf.float32)
        return tf.reduce_sum(losses), correct, seen

    @tf.function
    def step(batch: Any) -> tuple[Any, Any, Any]:
        loss_sum, correct, seen = strategy.run(replica_step, args=(batch,))
        total_seen = strategy.reduce("SUM", seen, axis=None)
        return strategy.reduce("SUM", loss_sum, axis=None) / total_seen, strategy.reduce("SUM", correct, axis=None), total_seen

    return step


def evaluate_locally(model: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 1024) -> tuple[float, float]:
    """Mean categorical cross-entropy and accuracy, computed on this worker (Keras' evaluate has the same reduce bug)."""
    probabilities = np.concatenate([np.asarray(model(images[start : start + batch_size], training=False)) for start in range(0, len(images), batch_size)])
    clipped = np.clip(probabilities, 1e-7, 1.0 - 1e-7)
    loss = float(np.mean(-np.sum(labels * np.log(clipped), axis=1)))
    return loss, float(np.mean(probabilities.argmax(axis=1) == labels.argmax(axis=1)))
