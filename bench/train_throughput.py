"""Benchmark: `edgecnn train` throughput against a plain `model.fit` of the same model on the same data.

Usage: python bench/train_throughput.py [--data /usr/share/datasets/fashion-mnist] [--epochs 2]

Both runs train the same architecture with Adam, batch 128, on the same 90% fit split, each in its own process so
neither warms the other. Plain images/s = images x epochs / model.fit wall time (which includes its validation
pass); edgecnn's figure excludes validation, so the fit wall figure is printed for it as well.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN = """
import json, sys, time
from edgecnn.core.data import load_dataset
from edgecnn.stages.train.model import build_model
from edgecnn.stages.train import describe_trained_model, split_validation
dataset = load_dataset(sys.argv[1])
epochs = int(sys.argv[2])
description = describe_trained_model(dataset, None)
x_fit, y_fit, validation = split_validation(dataset, description, 0.1, 0)
import keras
keras.utils.set_random_seed(0)
model = build_model(description.image_shape, description.num_classes, "plain_cnn")
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
started = time.perf_counter()
model.fit(x_fit, y_fit, batch_size=128, epochs=epochs, validation_data=validation, verbose=2)
seconds = time.perf_counter() - started
print(json.dumps({"images": len(x_fit), "fit_seconds": seconds, "images_per_second": len(x_fit) * epochs / seconds}))
"""


def plain_fit(data: str, epochs: int) -> dict:
    completed = subprocess.run([sys.executable, "-c", PLAIN, data, str(epochs)], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def edgecnn_fit(data: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["edgecnn", "train", "--data", data, "--epochs", str(epochs), "--out", out], check=True)
        report = json.loads((Path(out) / "train.json").read_text())
    images = report["data"]["fit_size"]
    return {
        "images": images,
        "fit_seconds": report["fit_seconds"],
        "images_per_second": report["images_per_second"],
        "images_per_second_fit_wall": images * epochs / report["fit_seconds"],
        "test_accuracy": report["test_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    plain = plain_fit(args.data, args.epochs)
    ours = edgecnn_fit(args.data, args.epochs)
    print(f"\n{started}  data={args.data}  epochs={args.epochs}")
    print(f"plain model.fit : {plain['images']:,} images, {plain['fit_seconds']:.1f} s, {plain['images_per_second']:,.0f} images/s")
    print(
        f"edgecnn train   : {ours['images']:,} images, {ours['fit_seconds']:.1f} s, {ours['images_per_second']:,.0f} images/s "
        f"(training only; {ours['images_per_second_fit_wall']:,.0f} images/s over fit wall time), "
        f"test accuracy {ours['test_accuracy']:.2%}"
    )


if __name__ == "__main__":
    main()
