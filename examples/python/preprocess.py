"""What `edgecnn predict` does to a picture before the model sees it, read from the model's own description (the
`edgecnn_description` metadata every exported file carries), with numpy and Pillow only.

Every picture is first turned upright by its EXIF orientation when the description says `orientation: exif` (as
edgecnn predict and browsers do with a phone photo), and its first frame is used.

* the digit recipe (`preprocess: digit`, models trained on MNIST's digits): gray (Pillow's ITU-R 601 luma;
  transparency composited over white), ink measured from the paper's level (the border's median; a light paper
  means dark ink), faint pixels dropped (< 20% of the brightest), cropped to the ink, fitted into 20x20 with an
  area-weighted resample (float64, summed in a fixed order, rounded as floor(x + 0.5)) and centred by integer mass
  in 28x28 — then brought to the model's size and channels like its training images were. A 28x28 image on a dark
  background is already MNIST-style and is used as it is;
* the resize recipe (`preprocess: resize`): the whole picture converted to gray or RGB and resized with the same
  area-weighted resample to the model's height x width.

`model_input` turns the pixels into the float input (the description's scaling), `probabilities` applies softmax
when the model gives logits.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, ImageOps

SIZE, BOX, INK_THRESHOLD, LIGHT_BACKGROUND = 28, 20, 0.2, 128
DESCRIPTION_KEY = "edgecnn_description"
FIXED_SCALING = {"unit": (0.0, 255.0), "raw": (0.0, 1.0), "symmetric": (127.5, 127.5)}


def description_from(metadata: dict[str, str]) -> dict:
    """The description an edgecnn file carries (ONNX custom metadata, or the TFLite `edgecnn` entry)."""
    return json.loads(metadata[DESCRIPTION_KEY])


def load_pixels(path: str, channels: int, upright: bool = True) -> np.ndarray:
    """(H, W, channels) uint8 of the first frame, turned by its EXIF orientation (as browsers show a phone photo) when
    `upright`, 16-bit gray scaled to 8 bits, transparency over white, as Pillow's convert("L") / convert("RGB") give them."""
    with Image.open(path) as image:
        if upright:
            image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255):
            image = Image.fromarray(np.round(np.asarray(image, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8))
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA"))
        pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def border_median(gray: np.ndarray) -> float:
    return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))


def weights(size_in: int, size_out: int) -> np.ndarray:
    scale = size_in / size_out
    starts = np.arange(size_out, dtype=np.float64)[:, None] * scale
    pixels = np.arange(size_in, dtype=np.float64)[None, :]
    return np.clip(np.minimum(starts + scale, pixels + 1) - np.maximum(starts, pixels), 0, None) / scale


def weighted_sum(matrix: np.ndarray, values: np.ndarray) -> np.ndarray:
    total = np.zeros((matrix.shape[0], values.shape[1]))
    for index in range(matrix.shape[1]):  # ascending order: the same sums as edgecnn's (and the JavaScript) code
        total += matrix[:, index : index + 1] * values[index][None, :]
    return total


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) uint8 → (height, width, C): area-weighted, channel by channel."""
    if pixels.shape[:2] == (height, width):
        return pixels
    rows, columns = weights(pixels.shape[0], height), weights(pixels.shape[1], width)
    channels = [weighted_sum(columns, weighted_sum(rows, pixels[..., c].astype(np.float64)).T).T for c in range(pixels.shape[2])]
    return np.clip(np.floor(np.stack(channels, axis=-1) + 0.5), 0, 255).astype(np.uint8)


def to_mnist(gray: np.ndarray) -> np.ndarray:
    if gray.shape == (SIZE, SIZE) and border_median(gray) < LIGHT_BACKGROUND:
        return gray
    level = int(np.floor(border_median(gray)))  # the paper: how far each pixel stands out from it is the ink
    ink = np.clip((level - gray.astype(np.int64)) if level >= LIGHT_BACKGROUND else (gray.astype(np.int64) - level), 0, 255)
    ink = np.where(ink >= INK_THRESHOLD * max(int(ink.max()), 1), ink, 0).astype(np.uint8)
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        raise ValueError("image is blank: no digit strokes found")
    crop = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].astype(np.float64)
    scale = BOX / max(crop.shape)
    height, width = (max(1, int(np.floor(side * scale + 0.5))) for side in crop.shape)
    fitted = weighted_sum(weights(crop.shape[1], width), weighted_sum(weights(crop.shape[0], height), crop).T).T
    canvas = np.zeros((SIZE, SIZE), dtype=np.uint8)
    top, left = (SIZE - height) // 2, (SIZE - width) // 2
    canvas[top : top + height, left : left + width] = np.clip(np.floor(fitted + 0.5), 0, 255).astype(np.uint8)
    values = canvas.astype(np.int64)
    grid_rows, grid_columns = np.indices(canvas.shape)
    dy = int(np.floor((SIZE - 1) / 2 - int((grid_rows * values).sum()) / int(values.sum()) + 0.5))
    dx = int(np.floor((SIZE - 1) / 2 - int((grid_columns * values).sum()) / int(values.sum()) + 0.5))
    return np.roll(np.pad(canvas, SIZE), (dy, dx), axis=(0, 1))[SIZE : 2 * SIZE, SIZE : 2 * SIZE]


def prepare(path: str, description: dict) -> np.ndarray:
    """The (H, W, C) uint8 pixels the model takes for this picture."""
    height, width, channels = description["height"], description["width"], description["channels"]
    upright = description.get("orientation") == "exif"  # files exported before the field existed used stored pixels
    if description["preprocess"] == "digit":
        digit = to_mnist(load_pixels(path, 1, upright)[..., 0])[..., None]
        return resize(np.repeat(digit, channels, axis=-1), height, width)
    return resize(load_pixels(path, channels, upright), height, width)


def model_input(pixels: np.ndarray, description: dict) -> np.ndarray:
    """uint8 pixels → the model's float32 input: (pixel - offset) / divisor per channel."""
    if description["scaling"] == "mean-std":
        offset, divisor = np.float32(description["mean"]), np.float32(description["std"])
    else:
        offset, divisor = (np.float32(value) for value in FIXED_SCALING[description["scaling"]])
    return (pixels.astype(np.float32) - offset) / divisor


def probabilities(outputs: np.ndarray, description: dict) -> np.ndarray:
    if description["output"] == "probabilities":
        return outputs.astype(np.float32)
    exp = np.exp(outputs.astype(np.float64) - outputs.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def report(file: str, scores: np.ndarray, description: dict, as_json: bool) -> str:
    best = int(scores.argmax())
    label = description["class_names"][best]
    if as_json:
        return json.dumps({"file": file, "label": label, "index": best, "probabilities": scores.tolist()})
    return f"{file}: {label} (p={scores[best]:.3f})"
