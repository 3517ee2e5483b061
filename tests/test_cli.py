from __future__ import annotations

from conftest import assert_one_line_error, run_cli, run_in_fresh_process

from edgecnn import __version__


def test_help_and_version_do_not_import_tensorflow():
    for args in (("--help",), ("--version",), ("train", "--help")):
        assert run_in_fresh_process(*args) == (0, set())


def test_version_prints_package_version():
    run = run_cli("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"edgecnn {__version__}"


def test_usage_errors_are_one_line():
    assert_one_line_error(run_cli("train", "--epochs", "many"), "--epochs")
    assert_one_line_error(run_cli("train", "--lr-schedule", "sometimes"), "--lr-schedule")
    assert_one_line_error(run_cli("no-such-command"), "no-such-command")
