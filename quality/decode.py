"""Image decoding: bytes in, an upright RGB uint8 array out, or a typed error."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from ekyc.quality.errors import ImageDecodeError, ImageTooLargeError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
EXIF_ORIENTATION = 0x0112


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode JPEG, PNG or WebP bytes to an RGB ``uint8`` array of shape (H, W, 3).

    EXIF orientation is applied, so boxes refer to the image as a person sees it.
    The pixel count is checked from the header, before the pixels are decoded,
    so a small file that declares a huge image is refused cheaply.
    """
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
    try:
        image.load()
        # Only a non-default orientation needs a transposed copy (saves a full-frame copy).
        if image.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1):
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"image is corrupt or truncated: {exc}") from None


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
