"""Verify stage: does every exported artifact still behave like the Keras model, on the whole test split?

Each artifact's bytes are checked against the manifest first (a changed file is reported as changed, not verified).
Then its predictions are compared with Keras': accuracy and its change in points, top-1 agreement, |Δp|, the test
indices whose class flipped, and McNemar's exact p-value for the accuracy difference. Every failed check is
collected as a typed `CheckFailure`; nothing stops at the first one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact_details import OptimizerFinding
from edgecnn.core.corruptions import Corruption, corrupted
from edgecnn.core.data import Dataset, check_model_fits, load_dataset
from edgecnn.core.description import ModelDescription, OutputKind
from edgecnn.core.errors import EdgecnnError, IntegrityError
from edgecnn.core.files import atomic_path, ensure_output_dir, sha256_file, write_json_atomic
from edgecnn.core.manifest import ArtifactEntry, Manifest, ModelEntry, ParityBounds, Precision, load_manifest
from edgecnn.core.plots import drawn
from edgecnn.core.provenance import THIS_MACHINE, Int8Sums, hosted, int8_dot_product, library_versions, this_machine, utc_now
from edgecnn.core.records import encode
from edgecnn.core.reference import load_reference
from edgecnn.core.verdict import DECIDED_MARGIN, Criterion, Decision, decided_images, overall, paired_criteria
from edgecnn.measure.thresholds import Thresholds, thresholds_for
from edgecnn.runners import Arithmetic, Backend, KerasRunner, RunOptions, RuntimeName, check_usable, infer_in_batches, open_runner, plugin, runtime_packages, runtimes_for

REPORT_FILENAME = "verify.json"
CONFUSION_FILENAME = "verify_confusion.png"
CORRUPTIONS_FILENAME = "verify_corruptions.png"
CACHE_FOLDER = ".cache"


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"  # the test split is too small to decide a criterion at 95%: never a PASS
    CHANGED = "CHANGED"
    ERROR = "ERROR"


STATUS_OF = {Decision.PASS: Status.PASS, Decision.FAIL: Status.FAIL, Decision.INCONCLUSIVE: Status.INCONCLUSIVE}


@dataclass(frozen=True)
class CheckFailure:
    check: str
    value: float | str
    limit: float | str

    def describe(self) -> str:
        return f"{self.check}: {self.value} (limit {self.limit})"


@dataclass(frozen=True)
class ParityResult:
    name: str
    path: str
    precision: Precision
    sha256: str
    status: Status
    thresholds: Thresholds
    failures: tuple[CheckFailure, ...] = ()
    accuracy: float | None = None
    delta_points: float | None = None
    agreement: float | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    mcnemar_p: float | None = None
    flipped: tuple[int, ...] = ()
    decided_images: int | None = None  # images where Keras' top-1 leads by more than the decided margin
    near_tie_flips: int | None = None  # flips on the other images: reported, not damage
    criteria: tuple[Criterion, ...] = ()  # each criterion's estimate, 95% bounds and decision (core/verdict.py)
    runtime: RuntimeName | None = None
    provider_used: Backend | None = None
    arithmetic: Arithmetic | None = None
    optimizer: OptimizerFinding | None = None  # an fp32 FAIL rerun with graph optimizations off (runners/onnxrt_passes.py)
    saturating_kernels: bool = False  # a file that missed, with 8-bit weights, on ONNX Runtime's CPU kernels of an x86 CPU without VNNI
    confusion: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self) | {
            "precision": self.precision.value,
            "status": self.status.value,
            "passed": self.passed,
            "flipped": list(self.flipped),
            "runtime": self.runtime.value if self.runtime else None,
            "provider_used": self.provider_used.value if self.provider_used else None,
            "provider_label": self.provider_used.label if self.provider_used else None,
            "arithmetic": self.arithmetic.value if self.arithmetic else None,
            "criteria": [asdict(criterion) | {"decision": criterion.decision.value} for criterion in self.criteria],
        }
        payload.pop("confusion")
        return payload


@dataclass(frozen=True)
class VerifyOptions:
    manifest: Path = Path("exports/manifest.json")
    data: str | None = None
    artifacts: tuple[str, ...] = ()
    overrides: Thresholds = Thresholds()
    verify_hash: bool = True
    run: RunOptions = RunOptions()  # each artifact is judged on every runtime here that reads it (the CLI takes one)
    corruptions: tuple[Corruption, ...] = ()  # also judge every file on these corrupted copies of the judged images
    seed: int = 0  # the corruptions' noise and turning directions


@dataclass(frozen=True)
class CorruptedSplit:
    """Every file judged against Keras on one corrupted copy of the judged images, with the plain split's criteria."""

    corruption: Corruption
    keras_accuracy: float
    results: tuple[ParityResult, ...]

    def to_dict(self) -> dict[str, Any]:
        def row(result: ParityResult) -> dict[str, Any]:
            flips = len(result.flipped)
            return {key: value for key, value in result.to_dict().items() if key != "flipped"} | {"flipped_count": flips}

        return {"corruption": self.corruption.to_dict(), "keras_accuracy": self.keras_accuracy, "artifacts": [row(result) for result in self.results]}


