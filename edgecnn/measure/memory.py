"""Peak memory an artifact costs: resident memory added by creating its session and running its first batches.

Measured in a child process per artifact and runtime (`python -m edgecnn.measure.memory`), so nothing bench already
allocated is counted and what a runtime frees lazily cannot hide the next file's cost: the child imports the runtime
first, reads its resident set (VmRSS), then creates the session and runs one batch of each size in ascending order,
reading its peak resident set (VmHWM on Linux, ru_maxrss elsewhere) after each. LiteRT's `benchmark_model` and ORT's
`perf_test` report the same figure: what the model adds to a process that already holds the runtime.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.artifact import ArtifactFormat
from edgecnn.core.description import ModelDescription
from edgecnn.runners import Provider, RunOptions, RuntimeName, open_runner, plugin

CHILD_TIMEOUT_SECONDS = 300


def resident_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MiB; ru_maxrss where /proc is absent (macOS: bytes, Linux: KiB)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def peak_memory_mib(artifact_format: ArtifactFormat, path: Path, runtime: RuntimeName, run: RunOptions,
                    description: ModelDescription, batch_sizes: tuple[int, ...]) -> dict[int, float] | str:
    """Peak MiB added per batch size (cumulative in ascending order), or why the child could not measure it."""
    request = {"format": artifact_format.value, "path": str(path), "runtime": runtime.value, "description": description.to_dict(),
               "batch_sizes": sorted(batch_sizes), "run": asdict(run) | {"runtimes": [name.value for name in run.runtimes],
                                                                         "provider": run.provider.value}}
    try:
        finished = subprocess.run([sys.executable, "-m", "edgecnn.measure.memory", json.dumps(request)], capture_output=True, text=True,
                                  timeout=CHILD_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return f"the memory probe took over {CHILD_TIMEOUT_SECONDS} s"
    if finished.returncode != 0:
        lines = finished.stderr.strip().splitlines()
        return lines[-1] if lines else f"the memory probe exited with {finished.returncode}"
    return {int(size): float(mib) for size, mib in json.loads(finished.stdout.strip().splitlines()[-1]).items()}


def probe(request: dict[str, Any]) -> dict[int, float]:
    """The child's side: runtime imported, then session and batches, each peak read against the resident set before."""
    run_fields = request["run"]
    run = RunOptions(**run_fields | {"runtimes": tuple(RuntimeName(name) for name in run_fields["runtimes"]),
                                     "provider": Provider(run_fields["provider"])})
    runtime = RuntimeName(request["runtime"])
    description = ModelDescription.from_dict(request["description"])
    runtime_plugin = plugin(runtime)
    runtime_plugin.check_usable(runtime_plugin.config(run))  # imports the runtime: its own footprint is not the model's
    before = resident_mib("VmRSS")
    runner = open_runner(ArtifactFormat(request["format"]), Path(request["path"]), run, description, runtime)
    added = {}
    for batch_size in request["batch_sizes"]:
        runner.infer(np.zeros((batch_size, *description.image_shape), dtype=np.uint8))
        added[batch_size] = round(resident_mib("VmHWM") - before, 1)
    runner.close()
    return added


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
