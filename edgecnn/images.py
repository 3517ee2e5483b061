"""Turn a user's image (PNG/JPEG/BMP or .npy, any size, color or gray) into an MNIST-style 28x28 uint8 digit.

MNIST digits are white on black, cropped to the digit, fitted into 20x20 and centered by their center of mass in
a 28x28 frame; a photo or a drawing is brought into that form here. An image that already is a 28x28 dark-background
digit is used as it is, so the official test digits saved as PNG are classified exactly as `edgecnn verify` sees them.
Hostile files are refused before decoding: size limits come from the header, never from decompressing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError

MNIST_SIZE = 28
DIGIT_BOX = 20
MAX_PIXELS = 4096 * 4096
MAX_NPY_BYTES = 64 * 1024 * 1024
INK_THRESHOLD = 0.2
LIGHT_BACKGROUND = 128
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def load_grayscale(path: Path) -> np.ndarray:
    """A 2-D uint8 grayscale array from an image file or a .npy array, with every failure a user error."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError("image file not found", path)
    if path.stat().st_size == 0:
        raise EdgecnnError("image file is empty", path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return npy_grayscale(path)
    if suffix in IMAGE_SUFFIXES:
        return decoded_grayscale(path)
    raise EdgecnnError(f"unsupported image type {suffix or '(none)'}: expected .png, .jpg, .jpeg, .bmp or .npy", path)


def decoded_grayscale(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size  # read from the header; nothing is decompressed yet
            if width * height > MAX_PIXELS:
                raise EdgecnnError(f"image is {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit (decompression bomb?)", path)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image.convert("RGBA"))
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except EdgecnnError:
        raise
    except Image.DecompressionBombError as exc:
        raise EdgecnnError(f"refused as a decompression bomb: {exc}", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise EdgecnnError(f"cannot decode image (corrupt or truncated): {exc}", path) from None


def npy_grayscale(path: Path) -> np.ndarray:
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
    return array_to_grayscale(array, path)


def array_to_grayscale(array: np.ndarray, where: Path | str) -> np.ndarray:
    """uint8 0-255, or floats in [0, 1] or [0, 255]; 2-D, or 3-D with 1, 3 or 4 channels last."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "uif" or array.dtype.itemsize > 8:
        raise EdgecnnError(f"array has dtype {getattr(array, 'dtype', type(array).__name__)}; expected numbers", where)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., 0] if array.shape[2] == 1 else array[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if array.ndim != 2 or min(array.shape) < 1:
        raise EdgecnnError(f"array has shape {array.shape}; expected (H, W) or (H, W, 1|3|4)", where)
    if array.size > MAX_PIXELS:
        raise EdgecnnError(f"array has {array.size:,} pixels, over the {MAX_PIXELS:,}-pixel limit", where)
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
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border))


def to_mnist_digit(gray: np.ndarray, where: Path | str = "") -> np.ndarray:
    """Grayscale image → 28x28 uint8 white-on-black digit, fitted in 20x20 and centered by mass."""
    if is_mnist_style(gray):
        return gray
    from PIL import Image

    ink = (255 - gray) if border_level(gray) >= LIGHT_BACKGROUND else gray.copy()
    ink = np.where(ink >= INK_THRESHOLD * max(int(ink.max()), 1), ink, 0).astype(np.uint8)
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if ink.max() == 0 or len(rows) == 0:
        raise EdgecnnError("image is blank: no digit strokes found", where)
    cropped = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = cropped.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(Image.fromarray(cropped).resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float64)
    top, left = (MNIST_SIZE - size[1]) // 2, (MNIST_SIZE - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = fitted
    return center_by_mass(np.clip(canvas, 0, 255)).astype(np.uint8)


def center_by_mass(canvas: np.ndarray) -> np.ndarray:
    """Shift so the intensity-weighted center sits at the frame's center, as MNIST was built."""
    total = canvas.sum()
    if total == 0:
        return canvas
    grid_rows, grid_columns = np.indices(canvas.shape)
    shift_rows = int(round((MNIST_SIZE - 1) / 2 - (grid_rows * canvas).sum() / total))
    shift_columns = int(round((MNIST_SIZE - 1) / 2 - (grid_columns * canvas).sum() / total))
    shifted = np.zeros_like(canvas)
    source = canvas[max(0, -shift_rows) : MNIST_SIZE - max(0, shift_rows), max(0, -shift_columns) : MNIST_SIZE - max(0, shift_columns)]
    shifted[max(0, shift_rows) : max(0, shift_rows) + source.shape[0], max(0, shift_columns) : max(0, shift_columns) + source.shape[1]] = source
    return shifted


def load_digit(path: Path) -> np.ndarray:
    return to_mnist_digit(load_grayscale(path), path)
