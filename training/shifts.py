"""The capture-shift suite: what another camera, room or light does to a whole frame.

Each shift is applied to the decoded image (live and spoof alike) before the face is cut
out, so every crop a model takes sees the same change, as it would from a real camera.
Parameters are drawn per image from a generator seeded by the image's path and the shift's
name: the suite is reproducible and identical for every model scored on it.

* ``dim``: exposure down 2-3 stops (in linear light), signal-dependent sensor noise, then
  the camera's denoising blur;
* ``overexposed``: exposure up 1.5-2 stops, clipped highlights;
* ``warm`` / ``cool``: white balance off by a red/blue gain of ~1.25 (in linear light);
* ``lowres``: the frame scaled so the face is 48-64 px across (the model's crop is then
  scaled up from there, as in the server);
* ``jpeg30``: the frame re-encoded at JPEG quality 30.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

SHIFTS = ("dim", "overexposed", "warm", "cool", "lowres", "jpeg30")


def _rng(path: str, shift: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha1(f"{shift}:{path}".encode()).digest()[:8], "little"))


def _to_linear(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) / 255.0) ** 2.2


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    return np.clip(np.round(255.0 * np.clip(linear, 0.0, 1.0) ** (1 / 2.2)), 0, 255).astype(np.uint8)


def dim(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    linear = _to_linear(rgb) * 2.0 ** -rng.uniform(2.0, 3.0)
    sigma = np.sqrt(linear * 0.002 + 0.0015**2)  # shot noise + read noise, linear units
    linear = linear + rng.normal(0.0, 1.0, linear.shape).astype(np.float32) * sigma
    out = _to_srgb(linear)
    return cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 1.0))


def overexposed(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _to_srgb(_to_linear(rgb) * 2.0 ** rng.uniform(1.5, 2.0))


def _balance(rgb: np.ndarray, red: float, blue: float) -> np.ndarray:
    return _to_srgb(_to_linear(rgb) * np.array([red, 1.0, blue], dtype=np.float32))


def warm(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    g = rng.uniform(1.2, 1.3)
    return _balance(rgb, g, 1.0 / g)


def cool(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    g = rng.uniform(1.2, 1.3)
    return _balance(rgb, 1.0 / g, g)


def jpeg30(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 30])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy() if ok else rgb


PIXEL_SHIFTS = {"dim": dim, "overexposed": overexposed, "warm": warm, "cool": cool, "jpeg30": jpeg30}


def apply_shift(rgb: np.ndarray, face, shift: str, key: str):
    """(shifted image, face box in it) for one decoded RGB image and its face box."""
    from ekyc.quality.faces import Face

    rng = _rng(key, shift)
    if shift in PIXEL_SHIFTS:
        return PIXEL_SHIFTS[shift](rgb, rng), face
    if shift == "lowres":
        target = rng.uniform(48.0, 64.0)
        factor = min(1.0, target / max(face.width, face.height, 1))
        height, width = rgb.shape[:2]
        new_w, new_h = max(1, int(round(width * factor))), max(1, int(round(height * factor)))
        small = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        fx, fy = new_w / width, new_h / height
        box = Face(int(round(face.x * fx)), int(round(face.y * fy)), max(1, int(round(face.width * fx))),
                   max(1, int(round(face.height * fy))), face.score)
        return small, box
    raise ValueError(f"unknown shift {shift!r}; known: {', '.join(SHIFTS)}")
