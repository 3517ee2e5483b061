"""Which of ONNX Runtime's graph optimizations changes a file's answers, and the smallest graph that shows it.

ORT optimizes every session by default (ORT_ENABLE_ALL), and that is how apps open a file. A pass that is wrong for
some graph makes a correct file give wrong answers in every app, while the same file with optimizations off is
right: `Pad_Fusion` folds a zero Pad into the following MaxPool, whose own padding is -inf (microsoft/onnxruntime#24737,
ResNetV2's stem). Export checks every fp32 file this way, and verify does when an fp32 file is outside its bound. The
pass is found by bisection over `disabled_optimizers`, over the names the installed ORT carries; the graph is cut to
the shortest run of nodes that still shows the difference, for an upstream report.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact_details import OptimizerFinding

# Transformer and rewrite-rule names as the library spells them (ConstantFolding, Pad_Fusion, TransposeOptimizer, …)
PASS_NAME = re.compile(rb"(?<=\x00)([A-Z][A-Za-z0-9]*(?:_Fusion|Fusion|Elimination|Folding|Sharing|Transformer|Optimizer))(?=\x00)")
RELATIVE_TOLERANCE = 1e-3  # of a tensor's largest magnitude: fusions reorder fp32 sums (~1e-6), a wrong pass changes values


@functools.cache
def pass_names() -> tuple[str, ...]:
    """The graph transformers and rewrite rules of the installed ORT, read from its library: ORT has no API that lists
    them, and `disabled_optimizers` silently ignores a name it does not know."""
    import onnxruntime

    names: set[str] = set()
    for library in (Path(onnxruntime.__file__).parent / "capi").glob("onnxruntime_pybind11_state*"):
        names |= {match.decode() for match in PASS_NAME.findall(library.read_bytes())}
    return tuple(sorted(names))


def run_cpu(model: bytes | str, feeds: dict[str, np.ndarray], optimized: bool = True, disabled: tuple[str, ...] = ()) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))
    return session.run(None, feeds)


def diagnose(path: Path, feeds: dict[str, np.ndarray], judge: Callable[[np.ndarray], float], bound: float,
             report_folder: Path | None = None) -> OptimizerFinding:
    """`judge` turns the file's output into its max |Δp| against the reference; `bound` is what it must meet. With
    optimizations off and right, the responsible pass is bisected and, given a folder, the minimal graph written."""
    unoptimized = judge(run_cpu(str(path), feeds, optimized=False)[0])
    if not unoptimized <= bound:
        return OptimizerFinding(False, unoptimized)

    def right_without(names: tuple[str, ...]) -> bool:
        return judge(run_cpu(str(path), feeds, disabled=names)[0]) <= bound

    passes = bisect_passes(pass_names(), right_without)
    reproduction = None
    if passes and report_folder is not None:
        reproduction = write_reproduction(path, feeds, passes, report_folder / f"ort_repro_{path.stem}.onnx")
    return OptimizerFinding(True, unoptimized, passes, reproduction)


def bisect_passes(candidates: tuple[str, ...], right_without: Callable[[tuple[str, ...]], bool]) -> tuple[str, ...]:
    """The smallest set, by halving, whose disabling makes the file right; () when disabling them all does not."""
    if not candidates or not right_without(candidates):
        return ()
    while len(candidates) > 1:
        middle = len(candidates) // 2
        if right_without(candidates[:middle]):
            candidates = candidates[:middle]
        elif right_without(candidates[middle:]):
            candidates = candidates[middle:]
        else:
            break  # two passes interact: report the set
    return candidates


def write_reproduction(path: Path, feeds: dict[str, np.ndarray], passes: tuple[str, ...], destination: Path) -> str | None:
    """The shortest run of nodes whose output differs between ORT's default session and the one with `passes` off,
    with its input values (`<name>.npz`): what an upstream report needs. None when no run short of the whole graph shows it."""
    import onnx

    from edgecnn.core.files import atomic_path

    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    values = all_values(model, feeds)

    def shows_it(start: int, end: int) -> tuple[bytes, dict[str, np.ndarray]] | None:
        piece, piece_feeds = cut(model, nodes, start, end, values)
        if piece is None:
            return None
        default = run_cpu(piece, piece_feeds)[0]
        fixed = run_cpu(piece, piece_feeds, disabled=passes)[0]
        scale = max(float(np.abs(fixed).max()), 1e-6)
        return (piece, piece_feeds) if float(np.abs(default.astype(np.float64) - fixed).max()) > RELATIVE_TOLERANCE * scale else None

    end = first_end(len(nodes), lambda index: shows_it(0, index) is not None)
    if end is None:
        return None
    for start in range(end, -1, -1):
        shown = shows_it(start, end)
        if shown is not None:
            piece, piece_feeds = shown
            with atomic_path(destination) as temp:
                temp.write_bytes(piece)
            with atomic_path(destination.with_suffix(".npz")) as temp, open(temp, "wb") as handle:
                np.savez(handle, allow_pickle=False, **piece_feeds)
            return destination.name
    return None


def first_end(count: int, shows: Callable[[int], bool]) -> int | None:
    """The first node index whose prefix shows the difference (binary search: once a prefix shows it, longer ones do)."""
    if count == 0 or not shows(count - 1):
        return None
    low, high = 0, count - 1
    while low < high:
        middle = (low + high) // 2
        if shows(middle):
            high = middle
        else:
            low = middle + 1
    return low


def all_values(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of the graph on `feeds`, computed with optimizations off (extra outputs change nothing then)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    declared = {output.name for output in copy.graph.output}
    typed = {info.name: info for info in onnx.shape_inference.infer_shapes(copy).graph.value_info}
    for node in copy.graph.node:
        for name in node.output:
            if name and name not in declared and name in typed:
                copy.graph.output.append(typed[name])
                declared.add(name)
    names = [output.name for output in copy.graph.output]
    return dict(zip(names, run_cpu(copy.SerializeToString(), feeds, optimized=False), strict=True)) | feeds


def cut(model: Any, nodes: list[Any], start: int, end: int, values: dict[str, np.ndarray]) -> tuple[bytes | None, dict[str, np.ndarray]]:
    """Nodes start..end that lead to node `end`'s first output, as a model whose inputs are the tensors they read from
    outside (fed with their computed values). None when a needed value is unknown."""
    from onnx import helper

    target = nodes[end].output[0]
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    needed, kept = {target}, []
    for node in reversed(nodes[start : end + 1]):
        if needed & set(node.output):
            kept.append(node)
            needed |= {name for name in node.input if name}
    kept.reverse()
    produced = {name for node in kept for name in node.output}
    outside = sorted({name for node in kept for name in node.input if name and name not in produced and name not in initializers})
    if target not in values or any(name not in values for name in outside):
        return None, {}
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(values[name].dtype), values[name].shape) for name in outside]
    output = helper.make_tensor_value_info(target, helper.np_dtype_to_tensor_dtype(values[target].dtype), None)
    used = [initializers[name] for name in dict.fromkeys(name for node in kept for name in node.input) if name in initializers]
    graph = helper.make_graph(kept, "ort_optimizer_reproduction", inputs, [output], used)
    piece = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return piece.SerializeToString(), {name: values[name] for name in outside}
