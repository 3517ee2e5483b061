"""Turn a user's image (PNG/JPEG/BMP or .npy, any size, color or gray) into the pixels a model takes.

Two recipes, chosen by the model's description (`edgecnn.core.description.Preprocess`):

* the digit recipe, for models trained on MNIST-style digits: white on black, cropped to the digit, fitted into
  20x20 and centered by their center of mass in a 28x28 frame, then brought to the model's size and channels like
  the training data was. An image that already is a 28x28 dark-background digit is used as it is, so the official
  test digits saved as PNG are classified exactly as `edgecnn verify` sees them;
* the resize recipe, for everything else: the whole picture converted to gray or RGB and resized (area-weighted).

The same conversion and resize bring a dataset to a requested `--image-size`/`--color` (see `edgecnn.core.data`), so a
picture and a training image of the same content become the same pixels. Hostile files are refused before decoding:
size limits come from the header, never from decompressing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from edgecnn.core.description import Color, ModelDescription, Preprocess
from edgecnn.core.errors import EdgecnnError

MNIST_SIZE = 28
DIGIT_BOX = 20
MAX_PIXELS = 4096 * 4096
MAX_NPY_BYTES = 64 * 1024 * 1024
INK_THRESHOLD = 0.2
LIGHT_BACKGROUND = 128
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
RESIZE_CHUNK = 4096  # images resized per step when a whole dataset is converted


def load_grayscale(path: Path | str) -> np.ndarray:
    """A 2-D uint8 grayscale array from an image file or a .npy array, with every failure a user error."""
    return load_pixels(path, Color.GRAY)[..., 0]


def load_pixels(path: Path | str, color: Color) -> np.ndarray:
    """(H, W, C) uint8 pixels in `color` from an image file or a .npy array; transparency is composited over white.

    A path may stay a string: predict reads thousands of small files, and each Path costs a parse (one stat call too)."""
    try:
        status = os.stat(path)
    except OSError:
        status = None
    if status is None or not stat.S_ISREG(status.st_mode):
        raise EdgecnnError("image file not found", path)
    if status.st_size == 0:
        raise EdgecnnError("image file is empty", path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        return convert_color(npy_pixels(Path(path)), color)
    if suffix in IMAGE_SUFFIXES:
        return decoded_pixels(path, color)
    raise EdgecnnError(f"unsupported image type {suffix or '(none)'}: expected .png, .jpg, .jpeg, .bmp or .npy", path)


def decoded_pixels(path: Path | str, color: Color) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size  # read from the header; nothing is decompressed yet
            if width * height > MAX_PIXELS:
                raise EdgecnnError(f"image is {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit (decompression bomb?)", path)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image.convert("RGBA"))  # type: ignore[assignment]
            mode = "L" if color is Color.GRAY else "RGB"
            pixels = np.asarray(image if image.mode == mode else image.convert(mode), dtype=np.uint8)
            return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels
    except EdgecnnError:
        raise
    except Image.DecompressionBombError as exc:
        raise EdgecnnError(f"refused as a decompression bomb: {exc}", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise EdgecnnError(f"cannot decode image (corrupt or truncated): {exc}", path) from None


def npy_pixels(path: Path) -> np.ndarray:
    if path.stat().st_size > MAX_NPY_BYTES:
        raise EdgecnnError(f"array file is over {MAX_NPY_BYTES // (1024 * 1024)} MB", path)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise EdgecnnError("contains a pickled object array; refused, never unpickled", path) from None
        raise EdgecnnError(f"not a valid .npy file: {exc}", path) from None
    except (OSError, EOFError) as exc:
        raise EdgecnnError(f"not a valid .npy file (corrupt or truncated): {exc}", path) from None
    return array_to_pixels(array, path)


def array_to_pixels(array: np.ndarray, where: Path | str) -> np.ndarray:
    """uint8 0-255, or floats in [0, 1] or [0, 255]; 2-D, or 3-D with 1, 3 or 4 channels last → (H, W, 1|3) uint8."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "uif" or array.dtype.itemsize > 8:
        raise EdgecnnError(f"array has dtype {getattr(array, 'dtype', type(array).__name__)}; expected numbers", where)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    if array.ndim != 3 or array.shape[2] not in (1, 3) or min(array.shape[:2]) < 1:
        raise EdgecnnError(f"array has shape {array.shape}; expected (H, W) or (H, W, 1|3|4)", where)
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise EdgecnnError(f"array has {array.shape[0] * array.shape[1]:,} pixels, over the {MAX_PIXELS:,}-pixel limit", where)
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise EdgecnnError("array contains NaN or infinite values", where)
    if values.min() < 0 or values.max() > 255:
        raise EdgecnnError(f"pixel values must be in [0, 255] (or [0, 1]); found {values.min():g}..{values.max():g}", where)
    if array.dtype.kind == "f" and values.max() <= 1.0:
        values = values * 255.0
    return np.round(values).astype(np.uint8)


