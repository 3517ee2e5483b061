"""Predict stage: classify image files with an exported ONNX or TFLite model — never importing TensorFlow.

This is what an app does at start-up, so it stays light: numpy, Pillow and one runtime (ONNX Runtime or LiteRT).
When the model sits beside a manifest that lists it, its sha256 is checked first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.images import load_digit
from edgecnn.manifest import MANIFEST_FILENAME, IntegrityError, load_manifest
from edgecnn.runners import Runner, SessionConfig, artifact_format_of, open_runner
from edgecnn.runners.onnxrt import check_provider_usable


@dataclass(frozen=True)
class PredictOptions:
    images: tuple[Path, ...]
    model: Path = Path("exports/mnist_cnn.onnx")
    top_k: int = 3
    verify_hash: bool = True
    session: SessionConfig = SessionConfig()  # ONNX files only; strict about the provider like verify and bench


@dataclass(frozen=True)
class Prediction:
    path: str
    digit: int
    top: tuple[tuple[int, float], ...]

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "digit": self.digit, "top": [{"digit": d, "probability": p} for d, p in self.top]}


def predict(options: PredictOptions) -> list[Prediction]:
    if not options.images:
        raise EdgecnnError("name at least one image file", "IMAGE")
    if not 1 <= options.top_k <= 10:
        raise EdgecnnError(f"top-k must be between 1 and 10, got {options.top_k}", "--top-k")
    runner = open_model(Path(options.model), options.verify_hash, options.session)
    digits = np.stack([load_digit(Path(path)) for path in options.images])
    probabilities = runner.infer(digits)
    return [
        Prediction(
            path=str(path),
            digit=int(row.argmax()),
            top=tuple((int(index), float(row[index])) for index in np.argsort(-row, kind="stable")[: options.top_k]),
        )
        for path, row in zip(options.images, probabilities, strict=True)
    ]


def open_model(path: Path, verify_hash: bool, session: SessionConfig = SessionConfig()) -> Runner:
    artifact_format = artifact_format_of(path)
    if verify_hash:
        check_against_manifest(path)
    check_provider_usable(session)
    return open_runner(artifact_format, path, session)


def check_against_manifest(path: Path) -> None:
    """If a manifest beside the model lists it, the bytes must match what export recorded."""
    manifest_path = path.parent / MANIFEST_FILENAME
    if not manifest_path.is_file():
        return
    from edgecnn.files import sha256_file

    manifest = load_manifest(manifest_path)
    for entry in manifest.artifacts:
        if manifest.resolve(entry.path) == path.resolve():
            if sha256_file(path) != entry.sha256:
                raise IntegrityError(f"model changed since export (sha256 differs from {manifest_path})", path)
            return
