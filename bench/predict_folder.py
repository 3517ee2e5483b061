"""Benchmark: `edgecnn predict FOLDER --output FILE` on a folder of 28x28 PNG digits, wall-clock with start-up.

Usage: python bench/predict_folder.py --model exports/mnist_cnn.onnx [--images 2000] [--data PATH.npz] [--runs 3]

Writes the first --images official test digits as PNGs into a temp folder, runs the installed CLI in a fresh
process (start-up, decoding, preprocessing, inference and the atomic .jsonl write all counted), and prints the
best wall time and images/s. Then profiles the same work in-process: decode, MNIST preprocessing and inference.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-offline.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("exports/mnist_cnn.onnx"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=SHARED_NPZ)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with np.load(args.data, allow_pickle=False) as archive:
        digits = archive["x_test"][: args.images]
    with tempfile.TemporaryDirectory() as folder:
        for index, digit in enumerate(digits):
            Image.fromarray(digit).save(Path(folder) / f"{index:05d}.png")
        output = Path(folder) / "predictions.jsonl"
        walls = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edgecnn", "predict", folder, "--model", str(args.model), "--output", str(output)], check=True,
                           capture_output=True)
            walls.append(time.perf_counter() - started)
        best = min(walls)
        print(f"edgecnn predict on {len(digits):,} PNGs: best of {args.runs} {best:.2f} s wall-clock (start-up included), "
              f"{len(digits) / best:,.0f} images/s")
        paths = sorted(Path(folder).glob("*.png"))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edgecnn", "predict", str(paths[0]), "--model", str(args.model)], check=True, capture_output=True)
        profile(paths, args.model, start_up=time.perf_counter() - started)


def profile(paths: list[Path], model: Path, start_up: float) -> None:
    """Where the time goes: start-up (a one-image run: interpreter, imports, session), then per stage, in-process and
    single-threaded: decode, MNIST preprocessing, inference (the CLI overlaps decoding with inference)."""
    from edgecnn.core.images import load_grayscale, to_mnist_digit
    from edgecnn.core.manifest import ArtifactFormat
    from edgecnn.runners import open_runner

    started = time.perf_counter()
    gray = [load_grayscale(path) for path in paths]
    decode = time.perf_counter() - started
    started = time.perf_counter()
    digits = np.stack([to_mnist_digit(image, path) for image, path in zip(gray, paths, strict=True)])
    preprocess = time.perf_counter() - started
    runner = open_runner(ArtifactFormat.ONNX, model)
    runner.input_spec()
    digits = digits[..., np.newaxis]  # (N, 28, 28, 1): the model's pixels
    started = time.perf_counter()
    for start in range(0, len(digits), 256):
        runner.infer(digits[start : start + 256])
    inference = time.perf_counter() - started
    total = start_up + decode + preprocess + inference
    for name, seconds in (("start-up", start_up), ("decode", decode), ("preprocess", preprocess), ("inference", inference)):
        print(f"  {name:11s} {seconds * 1000:7.1f} ms  {seconds / total:5.1%}")


if __name__ == "__main__":
    main()