def is_mnist_style(gray: np.ndarray) -> bool:
    return gray.shape == (MNIST_SIZE, MNIST_SIZE) and border_level(gray) < LIGHT_BACKGROUND


def border_level(gray: np.ndarray) -> float:
    """The median of the border pixels (np.median's result, by a partial sort: ~10x faster on 108 pixels)."""
    border = np.concatenate((gray[0], gray[-1], gray[:, 0], gray[:, -1]))
    middle = len(border) // 2
    if len(border) % 2:
        return float(np.partition(border, middle)[middle])
    lower, upper = np.partition(border, (middle - 1, middle))[middle - 1 : middle + 1].tolist()
    return (lower + upper) / 2


def to_mnist_digit(gray: np.ndarray, where: Path | str = "") -> np.ndarray:
    """Grayscale image → 28x28 uint8 white-on-black digit, fitted in 20x20 and centered by mass.

    Written so that JavaScript can repeat it bit for bit (the Node and browser examples do): an area-weighted
    resample accumulated in a fixed order in float64, rounding as floor(x + 0.5), integer moments for the centering.
    """
    if is_mnist_style(gray):
        return gray
    ink = ink_above_background(gray)
    ink = np.where(ink >= INK_THRESHOLD * max(int(ink.max()), 1), ink, 0).astype(np.uint8)
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if ink.max() == 0 or len(rows) == 0:
        raise EdgecnnError("image is blank: no digit strokes found", where)
    cropped = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = cropped.shape
    scale = DIGIT_BOX / max(height, width)
    fitted_height, fitted_width = max(1, half_up(height * scale)), max(1, half_up(width * scale))
    fitted = np.clip(np.floor(resample(cropped, fitted_height, fitted_width) + 0.5), 0, 255).astype(np.uint8)
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.uint8)
    top, left = (MNIST_SIZE - fitted_height) // 2, (MNIST_SIZE - fitted_width) // 2
    canvas[top : top + fitted_height, left : left + fitted_width] = fitted
    return center_by_mass(canvas)


def ink_above_background(gray: np.ndarray) -> np.ndarray:
    """How far each pixel stands out from the paper (the border's median level), white on black: a gray, noisy photo
    background becomes black, so the crop finds the digit rather than the sheet."""
    level = int(np.floor(border_level(gray)))
    difference = (level - gray.astype(np.int64)) if level >= LIGHT_BACKGROUND else (gray.astype(np.int64) - level)
    return np.clip(difference, 0, 255).astype(np.uint8)


