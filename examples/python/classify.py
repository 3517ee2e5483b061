"""Classify digit images of any size with edgecnn's uint8-input ONNX model. Needs only onnxruntime, numpy and Pillow:

    python classify.py ../../exports/mnist_cnn_uint8_input.onnx digit.png [more.png ...]

Each image gets `edgecnn predict`'s preprocessing (mnist_preprocess.py). The model takes those raw pixels (uint8,
[batch, 28, 28], white digit on black) and returns `probabilities` [batch, 10]; the scaling to [0, 1] is in the graph.
"""

import sys

import onnxruntime as ort
from mnist_preprocess import load_gray, to_mnist

model_path, *files = sys.argv[1:]
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
for file in files:
    pixels = to_mnist(load_gray(file))
    (probabilities,) = session.run(["probabilities"], {"image": pixels[None]})
    digit = int(probabilities[0].argmax())
    print(f"{file}: {digit} (p={probabilities[0, digit]:.3f})")
