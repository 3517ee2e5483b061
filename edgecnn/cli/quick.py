"""`edgecnn predict` without typer: the command an app or a shell loop runs once per picture, so its start-up is
the product's (issue 20: at most 1.5x the bare `import onnxruntime, numpy, PIL.Image`).

A well-formed invocation is parsed here with getopt from the declarations typer also builds the command from
(`options.py`); anything else (--help, a typo, a bad value, root options before the command) goes to the typer app,
which words the message exactly as for every other command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecnn.cli.options import JSON_OPTION, REQUIRED, RUNTIME_OPTIONS, Declared, parse_quickly, run_options

PREDICT_OPTIONS = (
    Declared("images", "", str, REQUIRED, repeatable=True, metavar="IMAGES...",
             help="Pictures (PNG, JPEG, WebP, TIFF, GIF, BMP, HEIC, ...; any size, color or gray; upright by EXIF) or .npy files, folders (searched recursively) or quoted globs."),
    Declared("model", "--model", Path, None,
             help="Exported .onnx or .tflite model. Default: the onnx-fp32 file in exports/manifest.json."),
    Declared("top_k", "--top-k", int, 3, help="How many classes to list per image."),
    Declared("output", "--output", Path, None, help="Write every prediction to FILE.jsonl or FILE.csv."),
    Declared("strict", "--strict", bool, False, help="Stop at the first unreadable image instead of reporting it as a row."),
    Declared("batch_size", "--batch-size", int, 256, help="Images per inference call."),
    Declared("no_verify_hash", "--no-verify-hash", bool, False, help="Skip the sha256 check against a manifest beside the model."),
    JSON_OPTION,
    *RUNTIME_OPTIONS,
)


def predict_and_print(values: dict[str, Any]) -> int:
    """The predict command's body, whichever parser read `values`; exit 1 if any image was unreadable."""
    from edgecnn.report.predictions import predict_progress, print_predictions
    from edgecnn.stages.predict import PredictOptions, predict

    run = run_options(values, several=False)
    options = PredictOptions(images=tuple(values["images"]), model=values["model"], top_k=values["top_k"],
                             verify_hash=not values["no_verify_hash"], run=run, output=values["output"], strict=values["strict"],
                             batch_size=values["batch_size"])
    with predict_progress() as progress:
        result = predict(options, progress)
    print_predictions(result, options.top_k, values["json_output"])
    return 1 if result.failed else 0


def run_quickly(args: Sequence[str]) -> int | None:
    """The exit code of a well-formed `predict` invocation, run without typer; None: the typer app takes `args`."""
    if not args or args[0] != "predict":
        return None
    values = parse_quickly(PREDICT_OPTIONS, args[1:])
    return None if values is None else predict_and_print(values)