@dataclass(frozen=True)
class VerifyResult:
    report_path: Path
    confusion_path: Path | None  # None on a device install without matplotlib
    keras_accuracy: float
    results: tuple[ParityResult, ...]
    test_size: int
    description: ModelDescription
    model_name: str
    corrupted: tuple[CorruptedSplit, ...] = ()
    corruptions_chart: Path | None = None

    @property
    def every_result(self) -> tuple[ParityResult, ...]:
        """The plain split's verdicts, then every corrupted copy's."""
        return self.results + tuple(result for split in self.corrupted for result in split.results)

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.every_result)

    @property
    def exit_code(self) -> int:
        """0 when every file PASSes (on the plain split, and on each corrupted copy when asked); 1 when any is FAIL,
        CHANGED or could not run; 3 when the rest PASS but some verdict is INCONCLUSIVE (too few images to decide it)."""
        return verdict_exit_code(self.every_result)


def verdict_exit_code(results: tuple[ParityResult, ...]) -> int:
    statuses = {result.status for result in results}
    if statuses <= {Status.PASS}:
        return 0
    return 3 if statuses <= {Status.PASS, Status.INCONCLUSIVE} else 1


@dataclass(frozen=True)
class JudgedSet:
    """What artifacts are judged on: test images, their labels and the Keras model's probabilities, each image's index
    in the test split, and where they came from (the stored reference, or the data loaded and Keras run here)."""

    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    indices: np.ndarray
    data: dict[str, Any]  # as verify.json reports it; `spec` names the source
    bounds: ParityBounds | None = None  # derived at export and stored beside the reference (None: an older export)

    @property
    def source(self) -> str:
        return str(self.data["spec"])

    @property
    def decided_margin(self) -> float:
        return self.bounds.decided_margin if self.bounds is not None else DECIDED_MARGIN


def uses_stored_reference(model: ModelEntry, data: str | None) -> bool:
    """Without --data, the answers export stored are the reference: always when they cover the whole test split, and
    on a device install (no TensorFlow to recompute them) when they are a sample of a large one."""
    record = model.reference
    return data is None and record is not None and (record.complete or importlib.util.find_spec("tensorflow") is None)


def judged_set(manifest: Manifest, data: str | None, verify_hash: bool) -> JudgedSet:
    model = manifest.source_model()
    if uses_stored_reference(model, data):
        record = model.reference
        assert record is not None
        model_path = manifest.resolve(model.path)
        if verify_hash and model_path.is_file() and sha256_file(model_path) != model.sha256:
            raise IntegrityError("Keras model changed since export (sha256 differs from the manifest)", model_path)
        stored = load_reference(manifest.resolve(record.path), record, verify_hash)
        judged_on = f"the Keras answers export stored in {record.path}: {record.images:,} of the {record.test_size:,} test images"
        return JudgedSet(stored.images, stored.labels, stored.probabilities, stored.indices, encode(record.data) | {"judged_on": judged_on}, record.bounds)
    dataset = load_dataset(model.data_request(data))
    check_model_fits(model.description, dataset, model.path)
    probabilities = model.description.probabilities(keras_reference(manifest, dataset, verify_hash))
    bounds = model.reference.bounds if model.reference is not None else None
    return JudgedSet(dataset.x_test, dataset.y_test, probabilities, np.arange(len(dataset.y_test)), encode(dataset.describe()), bounds)


