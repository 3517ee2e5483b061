"""Check an exported ONNX model on this device before trusting it: the start-up check an app can run.

    python selftest.py ../../exports/mnist_cnn.onnx

Every file edgecnn exports carries a few golden test images with the Keras model's probabilities for them and the
bound its precision must meet (`edgecnn_selftest` metadata). This runs them with ONNX Runtime and compares: a file
damaged in transit, weights changed behind unchanged metadata or a runtime that computes differently all FAIL here.
`edgecnn selftest MODEL` is the same check from the CLI (and for .tflite files). Needs onnxruntime and numpy.
"""

import base64
import json
import sys

import numpy as np
import onnxruntime as ort
from preprocess import description_from, model_input, probabilities


def selftest(session: ort.InferenceSession) -> tuple[bool, str]:
    """(passed, a line saying what was compared) for a session of an edgecnn ONNX file."""
    metadata = session.get_modelmeta().custom_metadata_map
    goldens, description = json.loads(metadata["edgecnn_selftest"]), description_from(metadata)
    images = np.frombuffer(base64.b64decode(goldens["images"]), dtype=np.uint8).reshape(goldens["shape"])
    source = session.get_inputs()[0]
    feed = images if source.type == "tensor(uint8)" else model_input(images, description)
    (outputs,) = session.run(None, {source.name: feed.reshape(len(images), *source.shape[1:])})
    got, expected = probabilities(outputs, description), np.asarray(goldens["probabilities"], dtype=np.float32)
    worst, agreeing = float(np.abs(got - expected).max()), int(np.sum(got.argmax(axis=1) == expected.argmax(axis=1)))
    bound = goldens["max_abs_diff"]
    passed = agreeing == len(images) and (bound is None or worst <= bound)
    limit = "top-1 only" if bound is None else f"bound {bound:g}"
    return passed, f"selftest {'PASS' if passed else 'FAIL'}: {len(images)} goldens, top-1 {agreeing}/{len(images)}, max |dp| {worst:.2e} ({limit})"


if __name__ == "__main__":
    passed, line = selftest(ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]))
    print(line)
    sys.exit(0 if passed else 1)
