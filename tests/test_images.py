from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.images import MAX_PIXELS, array_to_pixels, border_level, load_digit, load_grayscale, to_mnist_digit


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny file whose header claims a huge image: decoding it would allocate width x height bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_mnist_style_digit_is_used_as_is(real_arrays, tmp_path):
    digit = real_arrays["x_test"][0]
    Image.fromarray(digit).save(tmp_path / "digit.png")
    np.testing.assert_array_equal(load_digit(tmp_path / "digit.png"), digit)


def test_photo_style_digit_is_inverted_cropped_and_centered(real_arrays, tmp_path):
    digit = real_arrays["x_test"][3]
    light = Image.fromarray(255 - digit).resize((280, 400)).convert("RGB")
    light.save(tmp_path / "photo.jpg", quality=95)
    result = load_digit(tmp_path / "photo.jpg")
    assert result.shape == (28, 28) and result.dtype == np.uint8
    assert np.median(np.concatenate([result[0], result[-1]])) == 0, "background must become black"
    rows, columns = np.flatnonzero(result.max(axis=1) > 0), np.flatnonzero(result.max(axis=0) > 0)
    assert rows[-1] - rows[0] + 1 <= 21 and columns[-1] - columns[0] + 1 <= 21, "digit fits the 20x20 box"
    weights = result.astype(float)
    center = (np.indices(result.shape) * weights).sum(axis=(1, 2)) / weights.sum()
    assert np.all(np.abs(center - 13.5) <= 1.0)


def test_alpha_png_is_composited_on_white(tmp_path):
    canvas = np.zeros((60, 60, 4), dtype=np.uint8)
    canvas[15:45, 28:32] = (0, 0, 0, 255)  # a black stroke on a transparent background
    Image.fromarray(canvas, "RGBA").save(tmp_path / "stroke.png")
    result = load_digit(tmp_path / "stroke.png")
    assert result.max() > 200 and result[0, 0] == 0


def test_npy_inputs(tmp_path, real_arrays):
    digit = real_arrays["x_test"][1]
    np.save(tmp_path / "u8.npy", digit)
    np.save(tmp_path / "float.npy", digit.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(load_digit(tmp_path / "u8.npy"), digit)
    np.testing.assert_array_equal(load_digit(tmp_path / "float.npy"), digit)


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.full((28, 28), np.nan, dtype=np.float32), "NaN or infinite"),
        (np.full((28, 28), np.inf), "NaN or infinite"),
        (np.full((28, 28), -3.0), "pixel values must be in"),
        (np.zeros((2, 28, 28)), "expected (H, W)"),
        (np.array(["a", "b"]), "expected numbers"),
        (np.zeros((28, 28), dtype=np.complex64), "expected numbers"),
    ],
)
def test_bad_arrays(tmp_path, array, fragment):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(EdgecnnError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_grayscale(tmp_path / "bad.npy")


def test_hostile_and_broken_files(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(huge_png_header(60000, 60000))
    with pytest.raises(EdgecnnError, match="decompression bomb"):
        load_grayscale(bomb)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EdgecnnError, match="never unpickled"):
        load_grayscale(pickled)
    truncated = tmp_path / "truncated.png"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, "PNG")
    truncated.write_bytes(buffer.getvalue()[:200])
    with pytest.raises(EdgecnnError, match="corrupt or truncated"):
        load_grayscale(truncated)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(EdgecnnError, match="empty"):
        load_grayscale(empty)
    with pytest.raises(EdgecnnError, match="unsupported image type .psd"):
        (tmp_path / "x.psd").write_bytes(b"8BPS" + bytes(40))
        load_grayscale(tmp_path / "x.psd")
    with pytest.raises(EdgecnnError, match="cannot decode image: not a picture edgecnn decodes"):
        (tmp_path / "x.gif").write_bytes(b"GIF89a")  # the signature alone
        load_grayscale(tmp_path / "x.gif")
    with pytest.raises(EdgecnnError, match="blank"):
        to_mnist_digit(np.full((50, 50), 255, dtype=np.uint8))


@settings(max_examples=300, deadline=None)
@given(image=arrays(dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int16]), shape=st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_fuzz_arrays_give_a_digit_or_user_error(image):
    try:
        digit = to_mnist_digit(array_to_pixels(image, "fuzz")[..., 0])
    except EdgecnnError:
        return
    assert digit.shape == (28, 28) and digit.dtype == np.uint8


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=1024), suffix=st.sampled_from([".png", ".jpg", ".bmp", ".npy"]))
def test_fuzz_any_bytes_as_image_give_a_digit_or_user_error(tmp_path, blob, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(blob)
    try:
        digit = load_digit(path)
    except EdgecnnError:
        return
    assert digit.shape == (28, 28)


def test_pixel_limit_is_generous_for_photos():
    assert MAX_PIXELS >= 12_000_000, "a 12 MP phone photo must be accepted"


@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_border_level_is_numpys_median_of_the_border(gray):
    border = np.concatenate((gray[0], gray[-1], gray[:, 0], gray[:, -1]))
    assert border_level(gray) == float(np.median(border))
