"""MNIST-style preprocessing, the steps `edgecnn predict` takes, giving the same pixels (numpy + Pillow only).

Gray (Pillow's ITU-R 601 luma; transparency composited over white), ink measured from the paper's level (the border's
median; a light paper means dark ink), faint pixels dropped (< 20% of the brightest), cropped to the ink, fitted into 20x20 with an area-weighted
resample (float64, summed in a fixed order, rounded as floor(x + 0.5)) and centred by integer mass in 28x28. A 28x28
image on a dark background is already MNIST-style and is used as it is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE, BOX, INK_THRESHOLD, LIGHT_BACKGROUND = 28, 20, 0.2, 128


def load_gray(path: str) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA"))
        return np.asarray(image.convert("L"), dtype=np.uint8)


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
