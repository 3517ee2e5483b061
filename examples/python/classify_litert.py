"""Classify digit images of any size with edgecnn's int8 TFLite model on LiteRT. Needs only ai-edge-litert, numpy
and Pillow:

    python classify_litert.py ../../exports/mnist_cnn_int8.tflite digit.png [more.png ...]

Each image gets `edgecnn predict`'s preprocessing (mnist_preprocess.py). The model's input is int8 [batch, 28, 28, 1]:
q = round(pixel / 255 / scale) + zero_point with the scale and zero point the interpreter reports (also in the
file's metadata); its int8 output is dequantized the same way.
"""

import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from mnist_preprocess import load_gray, to_mnist

model_path, *files = sys.argv[1:]
interpreter = Interpreter(model_path=model_path)
interpreter.allocate_tensors()
source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
(in_scale, in_zero), (out_scale, out_zero) = source["quantization"], target["quantization"]
limits = np.iinfo(source["dtype"])
for file in files:
    scaled = to_mnist(load_gray(file)).astype(np.float32)[None, :, :, None] / np.float32(255.0)
    quantized = np.clip(np.round(scaled / in_scale) + in_zero, limits.min, limits.max).astype(source["dtype"])
    interpreter.set_tensor(source["index"], quantized)
    interpreter.invoke()
    probabilities = (interpreter.get_tensor(target["index"])[0].astype(np.float32) - out_zero) * out_scale
    digit = int(probabilities.argmax())
    print(f"{file}: {digit} (p={probabilities[digit]:.3f})")
