"""`edgecnn doctor`: can this machine run a model on the provider asked for, and if not, exactly what is missing?

ONNX Runtime's CUDA provider needs the CUDA runtime, cuBLAS, cuFFT, cuRAND and cuDNN of the major version the wheel
was built for; the TensorRT provider also needs TensorRT's libraries. Each is loaded the way ONNX Runtime loads it
(its `preload_dlls` first, from the nvidia-* wheels, then the system's search path) and reported by file name, found
or missing; a one-node model then shows whether a session really runs on the provider.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.core.provenance import Int8Sums, int8_dot_product, package_version
from edgecnn.runners import Provider, ProviderError, SessionConfig
from edgecnn.runners.onnxrt import TENSORRT_LIBRARIES, built_for_cuda, check_provider_usable, preload_gpu_libraries, provider_fix

CUDNN_MAJOR = 9


@dataclass(frozen=True)
class Library:
    file: str
    needed_for: str
    path: str | None  # where it was loaded from; None when it could not be loaded

    @property
    def found(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class DoctorReport:
    provider: Provider
    onnxruntime: str
    package: str
    cuda_built_for: str | None
    available_providers: tuple[str, ...]
    libraries: tuple[Library, ...]
    gpus: tuple[str, ...]
    usable: bool
    problem: str
    fix: str
    int8_dot: Int8Sums = Int8Sums.UNKNOWN  # whether this CPU's int8 kernels saturate on 8-bit weights

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "provider": self.provider.value,
            "int8_dot": self.int8_dot.value,
            "libraries": [asdict(library) | {"found": library.found} for library in self.libraries],
        }


def cuda_libraries(cuda_version: str | None) -> list[tuple[str, str]]:
    """(file name, what needs it) for the CUDA major version this onnxruntime-gpu wheel was built for."""
    if not cuda_version:
        return []
    major = int(cuda_version.split(".")[0])
    cufft = major - 1  # cuFFT's soname runs one behind CUDA's (11 for CUDA 12, 12 for CUDA 13)
    cuda = [f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}", f"libcufft.so.{cufft}", "libcurand.so.10"]
    return [(name, "CUDA") for name in cuda] + [(f"libcudnn.so.{CUDNN_MAJOR}", "cuDNN")]


def loaded_from(file: str) -> str | None:
    """Load a shared library by file name as ONNX Runtime would; where it came from, or None."""
    try:
        ctypes.CDLL(file)
    except OSError:
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                mapped = line.split()[-1]
                if Path(mapped).name.startswith(file):  # the soname's link resolved to the real file
                    return mapped
    except OSError:
        pass
    return file


def nvidia_gpus() -> tuple[str, ...]:
    """GPU name, driver and memory per device, from nvidia-smi when it exists."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        completed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in completed.stdout.splitlines() if line.strip())


def diagnose(provider: Provider = Provider.CUDA, device_id: int = 0) -> DoctorReport:
    import onnxruntime as ort

    cuda_version = built_for_cuda()
    package = "onnxruntime-gpu" if package_version("onnxruntime-gpu") else "onnxruntime"
    preload_gpu_libraries(ort)  # loads from the nvidia-* wheels, as a session would; the loop below reads the result
    wanted = cuda_libraries(cuda_version) if provider.on_device else []
    if provider is Provider.TENSORRT:
        wanted += [(name, "TensorRT") for name in TENSORRT_LIBRARIES]
    libraries = tuple(Library(file, needed_for, loaded_from(file)) for file, needed_for in wanted)
    problem = ""
    try:
        check_provider_usable(SessionConfig(provider=provider, device_id=device_id))
    except ProviderError as exc:
        problem = exc.cause
    if provider.on_device and not cuda_version and not problem:
        problem = f"{package} is not built with CUDA"
    return DoctorReport(
        provider=provider,
        onnxruntime=ort.__version__,
        package=package,
        cuda_built_for=cuda_version,
        available_providers=tuple(ort.get_available_providers()),
        libraries=libraries,
        gpus=nvidia_gpus(),
        usable=not problem,
        problem=problem,
        fix="" if not problem else fix_for(provider, package, libraries),
        int8_dot=int8_dot_product(),
    )


def fix_for(provider: Provider, package: str, libraries: tuple[Library, ...]) -> str:
    """The exact install for what is missing."""
    if package != "onnxruntime-gpu":
        return 'pip uninstall -y onnxruntime && pip install "edgecnn[cuda]"'
    missing = {library.needed_for for library in libraries if not library.found}
    if "TensorRT" in missing:
        return provider_fix(provider)
    if missing:
        return 'pip install "edgecnn[cuda]" (brings onnxruntime-gpu[cuda,cudnn]: the CUDA and cuDNN wheels ONNX Runtime loads)'
    return "the libraries load but no session runs: check the GPU and driver with nvidia-smi (a driver for this CUDA major is needed)"

