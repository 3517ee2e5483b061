"""How each artifact was made, as the manifest records it under `details`: typed records, written by the one encoder
in `records.py` and described by the published schema (`manifest.schema.json`).

Export's converters fill the parts that apply to a file (an int8 file's quantization and calibration, an fp32 ONNX
file's graph clean-up and default-session check, `--max-drop`'s search trail); the runtime that opens the file adds
what it reads from it (ONNX metadata properties, TFLite signatures).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class QuantizationRecord:
    """How an int8 file was quantized: weights, activations, the calibration method, the Keras layers (and graph
    nodes) kept in float, those whose activations are 16-bit (with int8 weights), and those whose activations take
    their range on each call (dynamic, with int8 weights)."""

    weights: str  # "int8 per-channel"
    calibration_method: str
    kept_float_layers: tuple[str, ...] = ()
    kept_float_nodes: tuple[str, ...] = ()
    format: str | None = None  # "QDQ" for ONNX; None where the converter has one form (TFLite)
    activations: str | None = None  # "uint8"; None where the converter decides
    quantizer: str | None = None  # who placed the quantization: "onnxruntime 1.31.1", "nncf 3.4.0"; None: the converter itself
    int16_layers: tuple[str, ...] = ()  # Keras layers with 16-bit activations and int8 weights (A16W8; TFLite: the whole file)
    reduce_range: bool = False  # weights in 7 bits of the 8 (ONNX Runtime's reduce_range): no saturation on x86 CPUs without VNNI
    reduce_range_reason: str = ""  # the option that chose it, or the exporting CPU's int8 instructions when none did
    dynamic_layers: tuple[str, ...] = ()  # Keras layers whose matrix products quantize their input with its range per call (ORT dynamic, LiteRT hybrid)


@dataclass(frozen=True)
class CalibrationRecord:
    """The training images an int8 file was calibrated on."""

    images: int
    data_source: str | None
    seed: int


@dataclass(frozen=True)
class CleanupReport:
    """onnxslim's clean-up of a converted graph: kept only when the outputs stayed bit-identical."""

    tool: str
    applied: bool
    nodes_before: int
    nodes_after: int
    bytes_before: int
    bytes_after: int
    reason: str


@dataclass(frozen=True)
class OptimizerFinding:
    """The file under ORT's default optimizations and with all of them off, judged by the caller's criterion."""

    right_unoptimized: bool  # with every optimization off, the file meets the criterion
    max_abs_diff_unoptimized: float  # against the reference, optimizations off
    passes: tuple[str, ...] = ()  # disabling these alone makes the default session right; () when none was isolated
    reproduction: str | None = None  # the minimal graph written for an upstream report (file name in the export folder)

    def describe(self) -> str:
        if not self.right_unoptimized:
            return f"also outside it with ONNX Runtime's graph optimizations off (max |Δp| {self.max_abs_diff_unoptimized:.3g}): the file itself differs"
        text = (f"right with ONNX Runtime's graph optimizations off (max |Δp| {self.max_abs_diff_unoptimized:.3g}): "
                "an ORT optimizer pass breaks this graph")
        if self.passes:
            text += f"; the pass: {', '.join(self.passes)} (disabled_optimizers={list(self.passes)!r} fixes it)"
        if self.reproduction:
            text += f"; minimal graph for a report: {self.reproduction}"
        return text


@dataclass(frozen=True)
class SessionCheck:
    """An fp32 ONNX file against Keras under ONNX Runtime's default session options, as apps open it, at export."""

    max_abs_diff: float
    bound: float
    images: int
    passed: bool
    finding: OptimizerFinding | None = None  # when it failed: whether an optimizer pass is to blame, and which


@dataclass(frozen=True)
class Float16Record:
    """How an fp16 ONNX file was made: the converter, and whether its input and output stayed fp32 (keep_io_types)."""

    converter: str
    keep_io_types: bool


