"""What produced a report: library versions, machine, time. Read from package metadata, so nothing heavy is imported."""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version

from edgecnn import __version__

TRACKED_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "numpy")  # the runtimes' own come from runners/registry.py


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def library_versions(runtime_packages: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the converters and numpy, and of the runtimes' packages a stage passes (the registry lists them)."""
    found = {name: package_version(name) for name in TRACKED_PACKAGES + runtime_packages}
    return {"edgecnn": __version__, "python": platform.python_version()} | {k: v for k, v in found.items() if v}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Machine:
    """Where a measurement ran: reports record it, and the pipeline's report prints it."""

    platform: str
    machine: str
    cpu: str
    cpu_count: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def this_machine() -> Machine:
    return Machine(platform=platform.platform(), machine=platform.machine(), cpu=cpu_model(), cpu_count=os.cpu_count() or 1)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
