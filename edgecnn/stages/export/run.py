"""Export run: convert every selected row into a staging folder, publish them together, merge the manifest.

A run that fails midway leaves the previous artifacts and manifest untouched. A derived precision (fp16, int8 ONNX)
is converted from its base row; when the base was not requested it is converted for it, recorded in the derived
artifact's details and in the result, and not published. A converter that refuses the model costs only its own rows
(and the rows derived from them): they are recorded as failed with the converter's one-line reason, the others are
published, and the command exits 1.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgecnn import __version__
from edgecnn.core.artifact_details import ArtifactDetails, DerivedFrom
from edgecnn.core.data import Dataset
from edgecnn.core.errors import ConversionRefused, converter_refusal
from edgecnn.core.files import atomic_path, ensure_output_dir, sha256_file
from edgecnn.core.layers import check_layer_names, keras_layer_names
from edgecnn.core.manifest import (
    ArtifactEntry,
    ArtifactFormat,
    FailedArtifact,
    ModelEntry,
    Precision,
    TensorSpec,
    check_one_model,
    update_manifest,
)
from edgecnn.core.provenance import library_versions, utc_now
from edgecnn.core.reference import Reference, golden_indices, stored_sample, write_reference
from edgecnn.measure.thresholds import QUANTIZED
from edgecnn.stages.export.artifacts import FORMATS, ArtifactSpec, ExportOptions, select_artifacts, spec_named
from edgecnn.stages.export.bounds import parity_bounds
from edgecnn.stages.export.inputs import Converted, ExportInputs, converter_for
from edgecnn.stages.export.search import SearchResult, Validation, search, validation_given, validation_split
from edgecnn.stages.export.source import SourceModel, load_source_model, resolve_model_path

STAGING_PREFIX = ".export-staging-"  # + the exporting process's id

@dataclass(frozen=True)
class ExportResult:
    """The manifest written, the model entry and the artifacts published by this run."""

    manifest_path: Path
    model: ModelEntry
    artifacts: tuple[ArtifactEntry, ...]
    seconds: float
    unpublished_bases: tuple[str, ...] = ()  # rows converted only as the base of a requested one
    searches: dict[str, SearchResult] = field(default_factory=dict)  # --max-drop: the trail per int8 artifact
    failed: tuple[FailedArtifact, ...] = ()  # rows a converter refused, with its reason (the command exits 1)


def export(options: ExportOptions, progress: Callable[[str], None] | None = None) -> ExportResult:
    started = time.perf_counter()
    specs = select_artifacts(options)
    options.check_quantization(specs)
    options.describe.check()
    model_path = resolve_model_path(options)
    check_one_model(options.out, model_path.name, options.replace)
    out = ensure_output_dir(options.out)
    source = load_source_model(options, model_path)
    check_layer_names(options.keep_float or (), keras_layer_names(source.keras_model), "--keep-float")
    check_layer_names(options.keep_int16, keras_layer_names(source.keras_model), "--keep-int16")
    check_layer_names(options.keep_dynamic, keras_layer_names(source.keras_model), "--keep-dynamic")
    model_entry = source.entry
    remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        validation = None
        if source.validation_data is not None:
            validation = validation_given(source.validation_data, source.dataset)
        elif options.max_drop is not None:
            validation = validation_split(source.dataset.x_train, source.dataset.y_train, source.holdout, options.seed)
        calibration = calibration_images(options, source, validation.indices if validation is not None else None)
        inputs = ExportInputs(source.keras_model, model_entry, options, staging, calibration, model_metadata(model_entry))
        reference = keras_reference(inputs, source.dataset, options.seed)
        bounds = parity_bounds(source.keras_model, reference.images, reference.probabilities, model_entry.description)
        goldens = golden_indices(reference, int(np.prod(reference.images.shape[1:])))
        inputs = replace(inputs, goldens=(reference.images[goldens], reference.probabilities[goldens]), bounds=bounds)
        staged, searches, refused = convert_all(specs, inputs, progress or (lambda name: None), validation)
        bundle_model(model_path, out)
        entries = [publish(spec, staged[spec.name], out, model_entry) for spec in specs if spec.name in staged]
        failed = [FailedArtifact(spec.name, spec.format, spec.precision, refused[spec.name], utc_now()) for spec in specs if spec.name in refused]
        model_entry = replace(model_entry, reference=write_reference(out, reference, source.dataset.describe(), model_entry.sha256, bounds))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = update_manifest(out, model_entry, entries, failed)
    bases = tuple(name for name in staged if name not in {spec.name for spec in specs})
    return ExportResult(manifest.path, model_entry, tuple(entries), time.perf_counter() - started, bases, searches, tuple(failed))


def keras_reference(inputs: ExportInputs, dataset: Dataset, seed: int) -> Reference:
    """The Keras model's probabilities on the test split (or the sample of it that is stored), once per export: verify
    and selftest judge every artifact against these, on the workstation and on the device alike."""
    indices = stored_sample(len(dataset.y_test), int(np.prod(dataset.x_test.shape[1:])), seed)
    images = dataset.x_test[indices]
    return Reference(images, dataset.y_test[indices], inputs.keras_probabilities(images), indices)


def remove_stale_staging(out: Path) -> None:
    """Staging folders of exports that were killed mid-way: named after their process, removed once it is gone
    (a folder of a live export, here or in another process, is left alone)."""
    for folder in out.glob(f"{STAGING_PREFIX}*"):
        owner = folder.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
        if folder.is_dir() and not (owner.isdigit() and process_alive(int(owner))):
            shutil.rmtree(folder, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def convert_all(
    specs: list[ArtifactSpec], inputs: ExportInputs, progress: Callable[[str], None], validation: Validation | None = None
) -> tuple[dict[str, Converted], dict[str, SearchResult], dict[str, str]]:
    """Each requested row, bases first; a base not requested is converted once for its derived rows. With --max-drop
    an int8 row is searched for (stages/export/search.py), starting from its first conversion. Returns the staged
    files, the searches, and the rows a converter refused with its reason (a row whose base was refused is refused too)."""
    staged: dict[str, Converted] = {}
    searches: dict[str, SearchResult] = {}
    refused: dict[str, str] = {}
    requested = {spec.name for spec in specs}
    for spec in sorted(specs, key=lambda item: item.base is not None):
        base = None
        if spec.base is not None:
            if spec.base not in staged and spec.base not in refused:
                attempt(spec_named(spec.base), inputs, None, staged, refused)
            if spec.base in refused:
                refused[spec.name] = f"not converted: its base {spec.base} was refused ({refused[spec.base]})"
                continue
            base = staged[spec.base].path
        progress(spec.name)
        if not attempt(spec, inputs, base, staged, refused):
            continue
        converted = staged[spec.name]
        if validation is not None and inputs.options.max_drop is not None and spec.precision is Precision.INT8:
            converted, searches[spec.name] = search(spec, inputs, base, converted, validation, convert_one, inputs.options.max_drop,
                                                    QUANTIZED.min_agreement or 0.0)
        if spec.base is not None:
            converted = replace(converted, details=replace(converted.details, derived_from=DerivedFrom(spec.base, spec.base in requested)))
        staged[spec.name] = converted
    return staged, searches, refused


def attempt(spec: ArtifactSpec, inputs: ExportInputs, base: Path | None, staged: dict[str, Converted], refused: dict[str, str]) -> bool:
    """Convert one row into `staged`, or record the converter's refusal in `refused`; a user error still stops the run."""
    try:
        staged[spec.name] = convert_one(spec, inputs, base)
    except ConversionRefused as exc:
        refused[spec.name] = exc.what
        return False
    return True


