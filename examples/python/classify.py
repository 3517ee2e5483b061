"""Classify digit images with edgecnn's uint8-input ONNX model. Needs only onnxruntime, numpy and Pillow:

    python classify.py ../../exports/mnist_cnn_uint8_input.onnx digit.png [more.png ...]

The model takes raw grayscale pixels (uint8, [batch, 28, 28], white digit on black) and returns `probabilities`
[batch, 10]; the scaling to [0, 1] is inside the graph. Images are converted to gray and resized to 28x28.
"""

import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

model_path, *files = sys.argv[1:]
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
for file in files:
    pixels = np.asarray(Image.open(file).convert("L").resize((28, 28)), dtype=np.uint8)
    (probabilities,) = session.run(["probabilities"], {"image": pixels[np.newaxis]})
    digit = int(probabilities[0].argmax())
    print(f"{file}: {digit} (p={probabilities[0, digit]:.3f})")
