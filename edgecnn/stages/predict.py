"""Predict stage: classify image files, folders and globs with an exported ONNX or TFLite model — never importing
TensorFlow. Each picture gets the preprocessing the model's description records (read from the file's own metadata):
the digit recipe for digit models, color conversion and resize otherwise; logits become probabilities.

This is what an app does, so it stays light: numpy, Pillow and one runtime (ONNX Runtime or LiteRT). Pictures are
decoded in forked processes while this one classifies the batch before, so decoding uses the cores and overlaps
inference. An unreadable image becomes a row with its error and the run goes on (exit 1 at the end), unless
--strict. When the model sits beside a manifest that lists it, its sha256 is checked first.
"""

from __future__ import annotations

import glob
import io
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.core.artifact import MANIFEST_FILENAME
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError, IntegrityError
from edgecnn.core.files import read_json, sha256_file, write_bytes_atomic
from edgecnn.core.images import IMAGE_SUFFIXES, SUFFIXES_TEXT, load_image
from edgecnn.runners import Runner, RunOptions, artifact_format_of, check_usable, open_runner

if TYPE_CHECKING:
    from concurrent.futures import Executor

INPUT_SUFFIXES = IMAGE_SUFFIXES | {".npy"}
OUTPUT_SUFFIXES = (".jsonl", ".csv")
GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class PredictOptions:
    images: tuple[Path | str, ...]  # files, folders (searched recursively) and glob patterns
    model: Path | None = None  # any exported .onnx/.tflite file; None: the onnx-fp32 file of exports/manifest.json
    top_k: int = 3
    verify_hash: bool = True
    run: RunOptions = RunOptions()  # one runtime; strict about the provider like verify and bench
    output: Path | None = None
    strict: bool = False
    batch_size: int = 256

    def check(self) -> None:
        if not self.images:
            raise EdgecnnError("name at least one image file, folder or glob", "IMAGES")
        if self.top_k < 1:
            raise EdgecnnError(f"top-k must be at least 1, got {self.top_k}", "--top-k")
        if self.batch_size < 1:
            raise EdgecnnError(f"batch size must be at least 1, got {self.batch_size}", "--batch-size")
        if self.output is not None and Path(self.output).suffix.lower() not in OUTPUT_SUFFIXES:
            raise EdgecnnError("output must end in .jsonl or .csv", self.output)
        if self.output is not None and not Path(self.output).parent.is_dir():
            raise EdgecnnError("the output's folder does not exist", self.output)


@dataclass(frozen=True)
class Prediction:
    path: str
    probabilities: tuple[float, ...] = ()
    error: str = ""
    index: int | None = None  # the predicted class (numpy's argmax: the first of equal maxima); None for an unreadable image

    def top(self, k: int) -> tuple[tuple[int, float], ...]:
        if not self.probabilities:
            return ()
        order = np.argsort(-np.asarray(self.probabilities), kind="stable")[:k]
        return tuple((int(index), self.probabilities[index]) for index in order)

    def to_dict(self, top_k: int, class_names: Sequence[str]) -> dict[str, object]:
        if self.error:
            return {"path": self.path, "label": None, "index": None, "error": self.error}
        top = [{"label": class_names[index], "index": index, "probability": p} for index, p in self.top(top_k)]
        best = self.index
        assert best is not None
        return {"path": self.path, "label": class_names[best], "index": best, "top": top}


@dataclass(frozen=True)
class PredictResult:
    predictions: tuple[Prediction, ...]
    output: Path | None
    description: ModelDescription

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.description.class_names

    @property
    def failed(self) -> int:
        return sum(1 for item in self.predictions if item.error)


