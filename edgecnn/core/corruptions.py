"""Corrupted copies of test images, for judging exported files where they drift first (`verify --corruptions`).

The kinds follow ImageNet-C (Hendrycks & Dietterich, 2019) where a picture taken by a user differs from a test image:
turned, noisy, out of focus, too bright, flat, re-encoded as JPEG, shrunk and enlarged, or framed tighter. Each is
Pillow's own operation (rotate, GaussianBlur, point, ImageEnhance.Contrast, the JPEG codec, resize) or numpy's seeded
normal noise, on the uint8 pixels the model takes, at one of five severities. Parameters that depend on the picture's
size (blur radius) scale with it, so a 28x28 digit and a 224x224 photo are corrupted alike.

Seeded: the same seed, severity and images give the same copies (noise, and the direction each picture turns).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import Enum

import numpy as np

from edgecnn.core.images import border_level

SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEVERITY = 3
REFERENCE_SIDE = 32  # blur radii are given for a 32-pixel side and scale with the picture's larger side


class CorruptionKind(str, Enum):
    ROTATION = "rotation"
    GAUSSIAN_NOISE = "gaussian-noise"
    BLUR = "blur"
    BRIGHTNESS = "brightness"
    CONTRAST = "contrast"
    JPEG = "jpeg"
    RESIZE = "resize"
    CROP = "crop"


# Per kind: what the parameter means, and its value at severities 1-5 (ImageNet-C's where they suit small pictures:
# noise sigma 0.08-0.38 of full scale, brightness +0.1-0.5; JPEG qualities gentler than its 25-7, which leave
# nothing of a 28x28 picture).
PARAMETERS: dict[CorruptionKind, tuple[str, tuple[float, ...]]] = {
    CorruptionKind.ROTATION: ("degrees, either way (bilinear, filled with the border's median)", (5, 10, 15, 20, 30)),
    CorruptionKind.GAUSSIAN_NOISE: ("sigma in pixel levels (0-255)", (20.4, 30.6, 45.9, 66.3, 96.9)),
    CorruptionKind.BLUR: (f"Gaussian blur radius in pixels at a {REFERENCE_SIDE}-pixel side", (0.5, 0.75, 1.0, 1.5, 2.0)),
    CorruptionKind.BRIGHTNESS: ("pixel levels added (0-255)", (25.5, 51.0, 76.5, 102.0, 127.5)),
    CorruptionKind.CONTRAST: ("contrast factor (ImageEnhance.Contrast)", (0.6, 0.5, 0.4, 0.3, 0.2)),
    CorruptionKind.JPEG: ("JPEG quality", (75, 50, 30, 20, 10)),
    CorruptionKind.RESIZE: ("fraction of each side kept (box down, bilinear back up)", (0.8, 0.65, 0.5, 0.4, 0.3)),
    CorruptionKind.CROP: ("fraction of each side kept, centred (bilinear back up)", (0.9, 0.85, 0.8, 0.75, 0.7)),
}


@dataclass(frozen=True)
class Corruption:
    kind: CorruptionKind
    severity: int
    parameter: float
    meaning: str

    @classmethod
    def at(cls, kind: CorruptionKind, severity: int) -> Corruption:
        meaning, values = PARAMETERS[kind]
        return cls(kind, severity, float(values[severity - 1]), meaning)

    def label(self) -> str:
        return f"{self.kind.value} {self.parameter:g}"

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind.value, "severity": self.severity, "parameter": self.parameter, "meaning": self.meaning}


def every_corruption(severity: int = DEFAULT_SEVERITY) -> tuple[Corruption, ...]:
    return tuple(Corruption.at(kind, severity) for kind in CorruptionKind)


def corrupted(images: np.ndarray, corruption: Corruption, seed: int) -> np.ndarray:
    """(N, H, W, C) uint8 → the same images corrupted, uint8, same shape. Seeded per kind, so adding a kind never
    changes another kind's copies."""
    rng = np.random.default_rng([seed, list(CorruptionKind).index(corruption.kind)])
    if corruption.kind is CorruptionKind.GAUSSIAN_NOISE:  # in chunks: float64 copies of 224x224 photos stay small
        return np.concatenate([noisy(images[start : start + NOISE_CHUNK], corruption.parameter, rng)
                               for start in range(0, len(images), NOISE_CHUNK)])
    signs = rng.choice((-1.0, 1.0), size=len(images))
    return np.stack([pixels_of(corrupt_one(picture(image), corruption, sign), image.shape[-1]) for image, sign in zip(images, signs, strict=True)])


NOISE_CHUNK = 256


def noisy(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.rint(images.astype(np.float64) + rng.normal(0.0, sigma, images.shape)), 0, 255).astype(np.uint8)


def picture(image: np.ndarray):  # noqa: ANN201 - a PIL.Image.Image (Pillow loads only where corruptions run)
    from PIL import Image

    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def pixels_of(image, channels: int) -> np.ndarray:  # noqa: ANN001
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., np.newaxis] if channels == 1 else pixels


def corrupt_one(image, corruption: Corruption, sign: float):  # noqa: ANN001, ANN201 - PIL.Image.Image in and out
    from PIL import Image, ImageEnhance, ImageFilter

    kind, value = corruption.kind, corruption.parameter
    width, height = image.size
    if kind is CorruptionKind.ROTATION:
        return image.rotate(sign * value, resample=Image.Resampling.BILINEAR, fillcolor=border_fill(image))
    if kind is CorruptionKind.BLUR:
        return image.filter(ImageFilter.GaussianBlur(value * max(width, height) / REFERENCE_SIDE))
    if kind is CorruptionKind.BRIGHTNESS:
        return image.point(lambda level: min(255, round(level + value)))
    if kind is CorruptionKind.CONTRAST:
        return ImageEnhance.Contrast(image).enhance(value)
    if kind is CorruptionKind.JPEG:
        encoded = io.BytesIO()
        image.save(encoded, format="JPEG", quality=int(value))
        with Image.open(encoded) as decoded:
            return decoded.convert(image.mode)
    if kind is CorruptionKind.RESIZE:
        small = image.resize((max(1, round(width * value)), max(1, round(height * value))), Image.Resampling.BOX)
        return small.resize((width, height), Image.Resampling.BILINEAR)
    if kind is CorruptionKind.CROP:
        kept_width, kept_height = max(1, round(width * value)), max(1, round(height * value))
        left, top = (width - kept_width) // 2, (height - kept_height) // 2
        return image.crop((left, top, left + kept_width, top + kept_height)).resize((width, height), Image.Resampling.BILINEAR)
    raise ValueError(f"no corruption {kind}")


def border_fill(image) -> int | tuple[int, ...]:  # noqa: ANN001
    """The border's median level per channel (`border_level`, as the digit recipe measures the paper): what a turned
    picture's new corners are filled with (black around a digit, the paper's white around a scan)."""
    pixels = np.asarray(image)
    levels = tuple(int(border_level(channel)) for channel in (pixels[..., None] if pixels.ndim == 2 else pixels).transpose(2, 0, 1))
    return levels[0] if len(levels) == 1 else levels
