"""The contract every registered runtime passes, run for each runtime on every file format and precision it claims,
on the seed digit CNN and on a 32x32 RGB MobileNet: fp32 files match Keras within verify's fp32 bound for what ran;
every claimed file runs and gives probabilities; the load is timed; a missing library or device is one line with the
fix; nothing falls back silently. A runtime whose library is not installed is skipped with the install command."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from edgecnn.core.data import load_dataset
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.manifest import Precision, load_manifest
from edgecnn.measure.thresholds import thresholds_for
from edgecnn.runners import RUNTIMES, RunOptions, RuntimeName, check_usable, infer_in_batches, open_runner, parse_runtimes, registry
from edgecnn.stages.verify import ParityResult, Status, compare, keras_reference

RUNTIME_NAMES = list(RuntimeName)
ACCELERATED = [name for name in RuntimeName if RUNTIMES[name].accelerator is not None]


def needs(runtime: RuntimeName) -> None:
    if not registry.installed(runtime):
        info = RUNTIMES[runtime]
        pytest.skip(f"{info.label} is not installed ({info.install})")


@pytest.fixture(scope="module", params=["exported", "rgb_exported"])
def model_exports(request):
    return load_manifest(request.getfixturevalue(request.param))


@pytest.mark.parametrize("runtime", RUNTIME_NAMES, ids=[name.value for name in RUNTIME_NAMES])
def test_every_claimed_file_runs_and_fp32_matches_keras(runtime, model_exports):
    needs(runtime)
    manifest = model_exports
    model = manifest.source_model()
    dataset = load_dataset(model.data_request())
    images, labels = dataset.x_test[:300], dataset.y_test[:300]
    reference = model.description.probabilities(keras_reference(manifest, dataset, True)[:300])
    claimed = [entry for entry in manifest.artifacts if entry.format in RUNTIMES[runtime].formats]
    assert {entry.precision for entry in claimed} >= {Precision.FP32}, "every runtime claims a format whose fp32 file it must match"
    for entry in claimed:
        runner = open_runner(entry.format, manifest.resolve(entry.path), RunOptions(), model.description, runtime)
        try:
            probabilities = model.description.probabilities(infer_in_batches(runner, images))
            thresholds = thresholds_for(entry.precision, runner.arithmetic)
            assert runner.session_create_ms > 0, f"{entry.name}: load time not measured"
        finally:
            runner.close()
        assert probabilities.shape == reference.shape and np.all(np.isfinite(probabilities)), entry.name
        quantized = entry.precision in (Precision.INT8, Precision.DYNAMIC)  # int8 probabilities come in steps of the output scale
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.05 if quantized else 1e-3)
        if entry.precision is Precision.FP32:
            base = ParityResult(entry.name, entry.path, entry.precision, entry.sha256, Status.PASS, thresholds)
            result = compare(base, probabilities, reference, labels)
            assert result.passed and result.max_abs_diff is not None and result.max_abs_diff <= 1e-4, (runtime, entry.name, result.failures)


@pytest.mark.parametrize("runtime", RUNTIME_NAMES, ids=[name.value for name in RUNTIME_NAMES])
def test_a_missing_library_is_one_line_with_the_install_command(runtime, exported, monkeypatch):
    info = RUNTIMES[runtime]
    monkeypatch.setattr(registry, "installed", lambda name: name is not runtime)
    with pytest.raises(EdgecnnError) as caught:
        parse_runtimes([runtime.value], allow_many=False)
    assert info.install in caught.value.one_line() and "\n" not in caught.value.one_line()
    run = run_cli_without(info.library, "verify", "--manifest", str(exported), "--runtime", runtime.value)
    assert_one_line_error(run, info.label, info.install, "--runtime")


@pytest.mark.parametrize("runtime", ACCELERATED, ids=[name.value for name in ACCELERATED])
def test_an_absent_accelerator_is_one_line_and_never_a_silent_fallback(runtime, exported):
    """Each runtime's accelerator, asked for on a machine without it: one line before any work, no CPU run instead."""
    needs(runtime)
    accelerator = RUNTIMES[runtime].accelerator
    assert accelerator is not None
    options = replace(accelerator, runtimes=(runtime,))
    try:
        check_usable(options)
    except EdgecnnError as exc:
        assert "\n" not in exc.one_line()
    else:
        pytest.skip(f"{RUNTIMES[runtime].label} has that device here")
    device = ["--provider", "cuda"] if options.provider.on_device else ["--device", options.device or ""]
    run = run_cli("verify", "--manifest", str(exported), "--runtime", runtime.value, *device)
    assert_one_line_error(run, "--provider" if options.provider.on_device else "--device")
    assert run.stdout == ""


def test_building_the_cli_imports_no_runtime():
    code = ("import sys, edgecnn.cli; loaded = [m for m in ('onnxruntime', 'ai_edge_litert', 'openvino', 'tensorflow') if m in sys.modules];"
            "print(','.join(loaded))")
    import subprocess

    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == ""


def run_cli_without(library: str, *args: str):
    """`edgecnn ARGS` in a fresh process where `library` cannot be imported, as on a machine without it."""
    import subprocess

    from conftest import CliRun

    code = f"import sys; sys.modules[{library!r}] = None; from edgecnn.cli import main; sys.argv = ['edgecnn', *sys.argv[1:]]; main()"
    completed = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    return CliRun(completed.returncode, completed.stdout, completed.stderr)
