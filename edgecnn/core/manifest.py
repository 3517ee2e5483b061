"""`exports/manifest.json`: the contract between stages. Export writes it; verify, bench and predict read it.

The `model` entry holds the model's description (input size and scaling, classes, output kind, preprocessing) and
the data request it was trained or calibrated on; every artifact entry says what the file is and how to feed it
(input name, shape, dtype, quantization), so no later stage re-derives either. Paths are relative to the manifest
and must stay inside its folder. One folder holds one model's artifacts.

Schema 2 added the description; a schema-1 manifest (MNIST only, before it) is refused with what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from edgecnn.core.artifact import MANIFEST_FILENAME, ArtifactFormat, TensorSpec
from edgecnn.core.artifact_details import ArtifactDetails
from edgecnn.core.data_record import DataRecord, DataRequest, DataSummary
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError, IntegrityError
from edgecnn.core.files import read_json, sha256_file, write_json_atomic
from edgecnn.core.records import decode, encode, first_paragraph, json_schema

SCHEMA_VERSION = 2
LOCK_TIMEOUT_SECONDS = 120


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"


@dataclass(frozen=True)
class DerivedBound:
    """A |Δp| bound derived from this model at export: `max_abs_diff` allowed, from what a faithful execution in that
    precision `measured` on `images` reference images, and how (`basis`)."""

    max_abs_diff: float
    measured: float
    images: int
    basis: str


@dataclass(frozen=True)
class ParityBounds:
    """What verify and selftest judge this model's files by, stored beside the reference so a device judges the same
    way without TensorFlow: the fp16 and fp32 |Δp| bounds, and the Keras margin above which a top-1 flip counts as damage."""

    fp16: DerivedBound
    decided_margin: float
    fp32: DerivedBound | None = None  # None: stored before the fp32 bound was derived (the fixed 1e-4 applies)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ParityBounds:
        return cls(DerivedBound(**raw["fp16"]), float(raw["decided_margin"]), DerivedBound(**raw["fp32"]) if raw.get("fp32") else None)


@dataclass(frozen=True)
class ReferenceRecord:
    """The manifest's note of the stored reference: which file, which model and data it came from, and how much of the
    test split it holds."""

    path: str
    sha256: str
    images: int
    model_sha256: str
    data: DataSummary  # the data it was cut from (source, shape, classes, sizes, sha256)
    bounds: ParityBounds | None = None  # derived from this model at export (None: written before bounds were derived)

    @property
    def test_size(self) -> int:
        return self.data.test_size

    @property
    def complete(self) -> bool:
        return self.images == self.test_size

    def to_dict(self) -> dict[str, Any]:
        return dict(encode(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReferenceRecord:
        return decode(cls, raw)


@dataclass(frozen=True)
class ModelEntry:
    path: str
    sha256: str
    test_accuracy: float | None
    data: DataRecord  # the data it was trained (train.json) or calibrated on
    description: ModelDescription
    reference: ReferenceRecord | None = None  # its stored answers on the test split: what verify judges on without TensorFlow

    @property
    def stem(self) -> str:
        """What its artifacts are named after: `my_model.keras` → `my_model.onnx`, `my_model_int8.tflite`, …"""
        return Path(self.path).stem

    def data_request(self, override: str | None = None) -> DataRequest:
        """The data to evaluate on: the user's --data, else the recorded source; in the recorded size and color either way."""
        return self.data.request(override)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"data": self.data.to_dict(), "description": self.description.to_dict(),
                               "reference": self.reference.to_dict() if self.reference else None}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelEntry:
        reference = ReferenceRecord.from_dict(raw["reference"]) if raw.get("reference") else None
        return cls(**raw | {"data": DataRecord.from_dict(raw["data"]), "description": ModelDescription.from_dict(raw["description"]),
                            "reference": reference})