def verify(options: VerifyOptions) -> VerifyResult:
    manifest = load_manifest(options.manifest)
    model = manifest.source_model()
    entries = [entry for entry in manifest.select(options.artifacts) if runtimes_for(entry.format, options.run)]
    if not entries:
        asked = f" that {', '.join(name.value for name in options.run.runtimes)} can run" if options.run.runtimes else ""
        raise EdgecnnError(f"manifest lists no artifacts to verify{asked}", manifest.path)
    check_overrides(options.overrides)
    check_usable(options.run, tuple(dict.fromkeys(entry.format for entry in entries)))
    if options.corruptions and importlib.util.find_spec("tensorflow") is None:
        raise EdgecnnError("judging corrupted copies runs the Keras model on them: it needs TensorFlow (the train extra); "
                           "run it where the model was exported", "--corruptions")
    description = model.description
    judged = judged_set(manifest, options.data, options.verify_hash)
    keras = keras_runner(manifest, options.verify_hash)
    copies = tuple(corrupted_set(manifest, judged, corruption, options.seed, keras) for corruption in options.corruptions)
    judged_runs = [verify_artifact(manifest, entry, judged, copies, options, runtime)
                   for entry in entries for runtime in runtimes_for(entry.format, options.run)]
    results = tuple(clean for clean, _ in judged_runs)
    corrupted = tuple(CorruptedSplit(copy.corruption, accuracy_of(copy.set), tuple(runs[index] for _, runs in judged_runs))
                      for index, copy in enumerate(copies))
    keras_accuracy = accuracy_of(judged)
    out = ensure_output_dir(manifest.folder, "--manifest")
    confusion_path = drawn(lambda path: write_confusion_chart(judged, keras_accuracy, results, path, description.class_names),
                           out / CONFUSION_FILENAME, "the confusion chart")
    corruptions_chart = drawn(lambda path: write_corruptions_chart(keras_accuracy, results, corrupted, path), out / CORRUPTIONS_FILENAME,
                              "the corruptions chart") if corrupted else None
    verified = VerifyResult(out / REPORT_FILENAME, confusion_path, keras_accuracy, results, int(len(judged.labels)), description, model.stem,
                            corrupted, corruptions_chart)
    machine, versions = this_machine(), library_versions(runtime_packages())
    write_json_atomic(
        verified.report_path,
        {
            "passed": verified.passed,
            "created": utc_now(),
            "manifest": str(manifest.path),
            "keras": {"path": model.path, "sha256": model.sha256, "accuracy": keras_accuracy},
            "model": {"name": model.stem, "classes": list(description.class_names), "output": description.output.value},
            "compared": compared_text(description),
            "data": judged.data,
            "runtimes": {name.value: plugin(name).describe(plugin(name).config(options.run))
                         for name in dict.fromkeys(result.runtime for result in results if result.runtime is not None)},
            "artifacts": hosted([result.to_dict() for result in results], THIS_MACHINE, machine, versions),
            **({"corruptions": corruptions_record(corrupted, options)} if corrupted else {}),
            "machine": machine.to_dict(),
            "versions": versions,
        },
    )
    return verified


def accuracy_of(judged: JudgedSet) -> float:
    return float(np.mean(judged.probabilities.argmax(axis=1) == judged.labels))


@dataclass(frozen=True)
class CorruptedCopy:
    corruption: Corruption
    set: JudgedSet  # the corrupted images, their labels and Keras' probabilities on them


def corrupted_set(manifest: Manifest, judged: JudgedSet, corruption: Corruption, seed: int, keras: Callable[[], KerasRunner]) -> CorruptedCopy:
    """The judged images corrupted (seeded), with the Keras model's own answers on them: the reference each file is
    held to is Keras on the same corrupted picture, so a file is judged on drift, not on the corruption itself."""
    images = corrupted(judged.images, corruption, seed)
    fingerprint = hashlib.sha256(images.tobytes()).hexdigest()
    answers = manifest.source_model().description.probabilities(keras_outputs(manifest, images, fingerprint, keras))
    data = judged.data | {"corruption": corruption.to_dict(), "seed": seed}
    return CorruptedCopy(corruption, replace(judged, images=images, probabilities=answers, data=data))