def predict(options: PredictOptions, progress: Callable[[int, int], None] = lambda done, total: None) -> PredictResult:
    """Classify every picture with the model, prepared as its description says; an unreadable one becomes a row with
    its error unless strict."""
    options.check()
    # the model first: a bad --model is reported before the images. No spinning: ORT's idle threads would busy-wait
    # on the cores decoding the next batch
    runner = open_model(options.model or default_model(), options.verify_hash, replace(options.run, spinning=False))
    description = runner.description
    paths = collect_images(options.images)
    predictions: list[Prediction] = []
    for batch in classified(runner, list(chunks(paths, options.batch_size)), partial(decode_all, description=description, strict=options.strict)):
        predictions += batch
        progress(len(predictions), len(paths))
    if options.output is not None:
        write_predictions(predictions, Path(options.output), description.class_names)
    return PredictResult(tuple(predictions), options.output, description)


MAX_DECODERS = 8  # beyond this, decoding outruns what one runtime classifies


def classified(runner: Runner, batches: list[list[str]], decode_batch: Callable[[list[str]], list[np.ndarray | str]]) -> Iterator[list[Prediction]]:
    """Each batch's predictions, in order. The runtime classifies batch k here while other processes decode the batches
    after it: decoding is Python (Pillow's file parsing, the digit recipe), which in a thread would hold the GIL this
    thread needs between runtime calls. A single batch has nothing to overlap and starts nothing."""
    if len(batches) == 1:
        yield classify(runner, batches[0], decode_batch(batches[0]))
        return
    decoders, workers = decoding_pool(len(batches))
    upcoming = iter(batches)
    with decoders:
        ahead = deque((batch, decoders.submit(decode_batch, batch)) for batch in islice(upcoming, 2 * workers))
        while ahead:
            batch, decoding = ahead.popleft()
            following = next(upcoming, None)
            if following is not None:  # a bounded read-ahead: a million pictures are never all in memory
                ahead.append((following, decoders.submit(decode_batch, following)))
            yield classify(runner, batch, decoding.result())


def decoding_pool(batches: int) -> tuple[Executor, int]:
    """Processes forked from this one (they inherit its imports, so they start in milliseconds; Ctrl-C is left to this
    one), one per core up to MAX_DECODERS. Forked decoders measured no slower than one decoding thread on 2 cores and
    faster on 16 (2,000 PNGs: bench/RESULTS.md). Off Linux, where forking a process that has loaded system frameworks
    is unsafe (macOS) or impossible (Windows), one thread decodes ahead."""
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if not sys.platform.startswith("linux"):
        return ThreadPoolExecutor(max_workers=1), 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(cores, batches, MAX_DECODERS)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=signal.signal,
                               initargs=(signal.SIGINT, signal.SIG_IGN)), workers


def decode_all(paths: list[str], description: ModelDescription, strict: bool) -> list[np.ndarray | str]:
    """The model's pixels for each picture, or (unless strict) the one-line reason it could not be read."""
    return [decode(path, description, strict) for path in paths]


DEFAULT_MANIFEST = Path("exports") / MANIFEST_FILENAME


def default_model() -> Path:
    """The fp32 ONNX file that the last export into ./exports wrote."""
    from edgecnn.core.manifest import load_manifest

    if not DEFAULT_MANIFEST.is_file():
        raise EdgecnnError(f"no --model given and no {DEFAULT_MANIFEST} to take one from: pass --model FILE.onnx|.tflite", "--model")
    manifest = load_manifest(DEFAULT_MANIFEST)
    return manifest.resolve(manifest.artifact("onnx-fp32").path)


def collect_images(specs: Sequence[Path | str]) -> list[str]:
    """Files as named; folders searched recursively for image files; glob patterns expanded. Each group sorted. Paths
    stay strings: a Path per picture costs a parse, and predict reads thousands."""
    paths: list[str] = []
    for spec in map(str, specs):
        if os.path.isdir(spec):
            found = sorted(images_under(spec))
            if not found:
                raise EdgecnnError(f"folder holds no pictures ({SUFFIXES_TEXT}) or .npy arrays", spec)
        elif GLOB_CHARACTERS & set(spec) and not os.path.exists(spec):
            found = sorted(match for match in glob.glob(spec, recursive=True) if os.path.isfile(match))
            if not found:
                raise EdgecnnError("no files match this pattern", spec)
        else:
            found = [spec]
        paths += found
    return paths


