"""ONNX Runtime: one place that builds sessions, so verify, bench, predict and doctor run a model the same way.

`SessionConfig` is the whole recorded choice (provider, device, threads, strictness and the CUDA knobs); it turns
into ONNX Runtime's session options and provider options, into the JSON a report records, and into code a user can
paste into their own `InferenceSession`. The provider policy is strict: a session whose provider did not load, or
that would run nodes on the CPU, is an error unless fallback is allowed, and then what ran where is measured.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact import TensorSpec
from edgecnn.core.artifact_details import ArtifactDetails
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError, first_line
from edgecnn.core.native_output import quiet_native_output
from edgecnn.runners.base import Arithmetic, Backend, GraphFacts, Runner, RuntimeRefused, encode_images, thread_counts
from edgecnn.runners.registry import Provider, RunOptions

log = logging.getLogger("edgecnn")

ONNX_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(float16)": "float16"}
# ONNX Runtime's errors for a model it parsed but cannot run on a provider (a broken file raises InvalidProtobuf,
# InvalidGraph, NoSuchFile…, which stay the user's error)
PROVIDER_REFUSALS = {"Fail", "NotImplemented", "EPFail"}
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10")
ORT_CPU = Backend("CPUExecutionProvider", "ORT CPU")
ORT_CUDA = Backend("CUDAExecutionProvider", "ORT CUDA", on_device=True)
ORT_TENSORRT = Backend("TensorrtExecutionProvider", "ORT TensorRT", on_device=True)
ORT_BACKENDS = {backend.value: backend for backend in (ORT_CPU, ORT_CUDA, ORT_TENSORRT)}


def provider_fix(provider: Provider) -> str:
    """The install that makes this provider work, as the user would type it."""
    if provider is Provider.TENSORRT:
        major = (built_for_cuda() or "13").split(".")[0]
        return (f'install TensorRT 10 for CUDA {major} so that {TENSORRT_LIBRARIES[0]} loads (pip install '
                f'tensorrt-cu{major}-libs, or NVIDIA\'s TensorRT packages) beside pip install "edgecnn[cuda]"')
    return 'pip install "edgecnn[cuda]" (onnxruntime-gpu with its CUDA and cuDNN wheels) and check that nvidia-smi sees a GPU'


def built_for_cuda() -> str | None:
    """The CUDA version the installed onnxruntime-gpu wheel was built for (None for a CPU-only onnxruntime)."""
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return None
    return getattr(build_and_package_info, "cuda_version", None) or None


class ConvAlgoSearch(str, Enum):
    """cuDNN's convolution algorithm search (ORT's `cudnn_conv_algo_search`)."""

    EXHAUSTIVE = "EXHAUSTIVE"
    HEURISTIC = "HEURISTIC"
    DEFAULT = "DEFAULT"


class ProviderError(RuntimeRefused):
    """The requested execution provider is not the one running the model. `cause` is why, without the fix."""

    def __init__(self, what: str, where: object = None, cause: str = "") -> None:
        super().__init__(what, where)
        self.cause = cause or what


class PlacementError(ProviderError):
    """The provider loads, but has no kernel for some nodes of this model (strict mode): the file, not the machine."""


@dataclass(frozen=True)
class SessionConfig:
    """How ONNX Runtime runs a model. Defaults are ONNX Runtime's own, except the strictness about the provider.

    `tf32` (CUDA's `use_tf32`, on by default in ORT) trades fp32 exactness for speed: verify's fp32 bound on CUDA
    depends on it. `cuda_graph` needs a fixed input shape and IO binding, so only bench's bound calls use it.
    """

    provider: Provider = Provider.CPU
    device_id: int = 0
    threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    allow_fallback: bool = False
    spinning: bool = True
    tf32: bool = True
    conv_algo_search: ConvAlgoSearch = ConvAlgoSearch.EXHAUSTIVE
    prefer_nhwc: bool = False
    cuda_graph: bool = False

    def provider_options(self) -> dict[str, str]:
        if self.provider is Provider.CUDA:
            return {
                "device_id": str(self.device_id),
                "use_tf32": str(int(self.tf32)),
                "cudnn_conv_algo_search": self.conv_algo_search.value,
                "prefer_nhwc": str(int(self.prefer_nhwc)),
                "enable_cuda_graph": str(int(self.cuda_graph)),
            }
        if self.provider is Provider.TENSORRT:
            return {"device_id": str(self.device_id)}
        return {}

    def providers(self) -> list[Any]:
        wanted: list[Any] = [(self.provider.execution_provider, self.provider_options())]
        return wanted + (["CPUExecutionProvider"] if self.allow_fallback and self.provider.on_device else [])

    def config_entries(self) -> dict[str, str]:
        entries = {"session.intra_op.allow_spinning": str(int(self.spinning))}
        if self.provider.on_device and not self.allow_fallback:
            entries["session.disable_cpu_ep_fallback"] = "1"
        return entries

    def session_options(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        for key, value in self.config_entries().items():
            options.add_session_config_entry(key, value)
        return options

    def describe(self) -> dict[str, Any]:
        """What a report records: enough to rebuild the session (see `snippet`)."""
        return {
            "provider": self.provider.value,
            "providers": [list(entry) if isinstance(entry, tuple) else entry for entry in self.providers()],
            "intra_op_num_threads": self.threads,
            "session_config_entries": self.config_entries(),
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "tf32": self.tf32 if self.provider is Provider.CUDA else None,
            "snippet": self.snippet(),
        }

    def snippet(self, model: str = "model.onnx") -> str:
        """Python that builds the same session in the user's own app."""
        lines = ["import onnxruntime as ort", "options = ort.SessionOptions()"]
        if self.threads:
            lines.append(f"options.intra_op_num_threads = {self.threads}")
        lines += [f"options.add_session_config_entry({key!r}, {value!r})" for key, value in self.config_entries().items()]
        lines.append(f"session = ort.InferenceSession({model!r}, options, providers={self.providers()!r})")
        return "\n".join(lines)


@dataclass(frozen=True)
class Placement:
    """Which execution provider ran each node of one inference, read from ONNX Runtime's own profiler."""

    nodes: int
    off_provider: tuple[tuple[str, str, str], ...]  # (node name, op type, provider) not on the requested provider

    def describe(self) -> str:
        if not self.off_provider:
            return f"all {self.nodes} nodes on the provider"
        ops = Counter(op for _, op, _ in self.off_provider)
        where = sorted({provider for _, _, provider in self.off_provider})
        names = ", ".join(name for name, _, _ in self.off_provider[:6]) + (", …" if len(self.off_provider) > 6 else "")
        kinds = ", ".join(f"{op} x{count}" for op, count in ops.most_common())
        return f"{len(self.off_provider)} of {self.nodes} nodes ran on {'/'.join(where)}: {kinds} ({names})"


def onnx_tensor_spec(node: Any) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else None for dim in node.shape)
    return TensorSpec(name=node.name, shape=shape, dtype=ONNX_DTYPES.get(node.type, node.type))