def corruptions_record(corrupted: tuple[CorruptedSplit, ...], options: VerifyOptions) -> dict[str, Any]:
    from PIL import __version__ as pillow_version

    return {"seed": options.seed, "severity": corrupted[0].corruption.severity, "library": f"Pillow {pillow_version} and numpy {np.__version__}",
            "judged_like": "the plain split: the same criteria and bounds, against the Keras model's answers on the same corrupted images",
            "splits": [split.to_dict() for split in corrupted]}


def compared_text(description: ModelDescription) -> str:
    """What verify compares, so its bounds keep their meaning for a logits model too."""
    if description.output is OutputKind.LOGITS:
        return "probabilities: softmax of the logits the model and each artifact give"
    return "probabilities, as the model gives them"


def check_overrides(overrides: Thresholds) -> None:
    if overrides.min_agreement is not None and not 0.0 <= overrides.min_agreement <= 1.0:
        raise EdgecnnError(f"must be a fraction in [0, 1], got {overrides.min_agreement}", "--min-agreement")
    if overrides.atol is not None and not overrides.atol >= 0:
        raise EdgecnnError(f"must be non-negative, got {overrides.atol}", "--atol")
    if overrides.max_drop_points is not None and not overrides.max_drop_points >= 0:
        raise EdgecnnError(f"must be non-negative points, got {overrides.max_drop_points}", "--max-drop")


def keras_reference(manifest: Manifest, dataset: Dataset, verify_hash: bool) -> np.ndarray:
    """Keras outputs on the test split, cached per model sha256 + data sha256 so re-verifying skips TensorFlow."""
    return keras_outputs(manifest, dataset.x_test, dataset.fingerprint(), keras_runner(manifest, verify_hash))


def keras_runner(manifest: Manifest, verify_hash: bool) -> Callable[[], KerasRunner]:
    """The Keras model, its sha256 checked and the model opened on first use only: an answer in the cache needs
    neither, and every image set after the first (the corrupted copies) reuses the one loaded model."""
    @functools.cache
    def opened() -> KerasRunner:
        model = manifest.source_model()
        model_path = manifest.resolve(model.path)
        if verify_hash and model_path.is_file() and sha256_file(model_path) != model.sha256:
            raise IntegrityError("Keras model changed since export (sha256 differs from the manifest)", model_path)
        return KerasRunner(model_path, model.description)

    return opened


def keras_outputs(manifest: Manifest, images: np.ndarray, fingerprint: str, keras: Callable[[], KerasRunner]) -> np.ndarray:
    """The Keras model's outputs on `images`, cached in the export folder per model sha256 + the images' fingerprint."""
    model = manifest.source_model()
    cache = manifest.folder / CACHE_FOLDER / f"keras-{model.sha256[:16]}-{fingerprint[:16]}.npy"
    if cache.is_file():
        try:
            cached = np.load(cache, allow_pickle=False)
            if cached.shape == (len(images), model.description.num_classes):
                return cached
        except (OSError, ValueError):
            pass  # a broken cache is recomputed
    outputs = infer_in_batches(keras(), images)
    ensure_output_dir(cache.parent, "--manifest")
    with atomic_path(cache) as temp, open(temp, "wb") as handle:
        np.save(handle, outputs)
    return outputs


def on_saturating_kernels(entry: ArtifactEntry, ran: ParityResult) -> bool:
    """Whether an int8 file ONNX Runtime's quantizer gave 8-bit weights ran on ONNX Runtime's CPU provider of an x86 CPU without VNNI, whose
    16-bit pair sums saturate (`provenance.int8_dot_product`): a miss there may be the CPU's, and 7-bit weights
    (`export --reduce-range`) avoid it."""
    quantization = entry.details.quantization
    return (entry.precision is Precision.INT8 and quantization is not None
            and not quantization.reduce_range and (quantization.quantizer or "").startswith("onnxruntime")
            and ran.provider_used is not None and not ran.provider_used.on_device and ran.runtime is RuntimeName.ONNXRUNTIME
            and int8_dot_product() is Int8Sums.SATURATING)


