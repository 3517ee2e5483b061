"""Benchmark helper: where an ONNX model's batch-1 time goes, per node, with ONNX Runtime's own profiler.

Usage: python bench/profile_onnx.py MODEL.onnx [--threads 2] [--runs 3000]

Prints the median kernel time of each node after warm-up and the median whole-run time. Profiling adds roughly
1-2 µs per node, so the sum exceeds an unprofiled run; the proportions are what matters.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3000)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "edgecnn-profile")
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.uint8 if feed.type == "tensor(uint8)" else np.float32
    shape = [1 if not isinstance(dim, int) else dim for dim in feed.shape]
    sample = np.zeros(shape, dtype)
    for _ in range(args.runs):
        session.run(None, {feed.name: sample})
    trace_path = Path(session.end_profiling())
    trace = json.loads(trace_path.read_text())
    trace_path.unlink()  # tens of MB: read once, never left lying around
    warm = args.runs // 4
    kernels: dict[tuple[str, str], list[int]] = defaultdict(list)
    runs = []
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[(event["args"]["op_name"], event["name"].removesuffix("_kernel_time"))].append(event["dur"])
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            runs.append(event["dur"])
    print(f"{args.model.name}: median model_run {np.median(runs[warm:]):.0f} µs (profiled), {args.threads} threads")
    for (op, name), durations in kernels.items():
        print(f"  {np.median(durations[warm:]):6.0f} µs  {op:18s} {name}")


if __name__ == "__main__":
    main()
