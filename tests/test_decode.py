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
