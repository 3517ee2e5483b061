"""predict's output: per-image lines or JSON on stdout, and a progress bar for long runs. Apart from `render` and its
tables, so that `edgecnn predict`, which an app may run once per picture, imports only what it prints with.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgecnn.stages.predict import PredictResult


SHOWN_CLASSES = 15  # the summary fits one screen: the most frequent classes, then one line for the rest
SHOWN_REASONS = 5


def print_predictions(result: PredictResult, top_k: int, as_json: bool) -> None:
    """Per image on stdout (JSON or text), then for several pictures a summary; with --output only the summary, since
    the file holds every row."""
    predictions = result.predictions
    if result.output is not None:
        print("\n".join(summary_lines(result)) + f"\nwrote {result.output}")
        return
    if as_json:
        print(json.dumps([item.to_dict(top_k, result.class_names) for item in predictions], indent=2))
        return
    for item in predictions:
        if item.error:
            print(f"{item.path}: error: {item.error}")
            continue
        names = result.class_names
        ranked = item.top(top_k)
        print(f"{item.path}: {names[ranked[0][0]]}   ({'  '.join(f'{names[index]}: {probability:.3f}' for index, probability in ranked)})")
    if len(predictions) > 1:
        print("\n" + "\n".join(summary_lines(result)))


def summary_lines(result: PredictResult) -> list[str]:
    """A run on one screen: how many pictures each class got (with the mean top-1 probability), and how many files
    failed, grouped by why (the reason without its parenthesised detail), each with one example."""
    predictions = result.predictions
    lines = [f"classified {len(predictions) - result.failed:,} of {len(predictions):,} images ({result.failed} unreadable)"]
    counts: dict[int, list[float]] = {}
    for item in predictions:
        if item.index is not None:
            counts.setdefault(item.index, []).append(item.probabilities[item.index])
    ranked = sorted(counts.items(), key=lambda entry: (-len(entry[1]), entry[0]))
    classified = max(1, len(predictions) - result.failed)
    width = max([len("class"), *(len(result.class_names[index]) for index, _ in ranked[:SHOWN_CLASSES])])
    if ranked:
        lines.append(f"  {'class':<{width}}  {'images':>7}  {'share':>6}  mean p")
        lines += [f"  {result.class_names[index]:<{width}}  {len(scores):>7,}  {len(scores) / classified:>6.1%}  {sum(scores) / len(scores):.3f}"
                  for index, scores in ranked[:SHOWN_CLASSES]]
    if len(ranked) > SHOWN_CLASSES:
        rest = sum(len(scores) for _, scores in ranked[SHOWN_CLASSES:])
        lines.append(f"  … {len(ranked) - SHOWN_CLASSES} more classes with {rest:,} images")
    reasons: dict[str, list[str]] = {}
    for item in predictions:
        if item.error:
            reasons.setdefault(item.error.split(" (")[0], []).append(item.path)
    if reasons:
        lines.append(f"  failed: {result.failed:,}")
        for reason, paths in sorted(reasons.items(), key=lambda entry: -len(entry[1]))[:SHOWN_REASONS]:
            lines.append(f"  {len(paths):>7,}  {reason}  (e.g. {paths[0]})")
        if len(reasons) > SHOWN_REASONS:
            lines.append(f"  … {len(reasons) - SHOWN_REASONS} more reasons: see each row")
    return lines


@contextlib.contextmanager
def predict_progress(minimum: int = 1000) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, when it is a terminal, once a run has at least `minimum` images (short runs, logs and
    pipes stay quiet and never import rich)."""
    bar: list[Any] = []  # (progress, task) once started
    terminal = sys.stderr.isatty()

    def advance(done: int, total: int) -> None:
        if total < minimum or not terminal:
            return
        if not bar:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            progress = Progress(TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True))
            progress.start()
            bar.extend((progress, progress.add_task("classifying", total=total)))
        bar[0].update(bar[1], completed=done)

    try:
        yield advance
    finally:
        if bar:
            bar[0].stop()