def create_session(path: Path | bytes, config: SessionConfig) -> Any:
    """A session on exactly the requested provider, or a one-line `ProviderError` saying why not and what to do."""
    import onnxruntime as ort

    where = path if isinstance(path, Path) else "model"
    source = str(path) if isinstance(path, Path) else path
    if not config.provider.on_device:
        try:
            return ort.InferenceSession(source, config.session_options(), providers=["CPUExecutionProvider"])
        except Exception as exc:
            if type(exc).__name__ in PROVIDER_REFUSALS:  # a well-formed model with an op this provider cannot run
                raise ProviderError(f"cannot run on CPUExecutionProvider: {first_line(exc)}", where) from None
            raise EdgecnnError(f"ONNX Runtime cannot load the model: {first_line(exc)}", where) from None
    missing = preload_gpu_libraries(ort)
    if config.provider is Provider.TENSORRT and missing_tensorrt():
        missing = f"{missing}, {missing_tensorrt()}" if missing else f"missing {missing_tensorrt()}"
    try:
        # ORT logs each failed library load on fd 2 and prints an "EP Error … Falling back" banner on stdout
        with quiet_native_output((1, 2)):
            session = ort.InferenceSession(source, config.session_options(), providers=config.providers())
    except Exception as exc:
        raise provider_error(config.provider, ort, f"session creation failed: {first_line(exc)}", missing) from None
    active = session.get_providers()
    if active[0] != config.provider.execution_provider:
        if not config.allow_fallback:
            raise provider_error(config.provider, ort, f"ONNX Runtime fell back to {active[0]}", missing)
        log.warning("%s is not active (%s); running on %s instead (--allow-fallback)", config.provider.execution_provider,
                    missing or "provider failed to load", active[0])
    return session