@dataclass(frozen=True)
class ArtifactEntry:
    name: str
    path: str
    format: ArtifactFormat
    precision: Precision
    input: TensorSpec
    output: TensorSpec
    bytes: int
    sha256: str
    source_model_sha256: str
    converter: dict[str, str]
    export_seconds: float
    created: str
    details: ArtifactDetails = ArtifactDetails()  # how it was made (core/artifact_details.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "format": self.format.value,
            "precision": self.precision.value,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "details": encode(self.details),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ArtifactEntry:
        return cls(
            **raw
            | {
                "format": ArtifactFormat(raw["format"]),
                "precision": Precision(raw["precision"]),
                "input": TensorSpec.from_dict(raw["input"]),
                "output": TensorSpec.from_dict(raw["output"]),
                "details": decode(ArtifactDetails, raw.get("details") or {}),
            }
        )


@dataclass(frozen=True)
class FailedArtifact:
    """A file the last export could not make: its row in the format table and the converter's one-line reason. The
    files the other converters made are published beside it."""

    name: str
    format: ArtifactFormat
    precision: Precision
    reason: str
    created: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"format": self.format.value, "precision": self.precision.value}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FailedArtifact:
        return cls(**raw | {"format": ArtifactFormat(raw["format"]), "precision": Precision(raw["precision"])})


@dataclass(frozen=True)
class Manifest:
    folder: Path
    model: ModelEntry | None
    artifacts: tuple[ArtifactEntry, ...]
    failed: tuple[FailedArtifact, ...] = ()

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_FILENAME

    def source_model(self) -> ModelEntry:
        """The Keras model the artifacts came from: what verify and --tune compare with."""
        if self.model is None:
            raise EdgecnnError("manifest has no model entry; re-run edgecnn export", self.path)
        return self.model

    def resolve(self, relative: str) -> Path:
        """The file a manifest path names, refusing any path that leaves the manifest's folder."""
        return inside_folder(self.folder, relative, self.path)

    def artifact(self, name: str) -> ArtifactEntry:
        for entry in self.artifacts:
            if entry.name == name:
                return entry
        known = ", ".join(entry.name for entry in self.artifacts) or "none"
        raise EdgecnnError(f"no artifact named {name!r} in the manifest (known: {known})", self.path)

    def select(self, names: Sequence[str], keep: Callable[[ArtifactEntry], bool] = lambda entry: True) -> list[ArtifactEntry]:
        """The artifacts a command works on: those named (in the order named, each must exist), else every one `keep` keeps."""
        return [self.artifact(name) for name in names] if names else [entry for entry in self.artifacts if keep(entry)]

    def open(self, entry: ArtifactEntry, verify_hash: bool) -> Path:
        """The artifact's file, its bytes checked against the recorded sha256 unless the user opted out."""
        return check_integrity(self, entry) if verify_hash else self.resolve(entry.path)


    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model.to_dict() if self.model else None,
            "artifacts": [entry.to_dict() for entry in self.artifacts],
            "failed": [entry.to_dict() for entry in self.failed],
        }