@dataclass(frozen=True)
class SearchStep:
    """One candidate of `--max-drop`'s search: the layers kept in float (and those with 16-bit activations, and with
    per-call ranges) and how the file did on the validation images."""

    kept_float_layers: tuple[str, ...]
    accuracy: float
    drop_points: float
    agreement: float
    agreement_low: float  # its one-sided 95 % lower bound (Clopper-Pearson, decided images)
    bytes: int
    p50_batch1_us: float
    within_budget: bool  # both criteria PASS, and PASS again on a second draw at their pessimistic rates (`paired_criteria`)
    int16_layers: tuple[str, ...] = ()  # the 16-bit tier: int8 weights, 16-bit activations
    dynamic_layers: tuple[str, ...] = ()  # the same tier for matrix products: int8 weights, activation ranges per call


@dataclass(frozen=True)
class SearchResult:
    """`--max-drop`'s trail: the budget, the validation images it judged on, and every step."""

    max_drop_points: float
    min_agreement: float
    validation: str
    steps: tuple[SearchStep, ...]
    seconds: float
    met: bool = False  # the last step is within the budget (set by `of`)
    refused: tuple[str, ...] = ()  # candidates the converter refused (the search went on without them): which, and why

    @classmethod
    def of(cls, max_drop_points: float, min_agreement: float, validation: str, steps: tuple[SearchStep, ...], seconds: float,
           refused: tuple[str, ...] = ()) -> SearchResult:
        return cls(max_drop_points, min_agreement, validation, steps, seconds, bool(steps) and steps[-1].within_budget, refused)


@dataclass(frozen=True)
class DerivedFrom:
    """A file converted from another row (fp16 and int8 ONNX from fp32): which, and whether that row was published."""

    artifact: str
    published: bool


@dataclass(frozen=True)
class WeightCounts:
    """How a file stores its weights, as its runtime reads the file: the elements of its constant tensors (less the
    scales and zero points of its quantization, and ONNX's int64 shapes), in all and in 8 bits. The share tells an int8
    file that keeps many layers in float from one that keeps none."""

    elements: int
    eight_bit: int

    @property
    def eight_bit_share(self) -> float | None:
        return self.eight_bit / self.elements if self.elements else None


@dataclass(frozen=True)
class ArtifactDetails:
    """Everything the manifest records about how one artifact was made; a part that does not apply is null."""

    opset: int | None = None
    graph_cleanup: CleanupReport | None = None
    valid_pools_after_zero_pads: tuple[str, ...] = ()  # MaxPools given auto_pad=VALID (core/onnx_graph.py)
    identity_reshapes_removed: tuple[str, ...] = ()  # Reshapes to the shape their input already has (core/onnx_graph.py)
    rewritten_for_xnnpack: tuple[str, ...] = ()  # int8 HARD_SWISH and RELU written as operators XNNPACK runs (core/tflite_graph.py)
    default_session_check: SessionCheck | None = None
    float16: Float16Record | None = None
    quantization: QuantizationRecord | None = None
    calibration: CalibrationRecord | None = None
    accuracy_search: SearchResult | None = None
    derived_from: DerivedFrom | None = None
    custom_metadata: dict[str, str] = field(default_factory=dict)  # an ONNX file's metadata properties, as ONNX Runtime reads them
    providers: tuple[str, ...] = ()  # the ONNX Runtime providers the describing session had
    signatures: tuple[str, ...] = ()  # a TFLite file's signatures
    metadata: str | None = None  # where a TFLite file carries edgecnn's facts
    weights: WeightCounts | None = None  # how the published file stores its weights

    def with_runtime_facts(self, facts: ArtifactDetails) -> ArtifactDetails:
        """These details with what the runtime read from the published file (its metadata, providers, signatures, weights)."""
        return replace(self, custom_metadata=facts.custom_metadata, providers=facts.providers, signatures=facts.signatures,
                       weights=facts.weights)