def preload_gpu_libraries(ort: Any) -> str:
    """ORT >= 1.21 loads CUDA/cuDNN from the nvidia-* wheels of `onnxruntime-gpu[cuda,cudnn]`; returns what it missed."""
    if not hasattr(ort, "preload_dlls"):
        return ""
    printed = io.StringIO()
    try:
        with quiet_native_output(), contextlib.redirect_stdout(printed):
            ort.preload_dlls()
    except Exception as exc:  # the provider check that follows reports the consequence
        return first_line(exc)
    failed = [line.split(":")[0].replace("Failed to load ", "") for line in printed.getvalue().splitlines() if line.startswith("Failed to load")]
    return f"missing {', '.join(failed)}" if failed else ""


def provider_error(provider: Provider, ort: Any, what: str, missing: str) -> ProviderError:
    """One line: why the provider is not running the model (missing libraries first: they are the usual cause and
    ORT's own message then describes its CPU retry, not the cause), the fix, and where to look further."""
    available = ", ".join(ort.get_available_providers())
    cause = f"execution provider {provider.execution_provider} requested but not active ({missing or what}; built into this onnxruntime: {available})"
    return ProviderError(f"{cause}. Fix: {provider_fix(provider)}", f"--provider {provider.value}", cause=cause)


def missing_tensorrt() -> str:
    import ctypes

    try:
        ctypes.CDLL(TENSORRT_LIBRARIES[0])
    except OSError:
        return TENSORRT_LIBRARIES[0]
    return ""


