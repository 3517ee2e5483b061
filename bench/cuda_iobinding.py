"""An independent CUDA timing loop, to check `edgecnn bench --provider cuda` against (issue 11's acceptance row).

Uses onnxruntime and numpy only, nothing from edgecnn: one CUDA session (ORT defaults, so TF32 on), the input and
output bound once as device OrtValues, every call synchronized. Prints per batch size the p50 of single calls and
images/s, as JSON lines.

    python bench/cuda_iobinding.py exports/mnist_cnn.onnx --batch-sizes 1,1024,8192,32768
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import onnxruntime as ort

NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def time_batch(session: ort.InferenceSession, batch: int, seconds: float, warmup: int) -> dict[str, float]:
    model_input, model_output = session.get_inputs()[0], session.get_outputs()[0]
    shape = [batch, *model_input.shape[1:]]
    feed = np.random.default_rng(0).random(shape).astype(NUMPY_TYPES[model_input.type])
    binding = session.io_binding()
    binding.bind_ortvalue_input(model_input.name, ort.OrtValue.ortvalue_from_numpy(feed, "cuda", 0))
    output = ort.OrtValue.ortvalue_from_shape_and_type([batch, *model_output.shape[1:]], NUMPY_TYPES[model_output.type], "cuda", 0)
    binding.bind_ortvalue_output(model_output.name, output)
    for _ in range(warmup):
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
    durations = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < 20:
        start = time.perf_counter()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        durations.append(time.perf_counter() - start)
    p50 = float(np.median(durations))
    return {"batch": batch, "calls": len(durations), "p50_us": p50 * 1e6, "images_per_s": batch / p50}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch-sizes", default="1,1024,8192,32768")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    session = ort.InferenceSession(args.model, providers=["CUDAExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise SystemExit(f"CUDA provider did not load: {session.get_providers()}")
    for batch in (int(value) for value in args.batch_sizes.split(",")):
        print(json.dumps({"model": args.model, "onnxruntime": ort.__version__} | time_batch(session, batch, args.seconds, args.warmup)))


if __name__ == "__main__":
    main()
