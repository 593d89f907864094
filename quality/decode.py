"""Image decoding: bytes in, an upright RGB uint8 array out, or a typed error."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from ekyc.quality.errors import ImageDecodeError, ImageTooLargeError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
EXIF_ORIENTATION = 0x0112


# The scales libjpeg decodes at directly, in the DCT domain (Pillow's draft()): 1/2, 1/4, 1/8.
JPEG_REDUCTIONS = (8, 4, 2)


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image, decoded at full size or reduced by ``scale`` in the JPEG decoder.

    ``width`` and ``height`` are the image's own (upright) size; ``rgb`` may be smaller:
    ``scale`` image pixels per decoded pixel (1, 2, 4 or 8).
    """

    rgb: np.ndarray
    width: int
    height: int
    scale: int = 1


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode JPEG, PNG or WebP bytes to an RGB ``uint8`` array of shape (H, W, 3).

    EXIF orientation is applied, so boxes refer to the image as a person sees it.
    The pixel count is checked from the header, before the pixels are decoded,
    so a small file that declares a huge image is refused cheaply.
    """
    return decode(data, max_pixels).rgb


def decode(data: bytes, max_pixels: int, min_short_side: int = 0) -> DecodedImage:
    """Like decode_image; with ``min_short_side`` > 0, a JPEG whose shorter side is at least
    twice that is decoded reduced by 2, 4 or 8 (the largest that keeps the shorter side at
    ``min_short_side`` or more), in the DCT domain: libjpeg computes the smaller image
    directly, at a fraction of the cost, and low-passed as a resize would be. Other formats
    and smaller JPEGs decode at full size (scale 1)."""
    if not data:
        raise ImageDecodeError("image is empty: send the JPEG, PNG or WebP file's bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(SUPPORTED_FORMATS))
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("image is not a JPEG or PNG file (nor WebP)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError("image declares more pixels than the server accepts") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"image is corrupt or truncated: its header is unreadable ({exc})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    scale = _jpeg_reduction(image, min_short_side)
    try:
        if scale > 1:
            image.draft(image.mode, ((width + scale - 1) // scale, (height + scale - 1) // scale))
            scale = max(1, round(width / image.size[0]))  # what libjpeg chose
        image.load()
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        # Only a non-default orientation needs a transposed copy (saves a full-frame copy).
        if orientation not in (0, 1):
            image = ImageOps.exif_transpose(image)
        if orientation in (5, 6, 7, 8):  # turned by 90 degrees: the upright image is height x width
            width, height = height, width
        return DecodedImage(_to_rgb(image), width, height, scale)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"image is corrupt or truncated: {exc}") from None


def _jpeg_reduction(image: Image.Image, min_short_side: int) -> int:
    if min_short_side <= 0 or image.format != "JPEG":
        return 1
    short = min(image.size)
    return next((s for s in JPEG_REDUCTIONS if short // s >= min_short_side), 1)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's convert("L") clips 16-bit values at 255; scale by the data range instead.
        wide = np.asarray(image, dtype=np.uint32)
        scale = 65535 if image.mode != "I" else max(int(wide.max()), 1)
        gray = (wide * 255 // scale).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
