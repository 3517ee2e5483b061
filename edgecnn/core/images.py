"""Turn a user's image (PNG, JPEG, WebP, TIFF, GIF, BMP, MPO, HEIC/AVIF with their plug-in, or .npy; any size, color or
gray; upright by its EXIF orientation) into the pixels a model takes.

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

import contextlib
import functools
import importlib
import importlib.util
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.description import Color, ModelDescription, Orientation, Preprocess
from edgecnn.core.errors import EdgecnnError, first_line

MNIST_SIZE = 28
DIGIT_BOX = 20
MAX_PIXELS = 4096 * 4096
MAX_NPY_BYTES = 64 * 1024 * 1024
INK_THRESHOLD = 0.2
LIGHT_BACKGROUND = 128
# Pictures by extension (what folder and glob discovery look for); decoding goes by content, among PILLOW_FORMATS.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif", ".mpo", ".heic", ".heif", ".avif",
                  ".ppm", ".pgm", ".pbm", ".pnm", ".pfm", ".tga", ".ico", ".qoi", ".jp2", ".j2k"}
SUFFIXES_TEXT = ", ".join(sorted(IMAGE_SUFFIXES))
# Pillow's plug-in module per format decoded (MPO comes through JPEG's); AVIF's is in Pillow 11.2+, HEIF's in a plug-in.
PILLOW_FORMATS = {"PNG": "PngImagePlugin", "JPEG": "JpegImagePlugin", "BMP": "BmpImagePlugin", "DIB": "BmpImagePlugin",
                  "WEBP": "WebPImagePlugin", "TIFF": "TiffImagePlugin", "GIF": "GifImagePlugin", "AVIF": "AvifImagePlugin", "HEIF": "",
                  "PPM": "PpmImagePlugin", "TGA": "TgaImagePlugin", "ICO": "IcoImagePlugin", "QOI": "QoiImagePlugin", "JPEG2000": "Jpeg2KImagePlugin"}
# Formats only a plug-in decodes: its module, its PyPI name, and the call that registers it (None: importing does).
# Pillow 11.2+ decodes AVIF itself; older ones need pillow-avif-plugin.
PLUGINS = {"HEIF": ("pillow_heif", "pillow-heif", "register_heif_opener"), "AVIF": ("pillow_avif", "pillow-avif-plugin", None)}
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # Pillow modes of gray pictures
CONTAINER_BRANDS = {"HEIF": {"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"}, "AVIF": {"avif", "avis"}}
RESIZE_CHUNK = 4096  # images resized per step when a whole dataset is converted


def load_grayscale(path: Path | str, orientation: Orientation = Orientation.EXIF) -> np.ndarray:
    """A 2-D uint8 grayscale array from an image file or a .npy array, with every failure a user error."""
    return load_pixels(path, Color.GRAY, orientation)[..., 0]


def load_pixels(path: Path | str, color: Color, orientation: Orientation = Orientation.EXIF) -> np.ndarray:
    """(H, W, C) uint8 pixels in `color` from an image file or a .npy array; transparency is composited over white, and
    the EXIF orientation applied as browsers apply it (unless `orientation` says the file's pixels are used as stored).

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
        return decoded_pixels(path, color, orientation)
    raise EdgecnnError(f"unsupported image type {suffix or '(none)'}: expected {SUFFIXES_TEXT} or .npy", path)


@functools.cache
def decodable_formats() -> tuple[str, ...]:
    """The Pillow formats a picture may be decoded as, by its content (never by its extension): the built-in ones, and
    HEIF/AVIF where an installed plug-in registers them. Anything else Pillow could open (EPS runs Ghostscript, PDF,
    PSD, ...) is refused."""
    from PIL import Image

    for module in filter(None, PILLOW_FORMATS.values()):
        if importlib.util.find_spec(f"PIL.{module}") is not None:
            importlib.import_module(f"PIL.{module}")
    for pillow_format, (module, _, register) in PLUGINS.items():
        if pillow_format not in Image.OPEN and importlib.util.find_spec(module) is not None:
            plugin = importlib.import_module(module)
            if register:
                getattr(plugin, register)()
    return tuple(name for name in PILLOW_FORMATS if name in Image.OPEN)


@contextlib.contextmanager
def opened_picture(path: Path | str) -> Iterator[Any]:
    """The picture opened by Pillow among the decodable formats (nothing decoded yet), with every Pillow failure a
    one-line user error naming the file."""
    from PIL import Image, UnidentifiedImageError

    formats = decodable_formats()
    try:
        with Image.open(path, formats=formats) as image:
            yield image
    except Image.DecompressionBombError as exc:
        raise EdgecnnError(f"refused as a decompression bomb: {exc}", path) from None
    except UnidentifiedImageError:
        raise EdgecnnError(unidentified_reason(path, formats), path) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise EdgecnnError(f"cannot decode image (corrupt or truncated): {first_line(exc)}", path) from None


def decoded_pixels(path: Path | str, color: Color, orientation: Orientation = Orientation.EXIF) -> np.ndarray:
    with opened_picture(path) as image:
        width, height = image.size  # read from the header; nothing is decompressed yet
        if width * height > MAX_PIXELS:
            raise EdgecnnError(f"image is {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit (decompression bomb?)", path)
        return pillow_pixels(upright(image) if orientation is Orientation.EXIF else image, color)


TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
EXIF_ORIENTATION_TAG = 0x0112


def upright(image):  # noqa: ANN001, ANN201 - PIL.Image.Image in and out
    """The picture turned as its EXIF orientation tag says (ImageOps, loaded only for pictures that carry one)."""
    if image.getexif().get(EXIF_ORIENTATION_TAG, 1) == 1:
        return image
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def picture_header(path: Path | str) -> tuple[tuple[int, int], str]:
    """((height, width), Pillow mode) of a picture as it will be decoded (upright), read from its header alone."""
    with opened_picture(path) as image:
        turned = image.getexif().get(EXIF_ORIENTATION_TAG) in TRANSPOSING_ORIENTATIONS
        return ((image.width, image.height) if turned else (image.height, image.width)), image.mode


def pillow_pixels(image, color: Color) -> np.ndarray:  # noqa: ANN001 - a PIL.Image.Image (PIL loads only where decoding runs)
    """A decoded picture (its first frame or page) → (H, W, C) uint8: 16-bit gray scaled to 8 bits (not clipped, as
    Pillow's convert("L") does), float pictures from 0-1, transparency over white, then Pillow's own gray or RGB
    conversion."""
    from PIL import Image

    if image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255):
        image = Image.fromarray(np.round(np.asarray(image, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8))
    elif image.mode == "F":  # PFM and float TIFF: 0-1 scaled to 0-255, values beyond clipped
        levels = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.round(np.nan_to_num(levels) * (255.0 if np.nanmax(levels) <= 1.0 else 1.0)).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    mode = "L" if color is Color.GRAY else "RGB"
    pixels = np.asarray(image if image.mode == mode else image.convert(mode), dtype=np.uint8)
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def unidentified_reason(path: Path | str, formats: tuple[str, ...]) -> str:
    """Why Pillow could not name the content: a HEIF/AVIF picture without its plug-in says which one to install."""
    with open(path, "rb") as handle:
        head = handle.read(32)
    brand = head[8:12].decode("latin-1") if head[4:8] == b"ftyp" else ""
    for pillow_format, (_, package, _) in PLUGINS.items():
        if brand in CONTAINER_BRANDS[pillow_format] and pillow_format not in formats:
            return f"a {pillow_format} picture: decoding it needs the {package} Pillow plug-in (pip install {package})"
    return f"cannot decode image: not a picture edgecnn decodes (its content is none of {', '.join(formats)}, whatever its extension says)"


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


def load_digit(path: Path | str, orientation: Orientation = Orientation.EXIF) -> np.ndarray:
    return to_mnist_digit(load_grayscale(path, orientation), path)


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
        digit = load_digit(path, description.orientation)[..., np.newaxis]
        return conform(digit, description.height, description.width, description.color)
    return conform(load_pixels(path, description.color, description.orientation), description.height, description.width, description.color)
