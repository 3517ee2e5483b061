"""What verify and selftest judge on without TensorFlow: the Keras model's answers, stored by export.

Export runs the Keras model once on the test split and writes, beside the artifacts, the test images, their labels
and the model's probabilities (`verify_reference.npz`, compressed, its sha256 in the manifest), so `edgecnn verify`
on a device install — the folder copied over, no TensorFlow, no `--data` — judges every artifact exactly as the
workstation does. It also picks a few golden images (confident, correctly classified test images) whose Keras
probabilities and pass bound every artifact carries in its own metadata, for `edgecnn selftest` and an app's
start-up check.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.data_record import DataSummary
from edgecnn.core.errors import EdgecnnError, IntegrityError
from edgecnn.core.files import atomic_path, sha256_file
from edgecnn.core.manifest import ParityBounds, ReferenceRecord

REFERENCE_FILENAME = "verify_reference.npz"
REFERENCE_MAX_BYTES = 64 * 2**20  # image bytes stored; a larger test split is stored as a seeded sample, and verify says so
SELFTEST_KEY = "edgecnn_selftest"  # the goldens in every artifact's metadata (ONNX metadata_props, the TFLite edgecnn entry)
GOLDEN_BYTES = 64 * 2**10  # image bytes embedded per artifact: up to 8 goldens of a small model, one of a large one
GOLDEN_MAX = 8
GOLDEN_MARGIN = 0.5  # a golden's top-1 probability leads the runner-up by this much in Keras: int8 must not flip it


@dataclass(frozen=True)
class Reference:
    """Test images (uint8 N, H, W, C), labels, the Keras model's probabilities, and each image's index in the test split."""

    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    indices: np.ndarray


def stored_sample(test_size: int, image_bytes: int, seed: int) -> np.ndarray:
    """The test indices export stores: all of them, or a seeded sample that fits REFERENCE_MAX_BYTES."""
    count = min(test_size, max(1, REFERENCE_MAX_BYTES // max(1, image_bytes)))
    if count == test_size:
        return np.arange(test_size)
    return np.sort(np.random.default_rng(seed).choice(test_size, size=count, replace=False))


def write_reference(folder: Path, reference: Reference, data: DataSummary, model_sha256: str, bounds: ParityBounds) -> ReferenceRecord:
    path = Path(folder) / REFERENCE_FILENAME
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.savez_compressed(handle, images=reference.images, labels=reference.labels, probabilities=reference.probabilities,
                            indices=reference.indices)
    return ReferenceRecord(REFERENCE_FILENAME, sha256_file(path), int(len(reference.labels)), model_sha256, data, bounds)


def load_reference(path: Path, record: ReferenceRecord, verify_hash: bool) -> Reference:
    """The stored reference, its bytes checked against the manifest (never unpickled)."""
    if not path.is_file():
        raise EdgecnnError("the stored Keras reference is missing: copy the whole export folder, or pass --data on a machine with TensorFlow", path)
    if verify_hash and sha256_file(path) != record.sha256:
        raise IntegrityError("the stored Keras reference changed since export (sha256 differs from the manifest)", path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return Reference(arrays["images"], arrays["labels"], arrays["probabilities"], arrays["indices"])
    except (OSError, ValueError, KeyError) as exc:
        raise EdgecnnError(f"cannot read the stored Keras reference: {exc}", path) from None


@dataclass(frozen=True)
class Goldens:
    """A few test images with the Keras model's probabilities and the bound an artifact of a given precision must meet."""

    images: np.ndarray  # uint8 (N, H, W, C)
    probabilities: np.ndarray  # float32 (N, K)
    max_abs_diff: float | None  # None: only top-1 is bound (int8 and dynamic files)
    bound_basis: str

    def to_metadata(self) -> dict[str, str]:
        payload = {
            "shape": list(self.images.shape),
            "images": base64.b64encode(np.ascontiguousarray(self.images, dtype=np.uint8).tobytes()).decode("ascii"),
            "probabilities": self.probabilities.astype(np.float32).tolist(),
            "max_abs_diff": self.max_abs_diff,
            "top1": "every golden's top-1 class equals the Keras model's",
            "basis": self.bound_basis,
        }
        return {SELFTEST_KEY: json.dumps(payload, separators=(",", ":"))}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], where: object) -> Goldens:
        raw = metadata.get(SELFTEST_KEY)
        if raw is None:
            raise EdgecnnError(f"the file carries no golden inputs ({SELFTEST_KEY} metadata): export it again with this edgecnn", where)
        try:
            payload = json.loads(raw)
            shape = tuple(int(size) for size in payload["shape"])
            images = np.frombuffer(base64.b64decode(payload["images"]), dtype=np.uint8).reshape(shape)
            probabilities = np.asarray(payload["probabilities"], dtype=np.float32)
            bound = payload["max_abs_diff"]
            return cls(images, probabilities, None if bound is None else float(bound), str(payload["basis"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgecnnError(f"the file's {SELFTEST_KEY} metadata is malformed: {type(exc).__name__}: {exc}", where) from None


def golden_indices(reference: Reference, image_bytes: int) -> np.ndarray:
    """Confident, correctly classified test images, one class after another, as many as GOLDEN_BYTES allows (1 to 8)."""
    count = int(np.clip(GOLDEN_BYTES // max(1, image_bytes), 1, GOLDEN_MAX))
    ranked = np.sort(reference.probabilities, axis=1)
    margin = ranked[:, -1] - (ranked[:, -2] if ranked.shape[1] > 1 else 0.0)
    predicted = reference.probabilities.argmax(axis=1)
    confident = np.flatnonzero((predicted == reference.labels) & (margin >= GOLDEN_MARGIN))
    if len(confident) == 0:
        confident = np.argsort(-margin)[:count]
    chosen: list[int] = []
    for rank in range(count):
        for label in np.unique(reference.labels[confident]):
            of_class = confident[reference.labels[confident] == label]
            if rank < len(of_class) and len(chosen) < count:
                chosen.append(int(of_class[rank]))
    return np.asarray(sorted(chosen), dtype=np.int64)