def verify_artifact(manifest: Manifest, entry: ArtifactEntry, judged: JudgedSet, copies: tuple[CorruptedCopy, ...], options: VerifyOptions,
                    runtime: RuntimeName) -> tuple[ParityResult, tuple[ParityResult, ...]]:
    """The file judged on the plain split, and on each corrupted copy (one session for all)."""
    base = ParityResult(entry.name, entry.path, entry.precision, entry.sha256, Status.PASS,
                        thresholds_for(entry.precision, Arithmetic.FP32, judged.bounds).overridden(options.overrides), runtime=runtime)
    try:
        path = manifest.open(entry, options.verify_hash)
    except IntegrityError as exc:
        changed = replace(base, status=Status.CHANGED, failures=(CheckFailure("sha256", exc.what, "matches manifest"),))
        return changed, tuple(changed for _ in copies)
    try:
        runner = open_runner(entry.format, path, options.run, manifest.source_model().description, runtime)
        try:
            outputs = [runner.description.probabilities(infer_in_batches(runner, judged_on.images)) for judged_on in (judged, *(copy.set for copy in copies))]
            ran = replace(base, thresholds=thresholds_for(entry.precision, runner.arithmetic, judged.bounds).overridden(options.overrides),
                          provider_used=runner.runtime, arithmetic=runner.arithmetic)
        finally:
            runner.close()
    except EdgecnnError as exc:
        failed = replace(base, status=Status.ERROR, failures=(CheckFailure("run", exc.what, "runs"),))
        return failed, tuple(failed for _ in copies)
    probabilities = outputs[0]
    compared = compare(ran, probabilities, judged.probabilities, judged.labels, judged.decided_margin)
    if compared.status is Status.FAIL and entry.precision is Precision.FP32 and compared.thresholds.atol is not None:
        compared = with_optimizer_finding(compared, path, probabilities, judged, manifest, runtime)
    if compared.status is not Status.PASS and on_saturating_kernels(entry, ran):
        compared = replace(compared, saturating_kernels=True)
    on_copies = tuple(compare(ran, copied, copy.set.probabilities, copy.set.labels, judged.decided_margin)
                      for copy, copied in zip(copies, outputs[1:], strict=True))
    return replace(compared, flipped=tuple(int(index) for index in judged.indices[list(compared.flipped)])), on_copies


OPTIMIZER_PROBE_IMAGES = 64  # the images where the file differs most: enough to show a wrong pass, quick to bisect over


def with_optimizer_finding(result: ParityResult, path: Path, probabilities: np.ndarray, judged: JudgedSet, manifest: Manifest,
                           runtime: RuntimeName) -> ParityResult:
    """An fp32 file outside its bound, rerun with the runtime's graph optimizations off: when that run is right, the
    reason says so and names the pass (a correct file broken by the runtime, not a wrong file)."""
    worst = np.argsort(-np.abs(probabilities.astype(np.float64) - judged.probabilities).max(axis=1))[:OPTIMIZER_PROBE_IMAGES]
    finding = plugin(runtime).diagnose_optimizer(path, judged.images[worst], judged.probabilities[worst].astype(np.float64),
                                                 manifest.source_model().description, result.thresholds.atol or 0.0, manifest.folder)
    if finding is None:
        return result
    failure = CheckFailure("runtime_optimizer", finding.describe(), "the same answers with the runtime's optimizations on and off")
    return replace(result, failures=(*result.failures, failure), optimizer=finding)


