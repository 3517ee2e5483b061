from __future__ import annotations

import subprocess
import sys

from edgecnn import __version__

from conftest import assert_one_line_error, run_cli

PROBE = """
import sys
from edgecnn.cli import main
try:
    main({args!r})
except SystemExit as exit:
    code = exit.code
print("TF_IMPORTED" if "tensorflow" in sys.modules else "TF_NOT_IMPORTED", code)
"""


def probe(*args: str) -> str:
    completed = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True, timeout=60)
    return completed.stdout.strip().splitlines()[-1]


def test_help_and_version_do_not_import_tensorflow():
    assert probe("--help") == "TF_NOT_IMPORTED 0"
    assert probe("--version") == "TF_NOT_IMPORTED 0"
    assert probe("train", "--help") == "TF_NOT_IMPORTED 0"


def test_version_prints_package_version():
    run = run_cli("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"edgecnn {__version__}"


def test_usage_errors_are_one_line():
    assert_one_line_error(run_cli("train", "--epochs", "many"), "--epochs")
    assert_one_line_error(run_cli("train", "--lr-schedule", "sometimes"), "--lr-schedule")
    assert_one_line_error(run_cli("no-such-command"), "no-such-command")
