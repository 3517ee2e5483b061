"""The `edgecnn` command: parse options, call a stage, print its result. No logic lives here.

The app and the options several commands share live in `app.py`; the commands in `deploy.py` (what a device install
runs: predict, info, selftest, verify, bench, doctor) and `build.py` (train, export, pipeline). `main` imports only
what the invocation needs: a well-formed `edgecnn predict` runs without typer (`quick.py`), a deploy command never
imports the training side, and stages are imported inside each command, so `edgecnn --help` and `--version` never
import TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from edgecnn.cli.options import State
from edgecnn.cli.quick import run_quickly
from edgecnn.core.errors import EdgecnnError, IntegrityError, first_line


class CurrentStderrHandler(logging.StreamHandler):
    """Writes each record to whatever `sys.stderr` is when it is logged: pytest and other in-process callers swap
    the stream, and a handler holding the old (closed) one would fail with "--- Logging error ---"."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        """The stream is always the current sys.stderr; the base class's assignment is ignored."""


def _configure_logging() -> None:
    """Idempotent: however often `main` runs in one process, the edgecnn logger has exactly one terminal handler."""
    logger = logging.getLogger("edgecnn")
    if not any(isinstance(handler, CurrentStderrHandler) for handler in logger.handlers):
        logger.addHandler(CurrentStderrHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.INFO, "info")


def advice(error: EdgecnnError) -> str:
    """What the user can type next: CLI knowledge, so it lives here rather than in the stages that raise."""
    from edgecnn.runners import ProviderError

    if isinstance(error, ProviderError):
        return "; run `edgecnn doctor` to see what is missing, or pass --allow-fallback to run on the CPU and record it"
    if isinstance(error, IntegrityError):
        return "; pass --no-verify-hash to use it anyway"
    return ""


DEPLOY_COMMANDS = frozenset({"predict", "info", "selftest", "verify", "bench", "doctor"})


def register_commands(args: Sequence[str]) -> None:
    """Import the command modules this invocation needs (importing one registers its commands on `app`): a deploy
    command never imports the training side, whose option types pull in the train and export stages."""
    named = next((arg for arg in args if not arg.startswith("-")), None)
    if named not in DEPLOY_COMMANDS:
        import edgecnn.cli.build  # noqa: F401
    import edgecnn.cli.deploy  # noqa: F401


def run_app(args: Sequence[str]) -> int:
    """Parse and run `args` with the typer app; a usage error becomes one line and exit code 2."""
    import typer
    from typer._click import exceptions as click_exceptions  # typer >= 0.25 vendors its own copy of click

    from edgecnn.cli.app import app

    register_commands(args)
    try:
        outcome = app(args=list(args), prog_name="edgecnn", standalone_mode=False)
    except click_exceptions.ClickException as exc:
        context = getattr(exc, "ctx", None)
        where = context.command_path if context is not None else "edgecnn"
        print(f"error: {' '.join(exc.format_message().split())} ({where})", file=sys.stderr)
        return 2
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        return 130
    return outcome if isinstance(outcome, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line and exit code 2; anything else a short hint to use --debug."""
    args = sys.argv[1:] if argv is None else argv
    _configure_logging()
    State.debug = False  # set again by --debug; a previous in-process run must not leave it on
    try:
        outcome = run_quickly(args)
        if outcome is None:
            outcome = run_app(args)
    except EdgecnnError as exc:
        print(f"error: {exc.one_line()}{advice(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader stopped early (`| head`) and has what it wanted, as from any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the final flush must not fail again
        sys.exit(1)
    except Exception as exc:
        if State.debug:
            raise
        summary = first_line(exc)
        summary = summary if len(summary) <= 200 else summary[:199] + "…"  # exception texts can hold whole tensors
        print(f"error: unexpected {type(exc).__name__}: {summary} (rerun with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
    sys.exit(outcome)


def console() -> None:
    """The `edgecnn` command (the console script, and `python -m edgecnn`): `main`, and after `predict` a process exit
    without the interpreter's teardown (`os._exit`, as Instagram's servers skip their final collection). predict is
    what an app may run once per picture; with ONNX Runtime's session and these modules loaded that teardown costs it
    40-60 ms, a third of the runtime's own import, and by then predict has closed everything it wrote. Every other
    command exits normally: TensorFlow and the report writers keep their exit work."""
    try:
        main()
    except SystemExit as exit:
        if sys.argv[1:2] != ["predict"] or not isinstance(exit.code, int):
            raise
        with contextlib.suppress(OSError):  # a reader that closed the pipe early (`| head`) has what it wanted
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(exit.code)


if __name__ == "__main__":
    console()
