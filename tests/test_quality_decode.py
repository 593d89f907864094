"""Decoding for the gate: WebP next to JPEG and PNG, and LOW_RESOLUTION as a reason, not an error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import encode
from ekyc.quality.decode import decode_image
from ekyc.quality.errors import ImageDecodeError, ImageTooLargeError
from ekyc.quality.gate import QualityGate, QualityReason
from ekyc.server.config import load_config

LIMIT = 40_000_000


def gradient(height=60, width=80) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 3 % 256, y * 4 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def test_webp_decodes_lossless_and_lossy():
    rgb = gradient()
    assert np.array_equal(decode_image(encode(rgb, "WEBP", lossless=True), LIMIT), rgb)
    lossy = decode_image(encode(rgb, "WEBP", quality=90), LIMIT)
    assert lossy.shape == rgb.shape and np.abs(lossy.astype(int) - rgb.astype(int)).mean() < 12


def test_webp_with_alpha_becomes_rgb():
    rgba = np.dstack([gradient(), np.full((60, 80), 128, np.uint8)])
    decoded = decode_image(encode(rgba, "WEBP", lossless=True), LIMIT)
    assert decoded.shape == (60, 80, 3) and decoded.dtype == np.uint8


def test_webp_pixel_limit_is_checked_before_decoding():
    with pytest.raises(ImageTooLargeError):
        decode_image(encode(gradient(100, 100), "WEBP"), max_pixels=5_000)


def test_webp_exif_orientation_is_applied():
    rgb = gradient(60, 80)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="WEBP", lossless=True, exif=exif.tobytes())
    assert decode_image(buffer.getvalue(), LIMIT).shape == (80, 60, 3)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_refused_by_name(fmt):
    with pytest.raises(ImageDecodeError, match="not a JPEG or PNG"):
        decode_image(encode(gradient(), fmt), LIMIT)


def test_truncated_webp_is_a_decode_error():
    data = encode(gradient(200, 200), "WEBP", quality=90)
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2], LIMIT)


@pytest.fixture(scope="module")
def gate():
    with QualityGate(load_config(environ={}).quality) as gate:
        yield gate


def test_small_images_are_low_resolution_in_either_orientation(gate, face_rgb):
    limits = gate.options.thresholds
    for size in ((limits.min_image_short_side_px - 1, limits.min_image_long_side_px + 50),
                 (limits.min_image_long_side_px + 50, limits.min_image_short_side_px - 1)):
        small = np.asarray(Image.fromarray(face_rgb).resize(size))
        assert QualityReason.LOW_RESOLUTION in gate.assess(small).reasons, size
    ok = np.asarray(Image.fromarray(face_rgb).resize((limits.min_image_short_side_px, limits.min_image_long_side_px)))
    assert QualityReason.LOW_RESOLUTION not in gate.assess(ok).reasons
