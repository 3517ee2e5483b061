from __future__ import annotations

import pytest
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


COMMANDS = ("train", "export", "verify", "bench", "pipeline", "predict", "info")


def help_text(*args: str) -> str:
    run = run_cli(*args)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_short_help_is_the_same_as_long_help(command):
    words = (command,) if command else ()
    assert help_text(*words, "-h") == help_text(*words, "--help")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_flags_and_no_python_types(command):
    text = help_text(command, "--help")
    assert "<bool>" not in text and "list[" not in text and "{" not in text
    assert "--debug" in text  # accepted after the subcommand too


def test_usage_line_names_arguments_in_capitals():
    assert "Usage: edgecnn predict [OPTIONS] IMAGES..." in help_text("predict", "--help")
    assert "Usage: edgecnn info [OPTIONS] MODEL" in help_text("info", "--help")


def test_help_keeps_literal_brackets():
    assert "[batch, H, W]" in " ".join(help_text("export", "--help").split())


def test_one_option_name_for_formats():
    for command in ("export", "pipeline"):
        text = help_text(command, "--help")
        assert "--format " in text and "--formats" not in text


def test_debug_works_after_the_subcommand(monkeypatch, capsys):
    import edgecnn.stages.info
    from edgecnn.cli import main

    def explode(path):
        raise RuntimeError("boom")

    monkeypatch.setattr(edgecnn.stages.info, "describe", explode)
    with pytest.raises(RuntimeError, match="boom"):
        main(["info", "whatever.onnx", "--debug"])
    with pytest.raises(SystemExit) as exit_info:  # the next in-process run starts without --debug again
        main(["info", "whatever.onnx"])
    assert exit_info.value.code == 1
    assert "rerun with --debug" in capsys.readouterr().err


def test_shell_completion_is_offered_and_completes_commands():
    assert "--install-completion" in help_text("--help")
    completed = run_cli(env={"_EDGECNN_COMPLETE": "complete_bash", "COMP_WORDS": "edgecnn ver", "COMP_CWORD": "1"})
    assert completed.returncode == 0 and completed.stdout.split() == ["verify"]
    options = run_cli(env={"_EDGECNN_COMPLETE": "complete_bash", "COMP_WORDS": "edgecnn bench --prov", "COMP_CWORD": "2"})
    assert options.stdout.split() == ["--provider"]


PREDICT_INVOCATIONS = (
    ("a.png",),
    ("a.png", "b.png", "--model", "m.onnx", "--top-k", "5", "--json"),
    ("--top-k=2", "a.png", "--model=m.tflite", "pictures", "--no-tf32", "--threads", "1", "--strict", "--debug"),
    ("a.png", "--runtime", "onnxruntime", "--runtime", "litert", "--provider", "cuda", "--device", "1", "--allow-fallback",
     "--batch-size", "8", "--output", "x.jsonl", "--no-verify-hash", "--tf32"),
    ("--model", "m.onnx", "--", "-dash.png"),
)


@pytest.mark.parametrize("args", PREDICT_INVOCATIONS)
def test_predict_without_typer_reads_what_typer_reads(monkeypatch, args):
    """`edgecnn predict` is parsed without typer (start-up); both parsers are built from one declaration and agree."""
    import edgecnn.cli.deploy
    from edgecnn.cli import run_app
    from edgecnn.cli.options import State, parse_quickly
    from edgecnn.cli.quick import PREDICT_OPTIONS

    through_typer: list[dict] = []
    monkeypatch.setattr(edgecnn.cli.deploy, "predict_and_print", lambda values: through_typer.append(values) or 0)
    assert run_app(["predict", *args]) == 0
    typer_debug, State.debug = State.debug, False
    assert parse_quickly(PREDICT_OPTIONS, args) == through_typer[0]
    assert State.debug is typer_debug is ("--debug" in args)
    State.debug = False


@pytest.mark.parametrize("args", [(), ("-h",), ("--help",), ("a.png", "--mod", "m.onnx"), ("a.png", "--top-k", "many"),
                                  ("a.png", "--json=yes"), ("a.png", "--provider", "gpu"), ("a.png", "--no-such-option")])
def test_predict_leaves_anything_but_a_well_formed_invocation_to_typer(args):
    from edgecnn.cli.options import parse_quickly
    from edgecnn.cli.quick import PREDICT_OPTIONS

    assert parse_quickly(PREDICT_OPTIONS, args) is None


def test_predict_help_and_usage_errors_still_come_from_typer():
    assert "Usage: edgecnn predict [OPTIONS] IMAGES..." in help_text("predict", "-h")
    assert_one_line_error(run_cli("predict", "a.png", "--top-k", "many"), "Invalid value for '--top-k'", "edgecnn predict")
    assert_one_line_error(run_cli("predict", "a.png", "--mod", "m.onnx"), "No such option: --mod", "edgecnn predict")
    assert_one_line_error(run_cli("predict"), "Missing argument 'IMAGES...'")


def test_options_are_declared_one_way():
    """Commands declare options only as `Declared` records; typer's own parameter types live in the one module that
    builds the app from them."""
    from pathlib import Path

    import edgecnn.cli

    for module in Path(edgecnn.cli.__file__).parent.glob("*.py"):
        text = module.read_text()
        if module.name != "app.py":
            assert "typer.Option" not in text and "typer.Argument" not in text and "Annotated" not in text, module.name


def test_every_command_takes_debug_after_its_name_and_shares_the_runtime_options():
    for command in ("verify", "bench", "selftest", "pipeline", "predict"):
        text = help_text(command, "--help")
        assert "--debug" in text and "--allow-fallback" in text and "--tf32 / --no-tf32" in text, command


def test_the_quick_parser_leaves_an_out_of_range_value_to_typer():
    from edgecnn.cli.options import Declared, parse_quickly

    severity = (Declared("severity", "--severity", int, 3, help="1-5", minimum=1, maximum=5),)
    assert parse_quickly(severity, ("--severity", "4")) == {"severity": 4}
    assert parse_quickly(severity, ("--severity", "9")) is None
    assert parse_quickly(severity, ()) == {"severity": 3}
    assert_one_line_error(run_cli("verify", "--severity", "9"), "9 is not in the range 1<=x<=5", "edgecnn verify")
