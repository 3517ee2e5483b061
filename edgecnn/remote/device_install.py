"""The device install for a box, prepared on the workstation: which packages (edgecnn's own device requirements, their
markers read for the box, not for this machine) and their wheels for the box's Python and platform, fetched here with
pip, because edge boxes often have no internet.

ONNX Runtime: the device install names onnxruntime-gpu on x86-64 Linux for GPU servers, a 255 MB wheel. A box without an
NVIDIA driver gets the CPU package instead (17 MB, the same `onnxruntime` module and the same CPU kernels).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

from edgecnn.remote.ssh import RemoteError

MINIMUM_PYTHON = (3, 11)
WHEELS_DONE = "edgecnn-wheels.json"  # written last into a wheel folder: its presence means the download finished


def cache_home() -> Path:
    """This machine's edgecnn cache (the box's agent uses the same rule for its own)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn"


@dataclass(frozen=True)
class BoxFacts:
    """What the box said about itself: enough to pick its wheels, and the device facts its rows carry."""

    python: tuple[int, int, int]
    implementation: str
    system: str
    machine: str
    libc: str
    libc_version: str
    cpu: str
    cores: int | None
    memory_mib: int | None
    os: str
    hostname: str
    nvidia: bool
    ready_venvs: tuple[str, ...] = ()

    @classmethod
    def from_probe(cls, raw: dict) -> BoxFacts:
        return cls(tuple(raw["python"]), raw["implementation"], raw["system"], raw["machine"], raw["libc"], raw["libc_version"],
                   raw["cpu"], raw["cores"], raw["memory_mib"], raw["os"], raw["hostname"], raw["nvidia"], tuple(raw.get("ready_venvs", ())))

    @property
    def python_text(self) -> str:
        return ".".join(map(str, self.python))

    def device(self) -> dict[str, object]:
        """The facts every row from this box carries."""
        return {"hostname": self.hostname, "cpu": self.cpu, "cores": self.cores, "memory_mib": self.memory_mib, "os": self.os,
                "machine": self.machine, "python": self.python_text}

    def check(self, name: str) -> None:
        """A box edgecnn's device side cannot run on is one line saying what it needs."""
        if self.implementation != "cpython" or self.python[:2] < MINIMUM_PYTHON:
            raise RemoteError(f"the box's python3 is {self.implementation} {self.python_text}; edgecnn's device side needs CPython "
                              f"{'.'.join(map(str, MINIMUM_PYTHON))} or newer on the box's PATH", name)
        if self.system != "Linux" or self.libc != "glibc":
            raise RemoteError(f"the box runs {self.system} with {self.libc or 'an unknown libc'}; --remote prepares Linux boxes with glibc "
                              "(the runtimes publish manylinux wheels)", name)


def marker_environment(facts: BoxFacts) -> dict[str, str]:
    major, minor, micro = facts.python
    return {"python_version": f"{major}.{minor}", "python_full_version": f"{major}.{minor}.{micro}", "platform_system": facts.system,
            "platform_machine": facts.machine, "sys_platform": "linux", "os_name": "posix", "implementation_name": facts.implementation,
            "platform_python_implementation": "CPython", "extra": ""}


def box_requirements(facts: BoxFacts) -> tuple[str, ...]:
    """edgecnn's device requirements (no extra) whose markers hold on the box, as plain requirement strings."""
    environment = marker_environment(facts)
    chosen = []
    for text in requires("edgecnn") or ():
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        if requirement.name == "onnxruntime-gpu" and not facts.nvidia:
            requirement.name = "onnxruntime"
        requirement.marker = None
        chosen.append(str(requirement))
    return tuple(sorted(chosen))


def venv_name(facts: BoxFacts, requirements: tuple[str, ...]) -> str:
    """The box's venv for these requirements on its Python: a new edgecnn that needs other packages gets a new one."""
    digest = hashlib.sha256(json.dumps(requirements).encode()).hexdigest()[:12]
    return f"cp{facts.python[0]}{facts.python[1]}-{facts.machine}-{digest}"


def platform_tags(facts: BoxFacts) -> list[str]:
    """pip's --platform values for the box: every manylinux level its glibc supports, newest first."""
    major, minor = (int(part) for part in facts.libc_version.split(".")[:2])
    arch = facts.machine
    tags = [f"manylinux_{major}_{level}_{arch}" for level in range(minor, 16, -1)] + [f"manylinux2014_{arch}"]
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags + [f"linux_{arch}"]


@dataclass(frozen=True)
class Wheels:
    folder: Path
    files: tuple[Path, ...]
    fetched_now: bool
    seconds: float


def fetch_wheels(facts: BoxFacts, requirements: tuple[str, ...], name: str) -> Wheels:
    """The wheels of `requirements` and of pip for the box, fetched once per box kind into this machine's cache. Two
    fresh boxes of one kind in a fleet fetch them once: the second waits on the folder's lock, then reuses them."""
    import time

    from filelock import FileLock

    folder = cache_home() / "wheels" / venv_name(facts, requirements)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        done = folder / WHEELS_DONE
        if done.is_file():
            return Wheels(folder, tuple(folder / file for file in json.loads(done.read_text())), False, 0.0)
        started = time.perf_counter()
        folder.mkdir(exist_ok=True)
        python_version = f"{facts.python[0]}.{facts.python[1]}"
        abi = f"cp{facts.python[0]}{facts.python[1]}"
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--only-binary=:all:", "--dest", str(folder),
                   "--python-version", python_version, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
                   *(word for tag in platform_tags(facts) for word in ("--platform", tag)), "pip", *requirements]
        fetched = subprocess.run(command, capture_output=True, text=True, check=False)
        if fetched.returncode != 0:
            lines = [line for line in fetched.stderr.splitlines() if line.strip()]
            raise RemoteError(f"pip could not fetch the device install's wheels for {abi} {facts.machine} here: {lines[-1] if lines else 'no output'}",
                              name)
        files = sorted(path.name for path in folder.glob("*.whl"))
        done.write_text(json.dumps(files))
        return Wheels(folder, tuple(folder / file for file in files), True, time.perf_counter() - started)
