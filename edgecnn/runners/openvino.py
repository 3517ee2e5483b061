"""OpenVINO (Intel CPUs, GPUs and NPUs): ONNX and TFLite files through OpenVINO's frontends. Optional: `edgecnn[openvino]`.

OpenVINO's CPU plugin runs fp32 models in bf16 (or fp16) by default on CPUs that have those instructions. edgecnn asks
for fp32 inference precision (`INFERENCE_PRECISION_HINT`) so an fp32 artifact is judged as fp32, and records the
precision the compiled model reports as what ran (verify's bound follows it). Inputs and outputs are host tensors, so
a timed call includes any transfer to a GPU or NPU.

OpenVINO keeps an int8 TFLite file's int8 input and output but does not expose their scale and zero point; they are
read from the file's flatbuffer (core/tflite_metadata.py), as LiteRT would report them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact import TensorSpec
from edgecnn.core.description import ModelDescription
from edgecnn.core.errors import EdgecnnError, first_line
from edgecnn.core.native_output import quiet_native_output
from edgecnn.runners.base import Arithmetic, Backend, GraphFacts, Runner, RuntimeRefused, encode_images, thread_counts
from edgecnn.runners.registry import RunOptions

DEVICE_BACKENDS = {device: Backend(f"OpenVINO {device}", f"OpenVINO {device}", on_device=device != "CPU") for device in ("CPU", "GPU", "NPU")}
PRECISIONS = {"f32": Arithmetic.FP32, "bf16": Arithmetic.BF16, "f16": Arithmetic.FP16}


class PerformanceHint(str, Enum):
    """OpenVINO's PERFORMANCE_HINT: few streams for one request at a time, or many for throughput."""

    LATENCY = "LATENCY"
    THROUGHPUT = "THROUGHPUT"


@dataclass(frozen=True)
class OpenVinoConfig:
    """How OpenVINO compiles a model. 0 threads / streams: what the performance hint chooses."""

    device: str = "CPU"
    threads: int = 0
    streams: int = 0
    hint: PerformanceHint = PerformanceHint.LATENCY
    inference_precision: str = "f32"

    def properties(self) -> dict[str, str]:
        """OpenVINO's compile-time properties, as `compile_model` takes them."""
        properties = {"PERFORMANCE_HINT": self.hint.value}
        if self.device.startswith("CPU"):
            properties["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if self.threads:
            properties["INFERENCE_NUM_THREADS"] = str(self.threads)
        if self.streams:
            properties["NUM_STREAMS"] = str(self.streams)
        return properties


def backend_of(device: str) -> Backend:
    return DEVICE_BACKENDS.get(device.split(".")[0].upper(), DEVICE_BACKENDS["CPU"])


class OpenVinoRunner(Runner):
    """An OpenVINO compiled model with one infer request (batch dimension left dynamic, as exported)."""

    def __init__(self, path: Path, config: OpenVinoConfig = OpenVinoConfig(), description: ModelDescription | None = None) -> None:
        super().__init__(path, description)
        self.config = config
        self.layer_outputs_note = f"OpenVINO {config.device}, inference precision {config.inference_precision}"

    def _load(self) -> Any:
        import openvino as ov

        core = ov.Core()
        try:
            with quiet_native_output():
                model = core.read_model(str(self.path))
        except RuntimeError as exc:
            raise EdgecnnError(f"OpenVINO cannot read the model: {first_line(exc)}", self.path) from None
        try:
            with quiet_native_output():
                return core.compile_model(model, self.config.device, self.config.properties())
        except RuntimeError as exc:
            raise RuntimeRefused(f"OpenVINO cannot compile the model for {self.config.device}: {first_line(exc)}", self.path) from None

    @property
    def runtime(self) -> Backend:
        return backend_of(self.config.device)

    @property
    def compiled(self) -> Any:
        return self.handle

    @property
    def transfer_included(self) -> bool:
        return True  # host tensors: a GPU or NPU call includes the copies

    @property
    def arithmetic(self) -> Arithmetic:
        """The inference precision the compiled model reports, i.e. what ran (fp32 unless the device refused it)."""
        try:
            reported = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16", "f16"
        except RuntimeError:  # a device plugin without the property computes in its native precision
            return Arithmetic.FP32
        return PRECISIONS.get(reported, Arithmetic.FP32)

    def _spec(self, port: Any, quantization: tuple[float, int] | None) -> TensorSpec:
        shape = tuple(int(dim.get_length()) if dim.is_static else None for dim in port.get_partial_shape())
        dtype = np.dtype(port.get_element_type().to_dtype()).name
        scale, zero_point = quantization if quantization and dtype in ("int8", "uint8") else (None, None)
        return TensorSpec(name=port.get_any_name(), shape=shape, dtype=dtype, scale=scale, zero_point=zero_point)

    def _quantization(self) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
        if self.path.suffix.lower() != ".tflite":
            return None, None  # ONNX files take and give floats (or raw uint8 pixels), never quantized tensors
        from edgecnn.core.tflite_metadata import io_quantization

        return io_quantization(self.path.read_bytes())

    def input_spec(self) -> TensorSpec:
        return self._spec(self.compiled.input(0), self._quantization()[0])

    def output_spec(self) -> TensorSpec:
        return self._spec(self.compiled.output(0), self._quantization()[1])

    def bound_call(self, feed: np.ndarray) -> Callable[[], Any]:
        import openvino as ov

        request = self.compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(np.ascontiguousarray(feed)))
        return request.infer

    def run_encoded(self, feed: np.ndarray) -> np.ndarray:
        request = self.compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(feed)})
        return np.array(request.get_output_tensor(0).data, copy=True)

    def layer_outputs(self, images: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        """The ONNX file's graph with every layer's tensor as an output (runners/onnx_layers.py), compiled as this runner
        compiles the file; a TFLite file is explained with LiteRT."""
        if self.path.suffix.lower() != ".onnx":
            raise RuntimeRefused("OpenVINO gives the layer outputs of ONNX files; explain a TFLite file with LiteRT (the default)", self.path)
        import openvino as ov

        from edgecnn.runners.onnx_layers import marked_graph

        graph, tensors = marked_graph(self.path, layers)
        core = ov.Core()
        with quiet_native_output():
            compiled = core.compile_model(core.read_model(graph), self.config.device, self.config.properties())
        request = compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(encode_images(images, self._spec(compiled.input(0), None), self.description))})
        values = {name: np.array(request.get_tensor(output).data, dtype=np.float32, copy=True)
                  for output in compiled.outputs for name in output.get_names()}
        return {layer: values[name] for layer, name in tensors.items()}

    def graph_facts(self) -> GraphFacts:
        from edgecnn.runners.onnx_layers import onnx_graph_facts

        return onnx_graph_facts(self.path) if self.path.suffix.lower() == ".onnx" else GraphFacts()

    def embedded_metadata(self) -> dict[str, Any]:
        if self.path.suffix.lower() == ".tflite":
            from edgecnn.core.tflite_metadata import METADATA_NAME, read

            return dict(read(self.path.read_bytes()).get(METADATA_NAME, {}))
        from edgecnn.core.onnx_graph import load_onnx_checked

        return {prop.key: prop.value for prop in load_onnx_checked(self.path).metadata_props}


