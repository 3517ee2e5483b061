"""Charts for reports (matplotlib, headless Agg backend), each written atomically as PNG."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.core.errors import TRAINING_SIDE_FIX
from edgecnn.core.files import atomic_path

log = logging.getLogger("edgecnn")


def drawn(draw: Callable[[Path], None], path: Path, what: str) -> Path | None:
    """`path` once `draw` wrote the chart there; on a device install without matplotlib the chart is skipped and the
    log says so (the JSON report and the table are complete without it)."""
    if importlib.util.find_spec("matplotlib") is None:
        log.warning("skipped %s (%s): matplotlib is not in the device install; %s draws it", what, path.name, TRAINING_SIDE_FIX)
        return None
    draw(path)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> None:
    with atomic_path(Path(path)) as temp:
        figure.savefig(temp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)


def plot_training_curves(epochs: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, train vs validation."""
    plt = _pyplot()
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    numbers = [row["epoch"] for row in epochs]
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(numbers, [row[metric] for row in epochs], marker="o", label="train")
        if all(f"val_{metric}" in row for row in epochs):
            axis.plot(numbers, [row[f"val_{metric}"] for row in epochs], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    _save(figure, path)


def plot_confusion_matrices(matrices: dict[str, np.ndarray], path: Path, class_names: Sequence[str]) -> None:
    """One heat map per named confusion matrix (rows: true class, columns: predicted), labelled with the class names."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(matrices), figsize=(5.2 * len(matrices), 4.6), squeeze=False)
    for axis, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        axis.imshow(matrix, cmap="Blues")
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                color = "white" if count > matrix.max() / 2 else "black"
                axis.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_xticks(range(matrix.shape[1]), list(class_names), rotation=90 if max(map(len, class_names)) > 2 else 0, fontsize=7)
        axis.set_yticks(range(matrix.shape[0]), list(class_names), fontsize=7)
    _save(figure, path)


def plot_latency(series: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    """p50 latency per image against batch size, one line per artifact (log-log)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(11, 5))
    for name, points in series.items():
        batch_sizes = [batch for batch, _ in points]
        axis.plot(batch_sizes, [micros / batch for batch, micros in points], marker="o", label=name)
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("batch size")
    axis.set_ylabel("p50 latency per image (µs)")
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")
    if series:  # beside the plot, never over the lines
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _save(figure, path)


def plot_layer_sqnr(layers: Sequence[tuple[str, float]], floor_db: float, path: Path, title: str) -> None:
    """SQNR per layer in model order, with the floor for the artifact's precision: where the line crosses it, the
    artifact stops computing what the Keras layer computes."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6.0, 0.45 * len(layers)), 4))
    positions = np.arange(len(layers))
    axis.plot(positions, [value for _, value in layers], marker="o")
    axis.axhline(floor_db, color="tab:red", linestyle="--", label=f"floor {floor_db:g} dB")
    axis.set_xticks(positions, [name for name, _ in layers], rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("SQNR vs Keras (dB)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    _save(figure, path)


def plot_corruptions(corruptions: Sequence[str], keras: Sequence[float], accuracy: dict[str, list[float | None]],
                     agreement: dict[str, list[float | None]], path: Path, title: str) -> None:
    """Per corruption (the first is the plain split): each file's accuracy beside Keras', and its top-1 agreement with
    Keras on the same corrupted pictures — where a quantized file drifts, its agreement falls below the others'."""
    plt = _pyplot()
    figure, (accuracy_axis, agreement_axis) = plt.subplots(1, 2, figsize=(max(10.0, 1.3 * len(corruptions)), 4.4))
    positions = np.arange(len(corruptions))
    accuracy_axis.plot(positions, keras, color="black", marker="s", linewidth=2, label="Keras")
    for name, values in accuracy.items():
        accuracy_axis.plot(positions, [np.nan if value is None else value for value in values], marker="o", alpha=0.8, label=name)
    for name, values in agreement.items():
        agreement_axis.plot(positions, [np.nan if value is None else value for value in values], marker="o", alpha=0.8, label=name)
    for axis, label in ((accuracy_axis, "accuracy"), (agreement_axis, "top-1 agreement with Keras")):
        axis.set_xticks(positions, corruptions, rotation=35, ha="right", fontsize=8)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    accuracy_axis.set_title(f"accuracy on corrupted test images ({title})")
    agreement_axis.set_title("agreement with Keras on the same images")
    agreement_axis.legend(fontsize=7, loc="lower left")
    _save(figure, path)


@dataclass(frozen=True)
class FrontPoint:
    """One file in the size × latency × accuracy picture."""

    label: str  # "onnx-int8 (ORT CPU)"
    p50_us: float
    accuracy: float
    kilobytes: float
    on_front: bool


def plot_front(points: Sequence[FrontPoint], path: Path, title: str) -> None:
    """Batch-1 latency (x, log) against accuracy (y), the file's size as the marker's area: the files on the Pareto front
    filled and joined in latency order, the beaten ones hollow; the legend beside the plot names each file and its size
    (files of one precision sit on top of each other) — a scatter is read faster than the table beside it."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(11, 5))
    largest = max(point.kilobytes for point in points)
    colors = plt.get_cmap("tab10" if len(points) <= 10 else "tab20")
    for index, point in enumerate(points):
        color = colors(index % colors.N)
        axis.scatter(point.p50_us, point.accuracy, s=40 + 900 * point.kilobytes / largest, alpha=0.7, linewidths=2, edgecolors=color,
                     facecolors=color if point.on_front else "none",
                     label=f"{point.label}: {point.kilobytes:,.0f} KB{', front' if point.on_front else ''}")
    front = sorted((point for point in points if point.on_front), key=lambda point: point.p50_us)
    axis.plot([point.p50_us for point in front], [point.accuracy for point in front], color="black", linestyle="--", linewidth=1)
    axis.set_xscale("log")
    for axis_format in (axis.xaxis.set_major_formatter, axis.xaxis.set_minor_formatter):
        axis_format(plt.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axis.yaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:.2%}"))
    axis.set_xlabel("batch-1 p50 latency (µs, CPU; log)")
    axis.set_ylabel("accuracy on the test split")
    axis.set_title(f"{title} (filled: the Pareto front; area: file size)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, markerscale=0.5)
    _save(figure, path)
