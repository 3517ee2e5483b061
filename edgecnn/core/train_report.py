"""`train.json` as a typed value: what training did, read by the CLI, export (accuracy, data source) and the report.

Like the manifest types, it converts to and from JSON at the edge only; enums stay enums in between.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from edgecnn.core.data_record import DataRecord, DataRequest, SourceKind
from edgecnn.core.description import Color, ModelDescription
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.files import read_json

MAX_FLAT_SIDE = 14  # the reference CNN adds conv + pool stages until its feature map is at most this wide


@dataclass(frozen=True)
class ModelConfig:
    conv_filters: tuple[int, ...] = (32, 32)
    kernel_size: int = 3
    pool_size: int = 2
    dense_units: int = 128
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    extra_stage_filters: int = 64

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        known = {key: value for key, value in raw.items() if key in cls.__dataclass_fields__}
        return cls(**known | {"conv_filters": tuple(known.get("conv_filters", cls.conv_filters))})

    def smallest_side(self) -> int:
        """The smallest image side the network takes: its valid convolutions and one pool must leave a pixel."""
        return len(self.conv_filters) * (self.kernel_size - 1) + self.pool_size

    def extra_stages(self, height: int, width: int) -> int:
        side = (max(height, width) - len(self.conv_filters) * (self.kernel_size - 1)) // self.pool_size
        stages = 0
        while side > MAX_FLAT_SIDE:
            side //= self.pool_size
            stages += 1
        return stages


@dataclass(frozen=True)
class TrainedModel:
    path: str
    sha256: str
    params: int


@dataclass(frozen=True)
class DataSummary:
    """The data source (as `DataSource` records it), the split sizes and the arrays' sha256."""

    spec: str
    kind: SourceKind
    location: str
    note: str
    train_size: int
    test_size: int
    sha256: str
    fit_size: int
    validation_size: int
    image_size: tuple[int, int] | None = None  # what --image-size/--color asked for (None: as the source has it)
    color: Color | None = None

    def request(self, spec: str | None = None) -> DataRequest:
        """The data request that loads these arrays again (`spec` overrides the source, keeping size and color)."""
        return DataRequest(spec or self.spec, self.image_size, self.color)

    def record(self) -> DataRecord:
        return DataRecord(spec=self.spec, kind=self.kind, train_size=self.train_size, test_size=self.test_size, sha256=self.sha256,
                          note=self.note, image_size=self.image_size, color=self.color)


class LearningRateSchedule(str, Enum):
    """Adam's learning rate over training: constant, or cosine decay to zero (the default with --augment)."""

    CONSTANT = "constant"
    COSINE = "cosine"


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int
    batch_size: int
    learning_rate: float
    schedule: LearningRateSchedule
    validation_split: float
    optimizer: str
    loss: str
    augment: dict[str, float] | None
    model: ModelConfig


class Distribution(str, Enum):
    """How training is spread: one process, tf.distribute's Mirrored (local devices) or MultiWorkerMirrored (TF_CONFIG)."""

    NONE = "none"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi-worker"


@dataclass(frozen=True)
class DistributionInfo:
    """What tf.distribute did: replicas in sync, their devices, per-replica and global batch, and the cluster."""

    strategy: Distribution
    replicas: int
    devices: tuple[str, ...]
    batch_size_per_replica: int
    global_batch_size: int
    workers: tuple[str, ...] = ()  # multi-worker: every worker's address, from TF_CONFIG
    task_index: int = 0
    resumed_from_epoch: int = 0  # multi-worker: epochs restored from the backup of an interrupted run


@dataclass(frozen=True)
class TrainReport:
    test_accuracy: float
    test_loss: float
    images_per_second: float
    wall_seconds: float
    fit_seconds: float
    training_seconds: float
    created: str
    model: TrainedModel
    description: ModelDescription
    data: DataSummary
    hyperparameters: Hyperparameters
    seed: int
    deterministic_ops: bool
    distribution: DistributionInfo
    history: tuple[dict[str, float], ...]  # one row per epoch: epoch, seconds and Keras' metrics
    versions: dict[str, str]
    machine: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["data"] |= {"kind": self.data.kind.value, "image_size": list(self.data.image_size) if self.data.image_size else None,
                            "color": self.data.color.value if self.data.color else None}
        payload["description"] = self.description.to_dict()
        payload["hyperparameters"]["schedule"] = self.hyperparameters.schedule.value
        payload["distribution"] |= {
            "strategy": self.distribution.strategy.value,
            "devices": list(self.distribution.devices),
            "workers": list(self.distribution.workers),
        }
        payload["history"] = list(self.history)
        return payload

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainReport:
        data = raw["data"]
        hyper = raw["hyperparameters"]
        distribution = raw["distribution"]
        return cls(
            **{field.name: raw[field.name] for field in fields(cls) if field.name not in NESTED},
            model=TrainedModel(**raw["model"]),
            description=ModelDescription.from_dict(raw["description"]),
            data=DataSummary(**data | {"kind": SourceKind(data["kind"]), "image_size": tuple(data["image_size"]) if data.get("image_size") else None,
                                       "color": Color(data["color"]) if data.get("color") else None}),
            hyperparameters=Hyperparameters(
                **hyper | {"schedule": LearningRateSchedule(hyper["schedule"]), "model": ModelConfig.from_dict(hyper["model"])}
            ),
            distribution=DistributionInfo(
                **distribution
                | {
                    "strategy": Distribution(distribution["strategy"]),
                    "devices": tuple(distribution["devices"]),
                    "workers": tuple(distribution.get("workers", ())),
                }
            ),
            history=tuple(raw["history"]),
        )

    @classmethod
    def from_json(cls, path: Path) -> TrainReport:
        """Read a train.json; any way it can be broken is a one-line user error naming the file."""
        return cls.from_raw(read_json(path, "training report"), path)

    @classmethod
    def from_raw(cls, raw: dict[str, Any], path: Path) -> TrainReport:
        try:
            return cls.from_dict(raw)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise EdgecnnError(f"malformed training report: {type(exc).__name__}: {exc}", path) from None


REPORT_FILENAME = "train.json"  # beside the model train wrote: export, pipeline and the report read it

NESTED = {"model", "description", "data", "hyperparameters", "distribution", "history"}
