"""Classify images of any size with a TFLite model exported by edgecnn, on LiteRT. Needs only ai-edge-litert, numpy
and Pillow:

    python classify_litert.py ../../exports/mnist_cnn_int8.tflite digit.png [more.png ...] [--json]

The model's description comes from the file's `edgecnn` metadata entry (read with the flatbuffer schema LiteRT
ships). A float input gets the scaled pixels; an int8/uint8 input gets them quantized, q = round(x / scale) +
zero_point with the scale and zero point the interpreter reports, and a quantized output is dequantized the same way.
"""

import json
import sys

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from preprocess import description_from, model_input, prepare, probabilities, report


def edgecnn_metadata(path: str) -> dict[str, str]:
    with open(path, "rb") as handle:
        model = schema.Model.GetRootAs(handle.read(), 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name().decode() == "edgecnn":
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    raise SystemExit(f"{path}: no edgecnn metadata (not exported by edgecnn)")


arguments = [argument for argument in sys.argv[1:] if argument != "--json"]
model_path, *files = arguments
description = description_from(edgecnn_metadata(model_path))
interpreter = Interpreter(model_path=model_path)
interpreter.allocate_tensors()
source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
(in_scale, in_zero), (out_scale, out_zero) = source["quantization"], target["quantization"]
for file in files:
    scaled = model_input(prepare(file, description), description)[None]
    if in_scale:
        limits = np.iinfo(source["dtype"])
        scaled = np.clip(np.round(scaled / in_scale) + in_zero, limits.min, limits.max)
    interpreter.set_tensor(source["index"], scaled.astype(source["dtype"]))
    interpreter.invoke()
    outputs = interpreter.get_tensor(target["index"])[0].astype(np.float32)
    if out_scale:
        outputs = (outputs - out_zero) * out_scale
    print(report(file, probabilities(outputs, description), description, "--json" in sys.argv))
