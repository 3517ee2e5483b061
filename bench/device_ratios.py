"""Benchmark: edgecnn's start-up and folder prediction on a device install, as ratios to what a hand-written script costs.

Usage: python bench/device_ratios.py [--manifest exports/manifest.json] [--model FILE.onnx] [--venv bench/out/device-venv]
       [--images 2000] [--rounds 15]

Both sides run as whole processes of one device-install venv (`pip install .`, no TensorFlow; built on first use),
interleaved round by round so that the machine's drift hits both alike; the figures are medians over the rounds.

- start-up: `edgecnn predict ONE.png --model M --json` against the floor `python -c "import onnxruntime, numpy,
  PIL.Image"`. Target: at most 1.5x.
- folder: `edgecnn predict DIR --output x.jsonl` on --images PNGs against a 12-line loop (PIL decode in one thread, one
  ORT session, batches of 256, JSONL out). Target: at most 1.0x (moonshot 0.7x: edgecnn decodes in parallel).

The model is the manifest's onnx-fp32 file unless --model names another; the pictures are the test images export stored
beside it (the manifest's stored reference), in the model's own size and colour, so any exported model can be measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPOSITORY = Path(__file__).resolve().parents[1]
START_UP_TARGET = 1.5
FOLDER_TARGET = 1.0
HAND_WRITTEN_LOOP = '''
import json, sys
from pathlib import Path
import numpy as np, onnxruntime as ort
from PIL import Image
model, folder, output = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
source = session.get_inputs()[0]
gray, raw = len(source.shape) == 3 or source.shape[-1] == 1, source.type == "tensor(uint8)"  # NHW / NHWC; raw pixels or /255
paths = sorted(Path(folder).glob("*.png"))
with open(output, "w") as out:
    for start in range(0, len(paths), 256):
        chunk = paths[start : start + 256]
        pixels = np.stack([np.asarray(Image.open(path).convert("L" if gray else "RGB")) for path in chunk]).reshape(len(chunk), *source.shape[1:])
        for path, row in zip(chunk, session.run(None, {source.name: pixels if raw else pixels.astype(np.float32) / 255})[0]):
            out.write(json.dumps({"path": str(path), "label": int(row.argmax()), "probability": float(row.max())}) + "\\n")
'''


def device_venv(folder: Path) -> Path:
    """The venv's python, after `pip install .` of this checkout (the device install: no TensorFlow)."""
    python = folder / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPOSITORY)], check=True)
    probe = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True)
    if probe.returncode == 0:
        raise SystemExit(f"{folder} has TensorFlow: not a device install")
    return python


def wall(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {finished.stderr.strip()}")
    return elapsed


def interleaved(commands: dict[str, list[str]], rounds: int, cwd: Path) -> dict[str, float]:
    """Median wall time of each command, the commands alternating within every round (after one untimed warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        wall(command, cwd)
    for round_index in range(rounds):
        order = list(commands.items())
        for name, command in order if round_index % 2 == 0 else reversed(order):
            times[name].append(wall(command, cwd))
    return {name: statistics.median(values) for name, values in times.items()}


def recorded(model: Path | None, manifest: Path | None) -> tuple[Path, Path]:
    """The model to measure and the stored test images, as the export's manifest records them."""
    manifest = manifest or (model.parent if model else Path("exports")) / "manifest.json"
    raw = json.loads(manifest.read_text())
    model = model or manifest.parent / next(entry["path"] for entry in raw["artifacts"] if entry["name"] == "onnx-fp32")
    return model.resolve(), manifest.parent / raw["model"]["reference"]["path"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="Default: the one beside --model, else exports/manifest.json.")
    parser.add_argument("--model", type=Path, help="Default: the manifest's onnx-fp32 file.")
    parser.add_argument("--venv", type=Path, default=REPOSITORY / "bench" / "out" / "device-venv")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    python = device_venv(args.venv)
    edgecnn = [str(python.parent / "edgecnn")]  # the command users type; run from a scratch folder, so no checkout shadows the install
    model, reference = recorded(args.model, args.manifest)
    with np.load(reference, allow_pickle=False) as stored:
        images = stored["images"]
    images = np.resize(images, (args.images, *images.shape[1:]))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "pictures"
        folder.mkdir()
        for index, image in enumerate(images):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{index:05d}.png")
        scratch_folder = Path(scratch)
        loop = scratch_folder / "loop.py"
        loop.write_text(HAND_WRITTEN_LOOP)
        one = folder / "00000.png"
        start_up = interleaved({"floor": [str(python), "-c", "import onnxruntime, numpy, PIL.Image"],
                                "predict": [*edgecnn, "predict", str(one), "--model", str(model), "--json"]}, args.rounds, scratch_folder)
        folder_run = interleaved({"loop": [str(python), str(loop), str(model), str(folder), str(Path(scratch) / "loop.jsonl")],
                                  "predict": [*edgecnn, "predict", str(folder), "--model", str(model), "--output",
                                              str(Path(scratch) / "x.jsonl")]}, args.rounds, scratch_folder)
    print(f"device venv: {args.venv} ({python}); model {model}; medians of {args.rounds} interleaved rounds")
    ratio = start_up["predict"] / start_up["floor"]
    print(f"start-up: predict one image {start_up['predict']:.3f} s, floor (import onnxruntime, numpy, PIL.Image) {start_up['floor']:.3f} s: "
          f"{ratio:.2f}x (target <= {START_UP_TARGET}x) {'PASS' if ratio <= START_UP_TARGET else 'MISS'}")
    ratio = folder_run["predict"] / folder_run["loop"]
    print(f"folder: predict {args.images:,} PNGs --output x.jsonl {folder_run['predict']:.3f} s, hand-written loop {folder_run['loop']:.3f} s: "
          f"{ratio:.2f}x (target <= {FOLDER_TARGET}x, moonshot 0.7x) {'PASS' if ratio <= FOLDER_TARGET else 'MISS'}")


if __name__ == "__main__":
    main()
