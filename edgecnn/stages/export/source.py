"""The model being exported, and its description: read from the train.json beside a model `train` made, detected
from a user's `.keras` file otherwise — then checked against the data before any conversion starts.

Detection, for a user's model: the input size and channels from its single NHWC input; raw 0-255 pixels when a
`Rescaling` or `Normalization` layer sits at its input (as in `keras.applications` models built with their
preprocessing), else pixel / 255; probabilities when it ends in a softmax or its rows sum to 1 on real images, else
logits; class names from the data; the digit recipe only for MNIST's digits. `--input-scaling`, `--output-kind` and
`--preprocess` override what was detected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.data import DataRequest, Dataset, check_model_fits, load_dataset
from edgecnn.core.description import InputScaling, ModelDescription, OutputKind
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.files import read_json, sha256_file
from edgecnn.core.manifest import ModelEntry
from edgecnn.core.train_report import REPORT_FILENAME, TrainReport
from edgecnn.stages.export.artifacts import ExportOptions

OUTPUT_PROBE_IMAGES = 64
log = logging.getLogger("edgecnn")


@dataclass(frozen=True)
class SourceModel:
    path: Path
    keras_model: Any
    entry: ModelEntry
    dataset: Dataset  # in the model's size and color: calibration images come from it
    holdout: tuple[float, int] | None = None  # train's validation fraction and seed, when train made this model on this data
    validation_data: Dataset | None = None  # --validation-data, in the model's size and color


def resolve_model_path(options: ExportOptions) -> Path:
    """--model, else the model `train` wrote into --out (named in its train.json)."""
    if options.model is not None:
        return Path(options.model)
    report = Path(options.out) / REPORT_FILENAME
    if not report.is_file():
        raise EdgecnnError(f"no --model given and no {REPORT_FILENAME} in {options.out} to name one: pass --model my_model.keras", "--model")
    return Path(options.out) / TrainReport.from_json(report).model.path


def load_source_model(options: ExportOptions, path: Path) -> SourceModel:
    """Load the model, describe it and load its data; a model/data mismatch stops here, before any conversion."""
    from edgecnn.core.backend import load_model

    keras_model = load_model(path)
    sha = sha256_file(path)
    report = trained_here(path, sha)
    if report is not None:
        recorded = report.data.request(options.data)
        dataset = load_dataset(replace(recorded, image_size=options.image_size or recorded.image_size, color=options.color or recorded.color))
        description = options.describe.applied(report.description)
        same_data = dataset.fingerprint() == report.data.sha256
        data = report.data.record() if same_data else dataset.record()
        accuracy = report.test_accuracy if same_data else None  # measured on other data: not this data's
    else:
        dataset = load_dataset(DataRequest(options.data, options.image_size, options.color))
        description = options.describe.applied(detect_description(keras_model, dataset, path, options.image_size))
        data, accuracy = dataset.record(), None
    check_model_fits(description, dataset, path.name)
    entry = ModelEntry(path=path.name, sha256=sha, test_accuracy=accuracy, data=data, description=description)
    same_split = report is not None and report.data.sha256 == dataset.fingerprint()
    holdout = (report.hyperparameters.validation_split, report.seed) if report is not None and same_split else None
    validation_data = None
    if options.validation_data is not None:
        validation_data = load_dataset(replace(dataset.request, spec=options.validation_data))  # --data's size and color
        check_model_fits(description, validation_data, path.name, "--validation-data")
    return SourceModel(path, keras_model, entry, dataset, holdout, validation_data)


def trained_here(path: Path, sha: str) -> TrainReport | None:
    """The train.json beside the model when it describes this very file (same sha256), else None. A report written
    before models were described has no description: that model is described like a user's."""
    report_path = path.parent / REPORT_FILENAME
    if not report_path.is_file():
        return None
    raw = read_json(report_path, "training report")
    if raw.get("model", {}).get("sha256") != sha or "description" not in raw:
        return None
    return TrainReport.from_raw(raw, report_path)


def detect_description(keras_model: Any, dataset: Dataset, path: Path, image_size: tuple[int, int] | None = None) -> ModelDescription:
    height, width, channels, classes = model_io(keras_model, path)
    if height is None or width is None:
        height, width = image_size or dataset.image_shape[:2]
        log.warning("%s takes any image size; exporting it for %dx%d, %s", path.name, height, width,
                    "from --image-size" if image_size else "the data's size (--image-size chooses another)")
    class_names = dataset.class_names if dataset.num_classes == classes else tuple(str(index) for index in range(classes))
    description = ModelDescription(
        height=height, width=width, channels=channels, scaling=detect_scaling(keras_model), class_names=class_names,
        output=OutputKind.PROBABILITIES, preprocess=dataset.preprocess,
    )
    if dataset.image_shape != description.image_shape:
        return description  # the mismatch is reported by the caller; probing would fail on the wrong shape
    return replace(description, output=detect_output(keras_model, description, dataset.x_train[:OUTPUT_PROBE_IMAGES]))


def model_io(keras_model: Any, path: Path) -> tuple[int | None, int | None, int, int]:
    """(height, width, channels, classes) of a model with one NHWC image input and one (N, K) output; height and width
    are None for a model built for any size (`input_shape=(None, None, 3)`)."""
    inputs, outputs = list(keras_model.inputs), list(keras_model.outputs)
    if len(inputs) != 1 or len(outputs) != 1:
        raise EdgecnnError(f"edgecnn takes a model with one image input and one (N, K) output; this one has {len(inputs)} inputs and "
                           f"{len(outputs)} outputs", path)
    shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(shape) != 4 or shape[3] not in (1, 3) or (shape[1] is None) != (shape[2] is None):
        raise EdgecnnError(f"the model's input has shape {shape}; edgecnn needs an NHWC image input (None, H, W, 1|3), H and W both "
                           "fixed or both None (build it with input_shape=(H, W, C))", path)
    if len(out_shape) != 2 or out_shape[1] is None or out_shape[1] < 2:
        raise EdgecnnError(f"the model's output has shape {out_shape}; edgecnn needs (None, K) class scores with K >= 2", path)
    return (None if shape[1] is None else int(shape[1])), (None if shape[2] is None else int(shape[2])), int(shape[3]), int(out_shape[1])


def first_layer(keras_model: Any) -> Any:
    """The first layer that computes something (nested models are entered)."""
    from edgecnn.core.backend import import_keras

    keras = import_keras()
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            return first_layer(layer)
        return layer
    return None


def detect_scaling(keras_model: Any) -> InputScaling:
    """Raw 0-255 pixels when the model rescales them itself at its input; pixel / 255 otherwise."""
    from edgecnn.core.backend import import_keras

    keras = import_keras()
    return InputScaling.RAW if isinstance(first_layer(keras_model), (keras.layers.Rescaling, keras.layers.Normalization)) else InputScaling.UNIT


def detect_output(keras_model: Any, description: ModelDescription, images: np.ndarray) -> OutputKind:
    """Probabilities when the last layer is a softmax, or when the outputs on real images are rows that sum to 1."""
    last = keras_model.layers[-1]
    if type(last).__name__ == "Softmax" or getattr(getattr(last, "activation", None), "__name__", "") == "softmax":
        return OutputKind.PROBABILITIES
    outputs = np.asarray(keras_model(description.model_input(images), training=False), dtype=np.float64)
    sums_to_one = bool(np.all(outputs >= -1e-6) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))
    return OutputKind.PROBABILITIES if sums_to_one else OutputKind.LOGITS