def compare(base: ParityResult, probabilities: np.ndarray, reference: np.ndarray, labels: np.ndarray,
            decided_margin: float = DECIDED_MARGIN) -> ParityResult:
    """The statistics of one artifact against the reference, each criterion decided (core/verdict.py): max |Δp| against
    its bound, top-1 agreement on the images whose Keras top-1 is decided and the paired accuracy change, each at
    one-sided 95% against its budget. The status is FAIL if any criterion fails, INCONCLUSIVE if any cannot be decided."""
    predicted, expected = probabilities.argmax(axis=1), reference.argmax(axis=1)
    artifact_right, keras_right = predicted == labels, expected == labels
    accuracy = float(artifact_right.mean())
    delta_points = 100.0 * (accuracy - float(keras_right.mean()))
    agreeing = predicted == expected
    difference = np.abs(probabilities.astype(np.float64) - reference.astype(np.float64))
    only_keras = int(np.sum(keras_right & ~artifact_right))
    only_artifact = int(np.sum(~keras_right & artifact_right))
    decided = decided_images(reference, decided_margin)
    thresholds = base.thresholds
    criteria: list[Criterion] = []
    failures: list[CheckFailure] = []
    if thresholds.atol is not None:
        largest = float(difference.max())
        within = largest <= thresholds.atol
        criteria.append(Criterion("max_abs_diff", largest, largest, largest, thresholds.atol, len(labels), Decision.PASS if within else Decision.FAIL))
        if not within:
            failures.append(CheckFailure("max_abs_diff", largest, thresholds.atol))
    statistical = paired_criteria(probabilities, reference, labels, thresholds.min_agreement, thresholds.max_drop_points, decided_margin)
    failures += [CheckFailure(criterion.name, criterion.describe(), criterion.budget) for criterion in statistical if criterion.decision is not Decision.PASS]
    criteria += statistical
    return replace(
        base,
        status=STATUS_OF[overall(criteria)] if criteria else Status.PASS,
        failures=tuple(failures),
        accuracy=accuracy,
        delta_points=round(delta_points, 4),
        agreement=float(agreeing.mean()),
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        mcnemar_p=mcnemar_exact_p(only_keras, only_artifact),
        flipped=tuple(int(index) for index in np.flatnonzero(~agreeing)),
        decided_images=int(decided.sum()),
        near_tie_flips=int(np.sum(~agreeing & ~decided)),
        criteria=tuple(criteria),
        confusion=confusion_matrix(labels, predicted, reference.shape[1]),
    )


def mcnemar_exact_p(only_keras: int, only_artifact: int) -> float:
    """McNemar's exact test: the two-sided binomial p-value of the discordant pairs under p = 1/2 (as SciPy's binomtest
    gives it), in integer arithmetic, so verify on a device install needs no SciPy."""
    discordant = only_keras + only_artifact
    tail = sum(math.comb(discordant, count) for count in range(min(only_keras, only_artifact) + 1))
    return min(1.0, 2 * tail / 2**discordant)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def write_confusion_chart(judged: JudgedSet, keras_accuracy: float, results: tuple[ParityResult, ...], path: Path, class_names: tuple[str, ...]) -> None:
    from edgecnn.core.plots import plot_confusion_matrices

    reference = judged.probabilities
    matrices = {f"Keras ({keras_accuracy:.2%})": confusion_matrix(judged.labels, reference.argmax(axis=1), reference.shape[1])}
    worst = worst_artifact(results)
    if worst is not None and worst.confusion is not None:
        matrices[f"worst artifact: {worst.name} ({worst.accuracy:.2%})"] = worst.confusion
    plot_confusion_matrices(matrices, path, class_names)


def worst_artifact(results: tuple[ParityResult, ...]) -> ParityResult | None:
    """Lowest accuracy; ties go to the lower agreement with Keras, then to the larger max |Δp|."""
    measured = [result for result in results if result.accuracy is not None]
    return min(measured, key=lambda result: (result.accuracy or 0.0, result.agreement or 0.0, -(result.max_abs_diff or 0.0)), default=None)


def write_corruptions_chart(keras_accuracy: float, results: tuple[ParityResult, ...], corrupted: tuple[CorruptedSplit, ...], path: Path) -> None:
    from edgecnn.core.plots import plot_corruptions

    labels = ["none", *(split.corruption.label() for split in corrupted)]
    keras = [keras_accuracy, *(split.keras_accuracy for split in corrupted)]
    files = {f"{result.name} ({result.runtime.value if result.runtime else '-'})": index for index, result in enumerate(results)}
    accuracy = {name: [results[index].accuracy, *(split.results[index].accuracy for split in corrupted)] for name, index in files.items()}
    agreement = {name: [results[index].agreement, *(split.results[index].agreement for split in corrupted)] for name, index in files.items()}
    plot_corruptions(labels, keras, accuracy, agreement, path, f"severity {corrupted[0].corruption.severity}")