def images_under(folder: str) -> Iterator[str]:
    """Image files under `folder`, recursively, by os.walk's directory entries (no extra stat per file)."""
    for root, _, files in os.walk(folder):
        for name in files:
            if os.path.splitext(name)[1].lower() in INPUT_SUFFIXES:
                yield os.path.join(root, name)


def chunks(paths: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def classify(runner: Runner, paths: list[str], decoded: list[np.ndarray | str]) -> list[Prediction]:
    """Classify the images that decoded in one call; the others stay rows with their error."""
    good = [index for index, item in enumerate(decoded) if isinstance(item, np.ndarray)]
    rows: dict[int, Prediction] = {}
    if good:
        probabilities = runner.probabilities(np.stack([decoded[index] for index in good]))
        best = probabilities.argmax(axis=1).tolist()
        rows = {index: Prediction(paths[index], tuple(row), index=label)
                for index, row, label in zip(good, probabilities.tolist(), best, strict=True)}
    return [rows.get(index) or Prediction(path, error=str(decoded[index])) for index, path in enumerate(paths)]


def decode(path: str, description: ModelDescription, strict: bool) -> np.ndarray | str:
    """The model's pixels for this picture, or (unless strict) the one-line reason it could not be read."""
    try:
        return load_image(path, description)
    except EdgecnnError as exc:
        if strict:
            raise
        return exc.what


def write_predictions(predictions: Sequence[Prediction], path: Path, class_names: Sequence[str]) -> None:
    """One record per image, written atomically: .jsonl objects or .csv rows (path, label, one probability per class
    p0…pK-1 in the model's class order, error)."""
    def record(item: Prediction) -> dict[str, Any]:
        index = item.index
        return {"path": item.path, "label": None if index is None else class_names[index], "index": index,
                "probabilities": list(item.probabilities) or None} | ({"error": item.error} if item.error else {})

    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(record(item)) + "\n" for item in predictions)
    else:
        import csv  # only for .csv output: predict's start-up is counted

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label", *(f"p{index}" for index in range(len(class_names))), "error"])
        for item in predictions:
            probabilities = [f"{p:.6g}" for p in item.probabilities] if item.probabilities else [""] * len(class_names)
            writer.writerow([item.path, record(item)["label"] or "", *probabilities, item.error])
        text = buffer.getvalue()
    write_bytes_atomic(path, text.encode())


def open_model(path: Path, verify_hash: bool, run: RunOptions = RunOptions()) -> Runner:
    artifact_format = artifact_format_of(path)
    if verify_hash:
        check_against_manifest(path)
    check_usable(run, (artifact_format,))
    return open_runner(artifact_format, path, run)


def check_against_manifest(path: Path) -> None:
    """If a manifest beside the model lists it, the bytes must match what export recorded."""
    manifest_path = path.parent / MANIFEST_FILENAME
    if not manifest_path.is_file():
        return
    recorded = listed_sha256(manifest_path, path)
    if recorded is not None and sha256_file(path) != recorded:
        raise IntegrityError(f"model changed since export (sha256 differs from {manifest_path})", path)


def listed_sha256(manifest_path: Path, model: Path) -> str | None:
    """The sha256 the manifest records for `model` (None: it does not list it), read from its artifact list alone:
    building the whole manifest (model, data and reference records) would cost predict's start-up more than the hash.
    A manifest whose list cannot be read so is loaded whole, which says what is wrong with it."""
    raw = read_json(manifest_path, "manifest")
    target = model.resolve()
    try:
        return next((str(entry["sha256"]) for entry in raw["artifacts"] if (manifest_path.parent / entry["path"]).resolve() == target), None)
    except (KeyError, TypeError, AttributeError):
        from edgecnn.core.manifest import load_manifest

        manifest = load_manifest(manifest_path)
        return next((entry.sha256 for entry in manifest.artifacts if manifest.resolve(entry.path) == target), None)