def inside_folder(folder: Path, relative: str, where: Path) -> Path:
    candidate = Path(relative)
    if candidate.is_absolute():
        raise EdgecnnError(f"path {relative!r} must be relative to the manifest", where)
    root = Path(folder).resolve()
    resolved = (root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise EdgecnnError(f"path {relative!r} points outside the folder of {Path(where).name}", where)
    return resolved


SCHEMA_FILENAME = "manifest.schema.json"  # in the package, beside edgecnn/__init__.py: what apps that read manifest.json validate against


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of manifest.json, from the records' own type hints (core/records.py): the package ships
    it as `edgecnn/manifest.schema.json`, and a test checks that file against this and every manifest the suite writes."""
    definitions: dict[str, Any] = {}
    properties = {
        "schema_version": {"const": SCHEMA_VERSION},
        "model": json_schema(ModelEntry | None, definitions),
        "artifacts": {"type": "array", "items": json_schema(ArtifactEntry, definitions)},
        "failed": {"type": "array", "items": json_schema(FailedArtifact, definitions)},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"edgecnn manifest.json, schema_version {SCHEMA_VERSION}",
        "description": first_paragraph(__doc__ or ""),
        "type": "object",
        "properties": properties,
        "required": ["schema_version", "model", "artifacts"],
        "additionalProperties": False,
        "$defs": dict(sorted(definitions.items())),
    }


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest; every way it can be broken is a one-line user error."""
    path = Path(path)
    raw = read_json(path, "manifest")
    try:
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise EdgecnnError(older_schema(raw.get("schema_version")), path)
        model = ModelEntry.from_dict(raw["model"]) if raw.get("model") else None
        artifacts = tuple(ArtifactEntry.from_dict(entry) for entry in raw["artifacts"])
        failed = tuple(FailedArtifact.from_dict(entry) for entry in raw.get("failed", []))
    except EdgecnnError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise EdgecnnError(f"malformed manifest: {type(exc).__name__}: {exc}", path) from None
    manifest = Manifest(folder=path.parent, model=model, artifacts=artifacts, failed=failed)
    for entry in artifacts:
        manifest.resolve(entry.path)
    if model is not None:
        manifest.resolve(model.path)
        if model.reference is not None:
            manifest.resolve(model.reference.path)
    return manifest


def older_schema(version: object) -> str:
    if isinstance(version, int) and version < SCHEMA_VERSION:
        return (f"manifest schema_version {version} was written by an older edgecnn, before models were described: "
                "run edgecnn export again for this folder (or pipeline) to rewrite it")
    return f"unsupported manifest schema_version {version!r} (this edgecnn reads {SCHEMA_VERSION}): upgrade edgecnn"


def check_one_model(folder: Path, model_path: str, replace_other: bool) -> None:
    """One model per folder: exporting another model into a folder that holds one is refused, unless asked to replace it."""
    path = Path(folder) / MANIFEST_FILENAME
    if replace_other or not path.is_file():
        return
    try:
        current = load_manifest(path).model
    except EdgecnnError:
        return  # an older or broken manifest is rewritten by the export
    if current is not None and current.path != model_path:
        raise EdgecnnError(
            f"{path.parent} holds the artifacts of {current.path}; export {model_path} into another --out, or pass --replace to replace them",
            "--out",
        )


def update_manifest(folder: Path, model: ModelEntry, entries: list[ArtifactEntry], failed: Sequence[FailedArtifact] = ()) -> Manifest:
    """Merge new entries into the manifest under a file lock, so concurrent exports never lose each other's work.

    Entries of another model (or of an earlier version of this one) are dropped and their files removed: a folder
    never mixes models. A row this export failed to make replaces the file of that name, which is removed."""
    from filelock import FileLock, Timeout  # imported here: predict and info never write a manifest

    path = Path(folder) / MANIFEST_FILENAME
    try:
        with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_SECONDS):
            existing, existing_failed = current_artifacts(path)
            replaced = {entry.name for entry in entries} | {row.name for row in failed}
            written = {entry.path for entry in entries}
            stale = [entry for entry in existing if entry.source_model_sha256 != model.sha256 or entry.name in {row.name for row in failed}]
            for entry in stale:
                if entry.path not in written:
                    inside_folder(Path(folder), entry.path, path).unlink(missing_ok=True)
            kept = [entry for entry in existing if entry not in stale and entry.name not in replaced]
            same_model = all(entry.source_model_sha256 == model.sha256 for entry in existing)
            kept_failed = [row for row in existing_failed if same_model and row.name not in replaced]
            manifest = Manifest(folder=Path(folder), model=model, artifacts=tuple(kept) + tuple(entries), failed=tuple(kept_failed) + tuple(failed))
            write_json_atomic(path, manifest.to_dict())
    except Timeout:
        raise EdgecnnError(f"manifest is locked by another edgecnn process for over {LOCK_TIMEOUT_SECONDS} s", path) from None
    return manifest


def current_artifacts(path: Path) -> tuple[tuple[ArtifactEntry, ...], tuple[FailedArtifact, ...]]:
    """The entries and failed rows an export merges with; a manifest of an older schema is replaced whole (its files
    are overwritten)."""
    if not path.exists():
        return (), ()
    raw = read_json(path, "manifest")
    if raw.get("schema_version") != SCHEMA_VERSION:
        return (), ()
    manifest = load_manifest(path)
    return manifest.artifacts, manifest.failed


def check_integrity(manifest: Manifest, entry: ArtifactEntry) -> Path:
    path = manifest.resolve(entry.path)
    if not path.is_file():
        raise IntegrityError(f"artifact {entry.name} is missing", path)
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise IntegrityError(
            f"artifact {entry.name} changed since export: sha256 {actual[:12]}… != manifest {entry.sha256[:12]}…", path
        )
    return path