def half_up(value: float) -> int:
    """Round half up, as JavaScript's Math.round does (Python's round() rounds half to even)."""
    return int(np.floor(value + 0.5))


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in): how much of each input pixel each output pixel covers, as a fraction of its width."""
    scale = size_in / size_out
    starts = np.arange(size_out, dtype=np.float64)[:, np.newaxis] * scale
    pixels = np.arange(size_in, dtype=np.float64)[np.newaxis, :]
    return np.clip(np.minimum(starts + scale, pixels + 1) - np.maximum(starts, pixels), 0, None) / scale


def accumulate(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """weights @ values, summed over the input index in ascending order (the order the JavaScript loops use)."""
    out = np.zeros((weights.shape[0], values.shape[1]), dtype=np.float64)
    for index in range(weights.shape[1]):
        out += weights[:, index : index + 1] * values[index][np.newaxis, :]
    return out


def resample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-weighted (anti-aliased) resize of a 2-D image, rows first, then columns."""
    tall = accumulate(area_weights(image.shape[0], height), image.astype(np.float64))
    return accumulate(area_weights(image.shape[1], width), tall.T).T


def center_by_mass(canvas: np.ndarray) -> np.ndarray:
    """Shift so the intensity-weighted center sits at the frame's center, as MNIST was built (integer moments)."""
    values = canvas.astype(np.int64)
    total = int(values.sum())
    if total == 0:
        return canvas
    grid_rows, grid_columns = np.indices(canvas.shape)
    shift_rows = half_up((MNIST_SIZE - 1) / 2 - int((grid_rows * values).sum()) / total)
    shift_columns = half_up((MNIST_SIZE - 1) / 2 - int((grid_columns * values).sum()) / total)
    shifted = np.zeros_like(canvas)
    source = canvas[max(0, -shift_rows) : MNIST_SIZE - max(0, shift_rows), max(0, -shift_columns) : MNIST_SIZE - max(0, shift_columns)]
    shifted[max(0, shift_rows) : max(0, shift_rows) + source.shape[0], max(0, shift_columns) : max(0, shift_columns) + source.shape[1]] = source
    return shifted


def load_digit(path: Path | str) -> np.ndarray:
    return to_mnist_digit(load_grayscale(path), path)


def luma(rgb: np.ndarray) -> np.ndarray:
    """RGB → gray exactly as Pillow's convert("L") (ITU-R 601, integer arithmetic), so arrays and files agree."""
    values = rgb.astype(np.int64)
    return ((values[..., 0] * 19595 + values[..., 1] * 38470 + values[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)[..., np.newaxis]


def convert_color(pixels: np.ndarray, color: Color) -> np.ndarray:
    """(..., H, W, 1|3) uint8 → the same images in `color`: gray is repeated into RGB, RGB becomes Pillow's luma."""
    if pixels.shape[-1] == color.channels:
        return pixels
    return np.repeat(pixels, 3, axis=-1) if color is Color.RGB else luma(pixels)


def resize_area(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., H, W, C) uint8 → (..., height, width, C): the area-weighted resample of `resample`, for whole batches."""
    if images.shape[-3:-1] == (height, width):
        return images
    if images.ndim == 4 and len(images) > RESIZE_CHUNK:  # a whole dataset: in chunks, so float64 copies stay small
        return np.concatenate([resize_area(images[start : start + RESIZE_CHUNK], height, width) for start in range(0, len(images), RESIZE_CHUNK)])
    rows, columns = area_weights(images.shape[-3], height), area_weights(images.shape[-2], width)
    resized = np.einsum("hH,...HWc,wW->...hwc", rows, images.astype(np.float64), columns, optimize=True)
    return np.clip(np.floor(resized + 0.5), 0, 255).astype(np.uint8)


def conform(images: np.ndarray, height: int, width: int, color: Color) -> np.ndarray:
    """Images of any size and color → (..., height, width, channels): color first, then the resize."""
    return resize_area(convert_color(images, color), height, width)


def load_image(path: Path | str, description: ModelDescription) -> np.ndarray:
    """A user's picture → the (H, W, C) uint8 pixels this model takes, by the recipe its description records."""
    if description.preprocess is Preprocess.DIGIT:
        digit = load_digit(path)[..., np.newaxis]
        return conform(digit, description.height, description.width, description.color)
    return conform(load_pixels(path, description.color), description.height, description.width, description.color)