class OpenVinoPlugin:
    """OpenVINO as a registered runtime (runners/registry.py)."""

    def config(self, options: RunOptions) -> OpenVinoConfig:
        device = options.device or "CPU"
        if device.isdigit():
            raise EdgecnnError(f"OpenVINO names devices CPU, GPU, GPU.<n> or NPU, got {device!r}", "--device")
        return OpenVinoConfig(device=device.upper(), threads=options.threads)

    def open(self, path: Path, config: OpenVinoConfig, description: ModelDescription | None) -> OpenVinoRunner:
        return OpenVinoRunner(path, config, description)

    def check_usable(self, config: OpenVinoConfig) -> None:
        import openvino as ov

        available = ov.Core().available_devices
        if config.device not in available and config.device.split(".")[0] not in {name.split(".")[0] for name in available}:
            raise EdgecnnError(f"OpenVINO has no device {config.device} on this machine (available: {', '.join(available)})", "--device")

    def tune_candidates(self, config: OpenVinoConfig, cores: int, batch_size: int) -> list[OpenVinoConfig]:
        """Threads, streams and the performance hint: the knobs OpenVINO's benchmark_app varies."""
        return [replace(config, threads=threads, streams=streams, hint=hint) for hint in PerformanceHint
                for threads in thread_counts(cores, batch_size) for streams in sorted({1, max(1, cores // 2)})]

    def parity_key(self, config: OpenVinoConfig) -> OpenVinoConfig:
        return replace(config, threads=0, streams=0, hint=PerformanceHint.LATENCY)

    def label(self, config: OpenVinoConfig) -> str:
        return f"{config.device} hint={config.hint.value.lower()} threads={config.threads or 'default'} streams={config.streams or 'default'}"

    def describe(self, config: OpenVinoConfig) -> dict[str, Any]:
        return {"device": config.device, "properties": config.properties(),
                "snippet": f"import openvino as ov\ncompiled = ov.Core().compile_model('model.onnx', {config.device!r}, {config.properties()!r})"}


    def diagnose_optimizer(self, path: Path, images: np.ndarray, expected: np.ndarray, description: ModelDescription, bound: float,
                           report_folder: Path | None) -> None:
        """No switch for graph optimizations here: a file outside its bound is judged as it ran."""
        return None

PLUGIN = OpenVinoPlugin()
