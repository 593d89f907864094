"""Decoding: formats, EXIF orientation, odd pixel layouts, and clean typed errors."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import encode
from ekyc.quality.decode import decode_image
from ekyc.quality.errors import ImageDecodeError, ImageTooLargeError

LIMIT = 40_000_000


def gradient(height=60, width=80) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 3 % 256, y * 4 % 256, (x + y) % 256], axis=2).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decodes_png_and_jpeg_to_rgb(fmt):
    rgb = gradient()
    decoded = decode_image(encode(rgb, fmt, **({"quality": 95} if fmt == "JPEG" else {})), LIMIT)
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    tolerance = 0 if fmt == "PNG" else 12
    assert np.abs(decoded.astype(int) - rgb.astype(int)).mean() <= tolerance


def test_exif_orientation_is_applied():
    rgb = gradient(60, 80)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(rgb, "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data, LIMIT)
    assert decoded.shape == (80, 60, 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 12


def test_grayscale_alpha_and_16_bit_inputs_become_rgb():
    gray = encode(gradient()[:, :, 0], "PNG")
    rgba = encode(np.dstack([gradient(), np.full((60, 80), 200, np.uint8)]), "PNG")
    wide = np.full((60, 80), 40000, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    for data in (gray, rgba, buffer.getvalue()):
        decoded = decode_image(data, LIMIT)
        assert decoded.shape == (60, 80, 3) and decoded.dtype == np.uint8
    sixteen = decode_image(buffer.getvalue(), LIMIT)
    assert abs(int(sixteen[0, 0, 0]) - 40000 * 255 // 65535) <= 1


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"hello, this is text and not an image", "not a JPEG or PNG"),
        (bytes(range(256)) * 8, "not a JPEG or PNG"),
        (b"GIF89a" + b"\x00" * 64, "not a JPEG or PNG"),
    ],
)
def test_non_images_raise_decode_error(data, words):
    with pytest.raises(ImageDecodeError, match=words):
        decode_image(data, LIMIT)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_raise_decode_error(fmt):
    data = encode(gradient(200, 200), fmt)
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2], LIMIT)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_pixel_limit_is_checked_from_the_header():
    bomb = _png_header_only(30_000, 30_000)  # 900 MP declared in a ~100-byte file
    assert len(bomb) < 200
    with pytest.raises(ImageTooLargeError, match="pixels"):
        decode_image(bomb, LIMIT)
    with pytest.raises(ImageTooLargeError):
        decode_image(encode(gradient(100, 100), "PNG"), max_pixels=5_000)


def smooth(height, width) -> np.ndarray:
    """A smooth colour image (JPEG-friendly): gradients and a disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 3) ** 2) * 80
    return np.clip(np.stack([x / width * 255, y / height * 255, 60 + disc], axis=2), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("min_short_side, scale", [(0, 1), (600, 1), (360, 2), (180, 4), (90, 8), (20, 8)])
def test_a_large_jpeg_is_decoded_reduced_in_the_dct_domain(min_short_side, scale):
    from ekyc.quality.decode import decode

    rgb = smooth(720, 1280)
    decoded = decode(encode(rgb, "JPEG", quality=95), LIMIT, min_short_side)
    assert (decoded.width, decoded.height, decoded.scale) == (1280, 720, scale)
    assert decoded.rgb.shape == (720 // scale, 1280 // scale, 3) and decoded.rgb.dtype == np.uint8
    # What libjpeg computes at 1/scale is what an area resize of the full image gives, nearly.
    import cv2

    expected = cv2.resize(rgb, (1280 // scale, 720 // scale), interpolation=cv2.INTER_AREA)
    assert np.abs(decoded.rgb.astype(int) - expected.astype(int)).mean() < 3


def test_the_reduced_decode_keeps_the_upright_size_and_orientation():
    from ekyc.quality.decode import decode

    rgb = smooth(720, 1000)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode(encode(rgb, "JPEG", quality=95, exif=exif.tobytes()), LIMIT, 300)
    assert (decoded.width, decoded.height, decoded.scale) == (720, 1000, 2)
    assert decoded.rgb.shape == (500, 360, 3)
    full = decode(encode(rgb, "JPEG", quality=95, exif=exif.tobytes()), LIMIT)
    assert full.rgb.shape == (1000, 720, 3) and full.scale == 1
    assert np.abs(decoded.rgb.astype(int) - full.rgb[::2, ::2].astype(int)).mean() < 6


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_only_jpeg_is_reduced(fmt):
    from ekyc.quality.decode import decode

    decoded = decode(encode(smooth(720, 1280), fmt), LIMIT, 180)
    assert decoded.scale == 1 and decoded.rgb.shape == (720, 1280, 3)


def test_the_pixel_limit_is_checked_on_the_full_size_even_when_reduced():
    from ekyc.quality.decode import decode

    with pytest.raises(ImageTooLargeError):
        decode(encode(smooth(720, 1280), "JPEG"), 1280 * 720 - 1, 90)
