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


def print_predictions(result: PredictResult, top_k: int, as_json: bool) -> None:
    """Per image on stdout (JSON or text); with --output only a summary, since the file holds every row."""
    predictions = result.predictions
    if result.output is not None:
        print(f"classified {len(predictions) - result.failed:,} of {len(predictions):,} images ({result.failed} unreadable); wrote {result.output}")
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
