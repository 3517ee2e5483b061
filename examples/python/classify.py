"""Classify images of any size with an ONNX model exported by edgecnn. Needs only onnxruntime, numpy and Pillow:

    python classify.py ../../exports/mnist_cnn_uint8_input.onnx digit.png [more.png ...] [--json]

Everything the model needs is read from the file's metadata (`edgecnn_description`): its input size and channels,
how pixels are scaled, its class names, whether it gives logits, and which picture preprocessing it was trained
for — so the same code serves a 28x28 digit model and a 32x32 RGB model. A uint8-input file takes the raw pixels
and scales them in its graph; a float-input file gets them scaled here. Before classifying anything, the file's own
golden inputs are checked (selftest.py); a file that fails them is not used.
"""

import sys

import onnxruntime as ort
from preprocess import description_from, model_input, prepare, probabilities, report
from selftest import selftest

arguments = [argument for argument in sys.argv[1:] if argument != "--json"]
model_path, *files = arguments
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
passed, line = selftest(session)
print(line, file=sys.stderr)
if not passed:
    sys.exit(1)
description = description_from(session.get_modelmeta().custom_metadata_map)
source = session.get_inputs()[0]
for file in files:
    pixels = prepare(file, description)
    feed = pixels if source.type == "tensor(uint8)" else model_input(pixels, description)
    (outputs,) = session.run(None, {source.name: feed.reshape(1, *source.shape[1:])})
    print(report(file, probabilities(outputs[0], description), description, "--json" in sys.argv))