def convert_one(spec: ArtifactSpec, inputs: ExportInputs, base: Path | None) -> Converted:
    started = time.perf_counter()
    with converter_refusal(f"{spec.format.value} export of {spec.name}"):
        converted = converter_for(spec.format).convert(spec, inputs, base)
    return replace(converted, seconds=time.perf_counter() - started)


def publish(spec: ArtifactSpec, staged: Converted, out: Path, model_entry: ModelEntry) -> ArtifactEntry:
    """Move a staged file into place (atomic rename within the folder) and describe it for the manifest."""
    destination = out / spec.filename(model_entry.stem)
    staged.path.replace(destination)
    for extra in staged.extras:
        extra.replace(out / extra.name)
    inputs, outputs, facts = describe_artifact(spec, destination, model_entry)
    return ArtifactEntry(
        name=spec.name,
        path=destination.name,
        format=spec.format,
        precision=spec.precision,
        input=inputs,
        output=outputs,
        bytes=destination.stat().st_size,
        sha256=sha256_file(destination),
        source_model_sha256=model_entry.sha256,
        converter=converter_versions(spec.format),
        export_seconds=round(staged.seconds, 3),
        created=utc_now(),
        details=staged.details.with_runtime_facts(facts),
    )


def bundle_model(model_path: Path, out: Path) -> None:
    """Copy a model from outside the output folder in, so the folder is self-contained and manifest paths stay inside."""
    bundled = Path(out) / Path(model_path).name
    if not bundled.exists() or not bundled.samefile(model_path):
        with atomic_path(bundled) as temp:
            shutil.copyfile(model_path, temp)


def calibration_images(options: ExportOptions, source: SourceModel, excluded: np.ndarray | None = None) -> np.ndarray:
    """A seeded random subset of the user's training images (uint8, in the model's size and color), none of the
    `excluded` ones (the --max-drop search's validation images)."""
    dataset = source.dataset
    pool = np.arange(len(dataset.x_train)) if excluded is None else np.setdiff1d(np.arange(len(dataset.x_train)), excluded)
    rng = np.random.default_rng(options.seed)
    count = min(options.calibration_images, len(pool))
    return dataset.x_train[np.sort(pool[rng.choice(len(pool), size=count, replace=False)])]


def model_metadata(model_entry: ModelEntry) -> dict[str, str]:
    """What every exported file carries about itself (ONNX metadata_props, the TFLite metadata table)."""
    return model_entry.description.metadata() | {
        "model_name": model_entry.stem,
        "source_model_sha256": model_entry.sha256,
        "edgecnn_version": __version__,
        "keras_test_accuracy": "" if model_entry.test_accuracy is None else f"{model_entry.test_accuracy:.4f}",
        "data_source": model_entry.data.spec,
    }


def converter_versions(artifact_format: ArtifactFormat) -> dict[str, str]:
    return library_versions(FORMATS[artifact_format].packages)


def describe_artifact(spec: ArtifactSpec, path: Path, model_entry: ModelEntry) -> tuple[TensorSpec, TensorSpec, ArtifactDetails]:
    """Read the input/output contract back from the file itself, as a runtime will see it, and what else it reads there."""
    from edgecnn.runners import open_runner

    description = model_entry.description
    runner = open_runner(spec.format, path, description=description)
    inputs, outputs = runner.input_spec(), runner.output_spec()
    meaning, layout = description.input_text(), "NHWC"
    if spec.uint8_input:
        meaning = f"raw uint8 pixels 0-255; the graph computes {description.scaling_text()}"
        layout = "NHW" if description.channels == 1 else "NHWC"
    if inputs.scale is not None:
        meaning = f"quantized: q = round(x / scale) + zero_point, where x is the float input: {meaning}"
    return replace(inputs, meaning=meaning, layout=layout), replace(outputs, meaning=description.output_text()), runner.file_facts()
