"""Benchmark: ONNX Runtime's quantizer against NNCF's on the same fp32 ONNX files and the same calibration images.

    python bench/quantizers.py [--data ../shared/data/mnist-offline.npz] [--families MobileNetV2,MobileNetV3Small]
                               [--epochs 4] [--out bench/out/quantizers]

Each keras.applications family (bench/zoo.py's table, at its small input size) is trained here on all ten classes of
the data, then exported through edgecnn twice: `export --quantize int8` (ONNX Runtime's quantize_static, edgecnn's
default) and `export --quantize int8 --quantizer nncf`, each with edgecnn's default first candidate (the first
convolution in float) and the 500 calibration images export picks with its seed. Per file: verify's verdict on the
whole test split (issue 22's criteria), accuracy, top-1 agreement with Keras, size against the fp32 file, and batch-1
p50 under ONNX Runtime CPU and OpenVINO CPU, every file of a family interleaved in one `edgecnn bench` run. Prints a
Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_NPZ = REPOSITORY.parent / "shared" / "data" / "mnist-offline.npz"
CLASSES = 10


@dataclass(frozen=True)
class Row:
    family: str
    quantizer: str
    verdict: str
    accuracy: float
    agreement: float
    kilobytes: float
    size_share: float  # of the fp32 file
    ort_p50_us: float | None
    ort_vs_fp32: float | None  # fp32 p50 / this p50: above 1 is faster
    openvino_p50_us: float | None
    openvino_vs_fp32: float | None
    quantize_seconds: float


def trained(family: object, data: str, epochs: int, folder: Path) -> Path:
    """The family's model trained on every class of the data in its size and colour (BatchNormalization's momentum
    0.9: Keras' 0.999 suits ImageNet's millions of steps, not a few hundred)."""
    import keras

    from edgecnn.core.data import DataRequest, load_dataset
    from edgecnn.core.description import Color

    path = folder / "model.keras"
    if path.exists():
        return path
    keras.utils.set_random_seed(0)
    dataset = load_dataset(DataRequest(data, family.size, Color.of_channels(family.channels)))  # type: ignore[attr-defined]
    make = getattr(keras.applications, family.constructor)  # type: ignore[attr-defined]
    model = make(input_shape=(*family.size, family.channels), classes=CLASSES, weights=None, **family.options)  # type: ignore[attr-defined]
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    scale = 1.0 if zoo.scales_itself(model) else 1 / 255
    model.fit(dataset.x_train.astype(np.float32) * scale, dataset.y_train, epochs=epochs, batch_size=64, verbose=0)
    model.save(path)
    return path


def compare(family: object, data: str, epochs: int, out: Path) -> list[Row]:
    from edgecnn.core.description import Color
    from edgecnn.core.manifest import load_manifest
    from edgecnn.runners import RunOptions, RuntimeName
    from edgecnn.stages.bench import BenchOptions, bench
    from edgecnn.stages.export import ExportOptions, FormatChoice, Quantize, Quantizer, export
    from edgecnn.stages.verify import VerifyOptions, verify

    folder = out / family.name  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    keras_path = trained(family, data, epochs, folder)
    files: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    verdicts = {}
    for quantizer in Quantizer:
        target = folder / quantizer.value
        target.mkdir(exist_ok=True)
        common = {"model": keras_path, "data": data, "image_size": family.size, "color": Color.of_channels(family.channels),  # type: ignore[attr-defined]
                  "out": target, "replace": True, "format": FormatChoice.ONNX}
        export(ExportOptions(**common))
        started = time.perf_counter()
        export(ExportOptions(**common, quantize=Quantize.INT8, quantizer=quantizer))
        seconds[quantizer.value] = time.perf_counter() - started
        manifest = load_manifest(target / "manifest.json")
        files.setdefault("fp32", manifest.resolve(manifest.artifact("onnx-fp32").path))
        refused = [row.reason for row in manifest.failed if row.name == "onnx-int8"]
        if refused:  # the quantizer refused the model: a row that says so, nothing to verify or time
            print(f"{family.name}: {quantizer.value} refused: {refused[0]}", flush=True)  # type: ignore[attr-defined]
            continue
        files[quantizer.value] = manifest.resolve(manifest.artifact("onnx-int8").path)
        verified = verify(VerifyOptions(manifest=target / "manifest.json"))
        verdicts |= {("fp32" if result.name == "onnx-fp32" else quantizer.value): result for result in verified.results}
    benched = bench(BenchOptions(models=tuple(files.values()), data=data, batch_sizes=(1,), rounds=5, seconds=0.5, memory=False, out=folder,
                                 run=RunOptions(runtimes=(RuntimeName.ONNXRUNTIME, RuntimeName.OPENVINO), threads=1)))
    p50 = {(Path(result.path).resolve(), result.runtime): result.p50_us for result in benched.results}

    def latency(label: str, runtime: RuntimeName) -> tuple[float | None, float | None]:
        own, fp32 = p50.get((files[label].resolve(), runtime)), p50.get((files["fp32"].resolve(), runtime))
        return own, (fp32 / own if own and fp32 else None)

    fp32_bytes = files["fp32"].stat().st_size
    rows = []
    for label, path in files.items():
        result = verdicts[label]
        rows.append(Row(family.name, "fp32" if label == "fp32" else label, result.status.value, result.accuracy or 0.0,  # type: ignore[attr-defined]
                        result.agreement or 0.0, path.stat().st_size / 1024, path.stat().st_size / fp32_bytes,
                        *latency(label, RuntimeName.ONNXRUNTIME), *latency(label, RuntimeName.OPENVINO), seconds.get(label, 0.0)))
    zoo.release_tensorflow_state()
    return rows


def markdown(rows: list[Row], data: str, epochs: int) -> str:
    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    def micros(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    lines = [f"Data: all {CLASSES} classes of `{data}` in each model's size and colour, {epochs} epochs; 2-core VM, one thread per "
             "session. Verdicts on the whole test split; p50 at batch 1, every file of a family interleaved in one bench run; "
             "\"vs fp32\": the fp32 file's p50 over this file's (above 1x is faster).", "",
             "| family | file | verify | accuracy | agreement | size (KB) | of fp32 | ORT CPU p50 µs | vs fp32 | OpenVINO CPU p50 µs | vs fp32 | quantize (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row.family} | {row.quantizer} | {row.verdict} | {row.accuracy:.2%} | {row.agreement:.2%} | {row.kilobytes:,.0f} | "
                     f"{row.size_share:.0%} | {micros(row.ort_p50_us)} | {ratio(row.ort_vs_fp32)} | {micros(row.openvino_p50_us)} | "
                     f"{ratio(row.openvino_vs_fp32)} | {row.quantize_seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    arguments = zoo.family_parser(__doc__.splitlines()[0], str(SHARED_NPZ), "MobileNetV2,MobileNetV3Small,MobileNet-gray", 4,
                                  REPOSITORY / "bench" / "out" / "quantizers").parse_args()
    rows: list[Row] = []
    for name in arguments.families.split(","):
        family = next(family for family in zoo.FAMILIES if family.name == name)
        started = time.perf_counter()
        rows += compare(family, arguments.data, arguments.epochs, arguments.out)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    print(markdown(rows, arguments.data, arguments.epochs))


sys.path.insert(0, str(REPOSITORY / "bench"))
import zoo  # noqa: E402  (bench/zoo.py: the families and their helpers)

if __name__ == "__main__":
    main()
