"""What produced a report: library versions, machine, time. Read from package metadata, so nothing heavy is imported."""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
from dataclasses import asdict, dataclass
from enum import Enum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


class Int8Sums(str, Enum):
    """How a CPU sums ONNX Runtime's u8×s8 int8 products (`int8_dot_product`)."""

    VNNI = "vnni"  # AVX-512 VNNI, AVX-VNNI or AMX: 32-bit sums
    SATURATING = "avx2"  # x86 without VNNI: VPMADDUBSW sums each pair in 16 bits, which saturates on 8-bit weights
    UNKNOWN = ""  # not x86 (ARM's dot-product instructions sum in 32 bits), or no flags to read


@functools.cache
def int8_dot_product(cpuinfo: Path = Path("/proc/cpuinfo")) -> Int8Sums:
    """This CPU's int8 sums, read once from its flags. Where they saturate, ONNX int8 files with 8-bit weights move
    predictions; ONNX Runtime's quantization docs name `reduce_range`, edgecnn's `export --reduce-range`."""
    try:
        with cpuinfo.open(encoding="utf-8") as handle:
            flags = next((set(line.split(":", 1)[1].split()) for line in handle if line.startswith("flags")), set())
    except OSError:
        return Int8Sums.UNKNOWN
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return Int8Sums.VNNI
    return Int8Sums.SATURATING if "avx2" in flags else Int8Sums.UNKNOWN


def memory_mib() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def operating_system() -> str:
    """The distribution's own name ("Debian GNU/Linux 12 (bookworm)"), else the platform string."""
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME") or platform.platform()
    except OSError:
        return platform.platform()


@dataclass(frozen=True)
class Machine:
    """Where a measurement ran: reports record it, every row of bench.json and verify.json carries it (a row measured on a
    box over SSH carries the box's), and the pipeline's report prints it."""

    platform: str
    machine: str
    cpu: str
    cpu_count: int
    memory_mib: int | None = None
    os: str = ""
    python: str = ""
    int8_dot: str = ""  # `Int8Sums`' value: "avx2" is where 8-bit-weight ONNX int8 files can lose agreement to saturation

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def this_machine() -> Machine:
    return Machine(platform=platform.platform(), machine=platform.machine(), cpu=cpu_model(), cpu_count=os.cpu_count() or 1,
                   memory_mib=memory_mib(), os=operating_system(), python=platform.python_version(),
                   int8_dot=int8_dot_product().value)


THIS_MACHINE = "local"  # the host that rows measured on this machine name; rows from a box over SSH name the box (--remote)


def hosted(rows: list[dict[str, object]], host: str, machine: Machine, versions: dict[str, str]) -> list[dict[str, object]]:
    """Report rows that say where they ran: the host, and the device facts (CPU, cores, memory, OS, Python, runtime versions)."""
    device = machine.to_dict() | {"versions": versions}
    return [row | {"host": host, "device": device} for row in rows]


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