def probe_model() -> bytes:
    """A one-node float model: what any working provider can run, used to tell 'provider broken' from 'model unsupported'."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def check_provider_usable(config: SessionConfig) -> None:
    """Raise the one-line `ProviderError` when the provider cannot run even a one-node model (strict mode only)."""
    if config.provider.on_device and not config.allow_fallback:
        create_session(probe_model(), config)


def measure_placement(path: Path, config: SessionConfig) -> Placement:
    """Run one batch-1 inference with fallback allowed and profiling on; count the nodes that left the provider."""
    import tempfile  # imported here: only placement needs it, and every start (predict) would pay for it

    import onnxruntime as ort

    loose = replace(config, allow_fallback=True, cuda_graph=False)
    options = loose.session_options()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "edgecnn-placement")
    with quiet_native_output((1, 2)):
        session = ort.InferenceSession(str(path), options, providers=loose.providers())
    node = session.get_inputs()[0]
    shape = [1 if not isinstance(dim, int) else dim for dim in node.shape]
    session.run(None, {node.name: np.zeros(shape, np.dtype(ONNX_DTYPES.get(node.type, "float32")))})
    trace_path = Path(session.end_profiling())
    try:
        events = json.loads(trace_path.read_text())
    finally:
        trace_path.unlink(missing_ok=True)
    ran = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            ran[event["name"].removesuffix("_kernel_time")] = (event["args"].get("op_name", "?"), event["args"].get("provider", "?"))
    wanted = config.provider.execution_provider
    off = tuple((name, op, provider) for name, (op, provider) in ran.items() if provider != wanted)
    return Placement(nodes=len(ran), off_provider=off)


def placement_error(path: Path, config: SessionConfig, exc: ProviderError) -> ProviderError:
    """A strict session refused: say which nodes ONNX Runtime would have put elsewhere, when that can be measured."""
    try:
        placement = measure_placement(path, config)
    except Exception:  # the provider itself is broken: the original error says so
        return exc
    if not placement.off_provider:
        return exc
    return PlacementError(f"cannot run entirely on {config.provider.execution_provider}: {placement.describe()}", path)


class OnnxRunner(Runner):
    """ONNX Runtime, strict about the execution provider: a silent fallback to CPU is an error unless allowed."""

    def __init__(self, path: Path, config: SessionConfig = SessionConfig(), description: ModelDescription | None = None) -> None:
        super().__init__(path, description)
        self.config = config

    def _load(self) -> Any:
        try:
            return create_session(self.path, self.config)
        except ProviderError as exc:
            raise placement_error(self.path, self.config, exc) from None

    @property
    def session(self) -> Any:
        return self.handle

    @property
    def runtime(self) -> Backend:
        return ORT_BACKENDS[self.session.get_providers()[0]]

    @property
    def arithmetic(self) -> Arithmetic:
        """TF32 where the provider that ran uses it for fp32 convolutions and matmuls (CUDA with use_tf32, TensorRT)."""
        runtime = self.runtime
        if (runtime == ORT_CUDA and self.config.tf32) or runtime == ORT_TENSORRT:
            return Arithmetic.TF32
        return Arithmetic.FP32

    def placement(self) -> Placement | None:
        """Under --allow-fallback on a device provider: which nodes left it (None when nothing was requested off CPU)."""
        if not (self.config.provider.on_device and self.config.allow_fallback):
            return None
        return measure_placement(self.path, self.config)

    def input_spec(self) -> TensorSpec:
        return onnx_tensor_spec(self.session.get_inputs()[0])

    def output_spec(self) -> TensorSpec:
        return onnx_tensor_spec(self.session.get_outputs()[0])

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.session.get_inputs()[0].name: feed})[0]

    def bound_call(self, feed: np.ndarray) -> Callable[[], Any]:
        """IO binding with pre-allocated OrtValues; on a GPU they live on the device and each call synchronizes."""
        import onnxruntime as ort

        session = self.session
        device, device_id = ("cuda", self.config.device_id) if self.on_device else ("cpu", 0)
        output = session.get_outputs()[0]
        output_dtype = np.dtype(ONNX_DTYPES[output.type])
        binding = session.io_binding()
        binding.bind_ortvalue_input(session.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(feed, device, device_id))
        binding.bind_ortvalue_output(
            output.name, ort.OrtValue.ortvalue_from_shape_and_type([len(feed), *output.shape[1:]], output_dtype, device, device_id)
        )
        run_with_iobinding = session.run_with_iobinding
        if not self.on_device:
            return lambda: run_with_iobinding(binding)

        def run_synchronized() -> None:
            run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run_synchronized

    def embedded_metadata(self) -> dict[str, Any]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    layer_outputs_note = "ONNX Runtime, CPU"

    def layer_outputs(self, images: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        from edgecnn.runners.onnx_layers import marked_graph

        model, tensors = marked_graph(self.path, layers)
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        feed = encode_images(images, onnx_tensor_spec(session.get_inputs()[0]), self.description)
        wanted = list(dict.fromkeys(tensors.values()))
        values = dict(zip(wanted, session.run(wanted, {session.get_inputs()[0].name: feed}), strict=True))
        return {layer: np.asarray(values[name], dtype=np.float32) for layer, name in tensors.items()}

    def graph_facts(self) -> GraphFacts:
        from edgecnn.runners.onnx_layers import onnx_graph_facts

        return onnx_graph_facts(self.path)

    def file_facts(self) -> ArtifactDetails:
        from edgecnn.runners.onnx_layers import onnx_weight_counts

        return ArtifactDetails(custom_metadata=dict(self.session.get_modelmeta().custom_metadata_map), providers=tuple(self.session.get_providers()),
                               weights=onnx_weight_counts(self.path))


class OnnxRuntimePlugin:
    """ONNX Runtime as a registered runtime (runners/registry.py): ONNX files on CPU, CUDA or TensorRT."""

    def config(self, options: RunOptions) -> SessionConfig:
        device_id = 0
        if options.device is not None:
            try:
                device_id = int(options.device)
            except ValueError:
                raise EdgecnnError(f"ONNX Runtime takes a GPU index (0, 1, …), got {options.device!r}", "--device") from None
            if device_id < 0:
                raise EdgecnnError(f"device index must be 0 or more, got {device_id}", "--device")
        return SessionConfig(provider=options.provider, device_id=device_id, threads=options.threads, tf32=options.tf32,
                             allow_fallback=options.allow_fallback, spinning=options.spinning)

    def open(self, path: Path, config: SessionConfig, description: ModelDescription | None) -> OnnxRunner:
        return OnnxRunner(path, config, description)

    def check_usable(self, config: SessionConfig) -> None:
        check_provider_usable(config)

    def tune_candidates(self, config: SessionConfig, cores: int, batch_size: int) -> list[SessionConfig]:
        """The documented knobs per provider: threads and spinning on CPU; cuDNN search, layout, TF32 and graphs on CUDA."""
        if config.provider is Provider.CPU:
            return [replace(config, threads=threads, spinning=spinning) for threads in thread_counts(cores, batch_size) for spinning in (True, False)]
        if config.provider is Provider.CUDA:
            return [
                replace(config, conv_algo_search=search, prefer_nhwc=nhwc, tf32=tf32, cuda_graph=graph)
                for search in (ConvAlgoSearch.EXHAUSTIVE, ConvAlgoSearch.HEURISTIC)
                for nhwc in (False, True)
                for tf32 in (True, False)
                for graph in (False, True)
            ]
        return [config]

    def parity_key(self, config: SessionConfig) -> SessionConfig:
        """Threads and spinning never change the numbers; a CUDA graph replays the same kernels."""
        if config.provider is Provider.CUDA:
            return replace(config, cuda_graph=False, threads=0, spinning=True)
        return replace(config, spinning=True)

    def label(self, config: SessionConfig) -> str:
        if config.provider is Provider.CPU:
            return f"threads={config.threads or 'default'} spinning={'on' if config.spinning else 'off'}"
        if config.provider is Provider.CUDA:
            return (f"{config.conv_algo_search.value.lower()} {'nhwc' if config.prefer_nhwc else 'nchw'} "
                    f"tf32={'on' if config.tf32 else 'off'} graph={'on' if config.cuda_graph else 'off'}")
        return config.provider.value

    def describe(self, config: SessionConfig) -> dict[str, Any]:
        return config.describe()


    def diagnose_optimizer(self, path: Path, images: np.ndarray, expected: np.ndarray, description: ModelDescription, bound: float,
                           report_folder: Path | None) -> Any:
        """ORT optimizes every session by default; the file is rerun on the CPU with ORT_DISABLE_ALL and, when that is
        right, the pass is bisected over `disabled_optimizers` (runners/onnxrt_passes.py)."""
        from edgecnn.runners.onnxrt_passes import diagnose

        runner = OnnxRunner(path, SessionConfig(), description)
        spec = runner.input_spec()
        runner.close()

        def max_abs_diff(output: np.ndarray) -> float:
            return float(np.abs(description.probabilities(output).astype(np.float64) - expected).max())

        return diagnose(path, {spec.name: encode_images(images, spec, description)}, max_abs_diff, bound, report_folder)

PLUGIN = OnnxRuntimePlugin()
