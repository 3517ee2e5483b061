"""The runtime registry: which runtimes exist, what each declares, and how a model file finds the runtime that runs it.

A runtime is a plug-in (Polygraphy's `backend/<runtime>/`): one module under `runners/` holding its runner and a
`PLUGIN` object (`RuntimePlugin`, runners/base.py) that turns the user's `RunOptions` into the runtime's own
configuration, checks that the runtime can run at all, and says how `--tune` may vary it. This module only declares:
it imports no runtime library and no plug-in module until one is used, so building the CLI stays cheap.

Adding a runtime: its module, one `RuntimeInfo` row below, an extra in pyproject.toml if its library is optional.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.core.artifact import ArtifactFormat
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError

if TYPE_CHECKING:
    from edgecnn.runners.base import Runner, RuntimePlugin


class RuntimeName(str, Enum):
    ONNXRUNTIME = "onnxruntime"
    LITERT = "litert"
    OPENVINO = "openvino"


class Provider(str, Enum):
    """ONNX Runtime's execution provider: part of the run options because `--provider` is what ORT users know."""

    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"

    @property
    def execution_provider(self) -> str:
        return {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[self.value]

    @property
    def on_device(self) -> bool:
        return self is not Provider.CPU


@dataclass(frozen=True)
class RunOptions:
    """How the user asked models to run, runtime-neutral: parsed once by the CLI, turned into each runtime's own
    configuration by its plug-in. `runtimes` empty means each file format's default runtime."""

    runtimes: tuple[RuntimeName, ...] = ()
    provider: Provider = Provider.CPU
    device: str | None = None  # the runtime's own device name (a CUDA index for ONNX Runtime); None: its default
    threads: int = 0  # 0: the runtime's default
    tf32: bool = True
    allow_fallback: bool = False
    spinning: bool = True  # idle runtime threads may busy-wait (predict turns it off: its decoding thread needs the cores)


@dataclass(frozen=True)
class RuntimeInfo:
    """What a runtime declares, readable without importing it."""

    name: RuntimeName
    label: str
    module: str
    library: str  # the import name whose presence means "installed"
    formats: tuple[ArtifactFormat, ...]
    default_for: tuple[ArtifactFormat, ...]
    devices: str
    install: str
    packages: tuple[str, ...]  # distributions whose versions reports record
    follows_provider: bool = False  # runs on the device --provider names (ONNX Runtime); else its own device choice
    accelerator: RunOptions | None = None  # how a user asks for its accelerator (None: CPU only); strictness is tested with it


RUNTIMES: dict[RuntimeName, RuntimeInfo] = {
    info.name: info
    for info in (
        RuntimeInfo(RuntimeName.ONNXRUNTIME, "ONNX Runtime", "edgecnn.runners.onnxrt", "onnxruntime", (ArtifactFormat.ONNX,),
                    (ArtifactFormat.ONNX,), "a GPU index for --provider cuda/tensorrt (default 0)", 'pip install "edgecnn"',
                    ("onnxruntime", "onnxruntime-gpu"), follows_provider=True, accelerator=RunOptions(provider=Provider.CUDA)),
        RuntimeInfo(RuntimeName.LITERT, "LiteRT", "edgecnn.runners.litert", "ai_edge_litert", (ArtifactFormat.TFLITE,),
                    (ArtifactFormat.TFLITE,), "the CPU only", 'pip install "edgecnn"', ("ai-edge-litert",)),
        RuntimeInfo(RuntimeName.OPENVINO, "OpenVINO", "edgecnn.runners.openvino", "openvino", (ArtifactFormat.ONNX, ArtifactFormat.TFLITE), (),
                    "CPU, GPU, GPU.<n> or NPU (default CPU)", 'pip install "edgecnn[openvino]"', ("openvino",),
                    accelerator=RunOptions(device="GPU")),
    )
}


def plugin(name: RuntimeName) -> RuntimePlugin:
    """The runtime's plug-in, importing its module now (and the runtime library only when it is used)."""
    plugin_object: RuntimePlugin = importlib.import_module(RUNTIMES[name].module).PLUGIN
    return plugin_object


def runtime_packages() -> tuple[str, ...]:
    return tuple(package for info in RUNTIMES.values() for package in info.packages)


def installed(name: RuntimeName) -> bool:
    library = RUNTIMES[name].library
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):  # blocked (sys.modules entry None) or broken: not usable either way
        return False


def parse_runtimes(values: list[str] | tuple[str, ...], allow_many: bool) -> tuple[RuntimeName, ...]:
    """`--runtime` values: registered names, or `all` (every installed runtime) where several are allowed."""
    names: list[RuntimeName] = []
    for value in values:
        if value == "all" and allow_many:
            names += [name for name in RUNTIMES if installed(name) and name not in names]
            continue
        try:
            name = RuntimeName(value)
        except ValueError:
            known = " | ".join(name.value for name in RuntimeName) + (" | all" if allow_many else "")
            raise EdgecnnError(f"unknown runtime {value!r}: expected {known}", "--runtime") from None
        if name not in names:
            names.append(name)
    if len(names) > 1 and not allow_many:
        raise EdgecnnError(f"one runtime here, got {', '.join(name.value for name in names)}", "--runtime")
    for name in names:
        require_installed(name)
    return tuple(names)


def require_installed(name: RuntimeName) -> None:
    if not installed(name):
        info = RUNTIMES[name]
        raise EdgecnnError(f"{info.label} is not installed (no module {info.library!r}). Fix: {info.install}", "--runtime")


def runtimes_for(artifact_format: ArtifactFormat, options: RunOptions) -> tuple[RuntimeName, ...]:
    """The runtimes that run files of this format under these options: the asked ones that read it, else its default."""
    if options.runtimes:
        return tuple(name for name in options.runtimes if artifact_format in RUNTIMES[name].formats)
    return tuple(name for name, info in RUNTIMES.items() if artifact_format in info.default_for)


def check_usable(options: RunOptions, formats: tuple[ArtifactFormat, ...] = (ArtifactFormat.ONNX, ArtifactFormat.TFLITE)) -> None:
    """Before any work: each runtime these options select can run at all on its device (one line with the fix if not)."""
    for name in dict.fromkeys(name for artifact_format in formats for name in runtimes_for(artifact_format, options)):
        require_installed(name)
        runtime = plugin(name)
        runtime.check_usable(runtime.config(options))


def open_runner(
    artifact_format: ArtifactFormat,
    path: Path,
    options: RunOptions = RunOptions(),
    description: ModelDescription | None = None,
    runtime: RuntimeName | None = None,
    config: Any = None,
) -> Runner:
    """The one path from a model file to a runner: `runtime` (default: the format's first under `options`), configured
    from `options` unless the runtime's own `config` is given (as --tune does)."""
    if runtime is None:
        candidates = runtimes_for(artifact_format, options)
        if not candidates:
            asked = ", ".join(name.value for name in options.runtimes)
            raise EdgecnnError(f"no runtime among {asked} reads {artifact_format.value} files", path)
        runtime = candidates[0]
    if artifact_format not in RUNTIMES[runtime].formats:
        raise EdgecnnError(f"{RUNTIMES[runtime].label} does not read {artifact_format.value} files", path)
    require_installed(runtime)
    runtime_plugin = plugin(runtime)
    return runtime_plugin.open(Path(path), config if config is not None else runtime_plugin.config(options), description)
