"""Benchmark: training throughput of one process against two `--distribute multi-worker` processes on this machine.

Usage: python bench/multiworker_throughput.py [--data PATH.npz] [--images 6000] [--epochs 5]

Both runs use the same seed and the same global batch (256: 128 per worker x 2, or 256 in one process) on the first
--images training digits, and report training images/s (validation excluded, as train.json counts it) and test
accuracy. On a 2-core machine the two workers share the cores and add gRPC all-reduces, so this shows the overhead,
not a speed-up; on two machines each worker has its own cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgecnn.stages.train.distributed import local_cluster

SHARED_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-offline.npz"


def train_command(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgecnn", "train", "--data", str(data), "--epochs", str(epochs), "--out", str(out), *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_NPZ)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, np.load(args.data, allow_pickle=False) as archive:
        data = Path(folder) / "slice.npz"
        np.savez(data, x_train=archive["x_train"][: args.images], y_train=archive["y_train"][: args.images],
                 x_test=archive["x_test"][:2000], y_test=archive["y_test"][:2000])
        single = Path(folder) / "single"
        subprocess.run(train_command(data, single, args.epochs, "--batch-size", "256"), check=True, capture_output=True)
        workers = Path(folder) / "workers"
        processes = [
            subprocess.Popen(train_command(data, workers, args.epochs, "--distribute", "multi-worker"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "TF_CONFIG": config})
            for config in local_cluster(2)
        ]
        if any(process.wait(timeout=900) for process in processes):
            raise SystemExit("a worker failed")
        print(f"{args.images:,} training digits, {args.epochs} epochs, global batch 256, {os.cpu_count()} cores")
        for name, out in (("1 process", single), ("2 worker processes", workers)):
            report = json.loads((out / "train.json").read_text())
            print(f"  {name:20s} {report['images_per_second']:8,.0f} training images/s   test accuracy {report['test_accuracy']:.2%}")


if __name__ == "__main__":
    main()
