"""The one uint8-digits ↔ artifact-tensor path every runner shares: scaling, layout and the quantization arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.core.description import InputScaling, ModelDescription, OutputKind, Preprocess
from edgecnn.core.manifest import TensorSpec
from edgecnn.runners import decode_output
from edgecnn.runners import encode_images as encode_with

PIXELS = np.resize(np.array([0, 1, 127, 128, 254, 255], dtype=np.uint8), 28 * 28).reshape(1, 28, 28, 1)
DIGITS = ModelDescription(28, 28, 1, InputScaling.UNIT, tuple("0123456789"), OutputKind.PROBABILITIES, Preprocess.DIGIT)


def encode_images(images: np.ndarray, spec: TensorSpec) -> np.ndarray:
    return encode_with(images, spec, DIGITS)


def test_float_input_is_pixels_over_255_in_nhwc():
    encoded = encode_images(PIXELS, TensorSpec("image", (None, 28, 28, 1), "float32"))
    assert encoded.shape == (1, 28, 28, 1) and encoded.dtype == np.float32
    assert encoded[0, 0, :6, 0].tolist() == pytest.approx([0.0, 1 / 255, 127 / 255, 128 / 255, 254 / 255, 1.0])


def test_raw_uint8_input_keeps_pixels_and_drops_the_channel():
    encoded = encode_images(PIXELS, TensorSpec("image", (None, 28, 28), "uint8"))
    assert encoded.dtype == np.uint8 and encoded.shape == (1, 28, 28) and np.array_equal(encoded, PIXELS[..., 0])


def test_int8_quantization_is_round_of_scaled_pixel_plus_zero_point():
    spec = TensorSpec("image", (None, 28, 28, 1), "int8", scale=1 / 255, zero_point=-128)
    encoded = encode_images(PIXELS, spec)
    assert encoded.dtype == np.int8
    assert encoded[0, 0, :6, 0].tolist() == [-128, -127, -1, 0, 126, 127]


def test_quantization_clips_to_the_integer_range():
    coarse = TensorSpec("image", (None, 28, 28, 1), "int8", scale=1 / 510, zero_point=0)  # 255 would need q = 510
    encoded = encode_images(PIXELS, coarse)
    assert encoded.max() == 127 and encoded.min() == 0
    unsigned = TensorSpec("image", (None, 28, 28, 1), "uint8", scale=1 / 255, zero_point=0)
    assert encode_images(PIXELS, unsigned)[0, 0, :6, 0].tolist() == [0, 1, 127, 128, 254, 255]


def test_decode_dequantizes_and_round_trips_within_half_a_step():
    spec = TensorSpec("probabilities", (None, 10), "int8", scale=1 / 256, zero_point=-128)
    raw = np.array([[-128, -127, 0, 127]], dtype=np.int8)
    assert decode_output(raw, spec).tolist() == [[0.0, 1 / 256, 128 / 256, 255 / 256]]
    image = TensorSpec("image", (None, 28, 28, 1), "int8", scale=0.0039215, zero_point=-128)
    restored = decode_output(encode_images(PIXELS, image), image)
    assert np.abs(restored - PIXELS / 255.0).max() <= image.scale / 2 + 1e-7


def test_float_output_passes_through_as_float32():
    raw = np.array([[0.25, 0.75]], dtype=np.float16)
    decoded = decode_output(raw, TensorSpec("probabilities", (None, 2), "float16"))
    assert decoded.dtype == np.float32 and decoded.tolist() == [[0.25, 0.75]]


def test_rgb_input_follows_the_description_per_channel():
    """A 2x3 RGB model with mean/std scaling: the pixels are scaled per channel, laid out NHWC, quantized from there."""
    rgb = ModelDescription(2, 3, 3, InputScaling.MEAN_STD, ("a", "b"), OutputKind.LOGITS, Preprocess.RESIZE, mean=(100.0, 0.0, 255.0),
                           std=(50.0, 1.0, 255.0))
    pixels = np.arange(18, dtype=np.uint8).reshape(1, 2, 3, 3) * 14
    encoded = encode_with(pixels, TensorSpec("image", (None, 2, 3, 3), "float32"), rgb)
    np.testing.assert_allclose(encoded, (pixels.astype(np.float32) - [100, 0, 255]) / [50, 1, 255], rtol=1e-6)
    raw = encode_with(pixels, TensorSpec("image", (None, 2, 3, 3), "uint8"), rgb)
    assert np.array_equal(raw, pixels)
