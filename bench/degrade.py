"""Controlled degradations of real photos: the quality accuracy benchmark's cases (bench/quality_accuracy.py),
also used by the quality gate's tests.

Each function takes an RGB uint8 image (and, where the degradation is about the face, the
face box or its landmarks from the clean image) and returns a new RGB uint8 image.
Amounts are relative to the face where that matters, so that one level means the same on a
240p photo and on a 1080p one.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ekyc.quality.faces import Face
from ekyc.quality.landmarks import LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS
from ekyc.quality.measures import SHARPNESS_SIDE


def blur(rgb: np.ndarray, face: Face, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels of the face seen at SHARPNESS_SIDE (96) px wide."""
    pixels = sigma * max(face.width, face.height) / SHARPNESS_SIDE
    return cv2.GaussianBlur(rgb, (0, 0), pixels)


def gamma(rgb: np.ndarray, value: float) -> np.ndarray:
    """out = 255 (in / 255) ** value: value > 1 darkens, < 1 brightens."""
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** value + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, table)


def exposure_scale(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every value by ``factor`` (clipped): under- (< 1) or over-exposure (> 1) in stops."""
    table = np.clip(np.arange(256) * factor + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, table)


# Mid-grey in sRGB (18 % reflectance): the face mean of a correctly exposed photo, roughly.
MID_GREY = 118.0


def expose(rgb: np.ndarray, face: Face, stops: float, reference: float = MID_GREY) -> np.ndarray:
    """Exposure error of ``stops`` from a correct exposure: the image scaled so that the face's
    mean luma would be ``reference`` x 2^stops (then clipped at 255). Relative to a correct
    exposure, so that the same level is as bad on a dim original as on a bright one."""
    region = cv2.cvtColor(rgb[face.y : face.y + face.height, face.x : face.x + face.width], cv2.COLOR_RGB2GRAY)
    mean = max(float(region.mean()), 1.0)
    return exposure_scale(rgb, reference * 2.0**stops / mean)


def contrast(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Pull every value towards the image mean: factor 1 keeps the image, 0 makes it flat."""
    mean = float(rgb.mean())
    table = np.clip(mean + (np.arange(256) - mean) * factor + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, table)


def downscale(rgb: np.ndarray, short_side: int) -> np.ndarray:
    """The whole image resized so that its shorter side is ``short_side`` pixels."""
    height, width = rgb.shape[:2]
    factor = short_side / float(min(height, width))
    size = (max(1, int(round(width * factor))), max(1, int(round(height * factor))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def shrink_face(rgb: np.ndarray, face: Face, face_px: float, max_side: int = 640) -> np.ndarray:
    """The subject further away: the photo is first brought to at most ``max_side`` pixels on
    its longer side (a selfie camera's preview), then shrunk so that the face is ``face_px``
    wide and centred on a canvas of that size filled with the photo's mean colour."""
    height, width = rgb.shape[:2]
    fit = min(1.0, max_side / float(max(height, width)))
    canvas_w, canvas_h = max(1, int(round(width * fit))), max(1, int(round(height * fit)))
    factor = min(fit, face_px / float(max(face.width, 1)))
    small = cv2.resize(
        rgb, (max(1, int(round(width * factor))), max(1, int(round(height * factor)))), interpolation=cv2.INTER_AREA
    )
    canvas = np.empty((canvas_h, canvas_w, 3), np.uint8)
    canvas[:] = rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    y0 = (canvas_h - small.shape[0]) // 2
    x0 = (canvas_w - small.shape[1]) // 2
    canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return canvas


def mask_face(rgb: np.ndarray, face: Face, scale: float = 1.6) -> np.ndarray:
    """The face hidden: an ellipse of ``scale`` x the face box filled with the mean colour of
    the pixels around it (a head-sized blank where the face was)."""
    out = rgb.copy()
    height, width = rgb.shape[:2]
    centre = (int(round(face.x + face.width / 2.0)), int(round(face.y + face.height / 2.0)))
    axes = (int(round(face.width * scale / 2.0)), int(round(face.height * scale / 2.0)))
    inner = np.zeros((height, width), np.uint8)
    cv2.ellipse(inner, centre, axes, 0, 0, 360, 255, -1)
    ring = np.zeros((height, width), np.uint8)
    cv2.ellipse(ring, centre, (int(axes[0] * 1.15) + 2, int(axes[1] * 1.15) + 2), 0, 0, 360, 255, -1)
    ring[inner > 0] = 0
    colour = rgb[ring > 0].mean(axis=0) if (ring > 0).any() else rgb.reshape(-1, 3).mean(axis=0)
    out[inner > 0] = colour.astype(np.uint8)
    return out


def cut_face(rgb: np.ndarray, face: Face, side: str, fraction: float) -> np.ndarray:
    """Crop the image so that ``fraction`` of the face box lies beyond its ``side`` border."""
    height, width = rgb.shape[:2]
    if side == "left":
        return rgb[:, int(round(face.x + fraction * face.width)) :].copy()
    if side == "right":
        return rgb[:, : int(round(face.x + (1.0 - fraction) * face.width))].copy()
    if side == "top":
        return rgb[int(round(face.y + fraction * face.height)) :, :].copy()
    if side == "bottom":
        return rgb[: int(round(face.y + (1.0 - fraction) * face.height)), :].copy()
    raise ValueError(f"side must be left, right, top or bottom, not {side!r}")


def side_by_side(first: np.ndarray, second: np.ndarray, first_face: Face, second_face: Face) -> np.ndarray:
    """Two people next to each other at the same distance: ``second`` scaled so that its face
    is as wide as ``first``'s, cut or padded (mean colour) to ``first``'s height with the two
    faces at the same height, and placed to the right."""
    height = first.shape[0]
    factor = first_face.width / float(max(second_face.width, 1))
    other = cv2.resize(
        second,
        (max(1, int(round(second.shape[1] * factor))), max(1, int(round(second.shape[0] * factor)))),
        interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR,
    )
    shift = int(round((first_face.y + first_face.height / 2.0) - (second_face.y + second_face.height / 2.0) * factor))
    canvas = np.empty((height, other.shape[1], 3), np.uint8)
    canvas[:] = second.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    top, bottom = max(0, shift), min(height, shift + other.shape[0])
    if bottom > top:
        canvas[top:bottom] = other[top - shift : bottom - shift]
    return np.hstack([first, canvas])


def rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate counter-clockwise (as displayed) about the centre, on a canvas that holds the whole
    image (borders replicated)."""
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(round(height * sin + width * cos)), int(round(height * cos + width * sin))
    matrix[0, 2] += new_w / 2.0 - width / 2.0
    matrix[1, 2] += new_h / 2.0 - height / 2.0
    return cv2.warpAffine(rgb, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def mirror(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


SUNGLASS_SHAPES = ("ellipse", "round", "rectangle", "aviator")
# Lens colours as per-channel transmission (RGB, relative): grey, brown, green, blue-grey.
SUNGLASS_TINTS = ((1.0, 1.0, 1.0), (1.0, 0.78, 0.55), (0.8, 1.0, 0.82), (0.85, 0.9, 1.0))
# Luminous transmission of filter categories (ISO 12312-1): 4 = 3-8 %, 3 = 8-18 %,
# 2 = 18-43 %, 1 = 43-80 %. "Heavy" sunglasses are categories 3 and 4.
SUNGLASS_REFLECTANCE = 0.05


def sunglasses(
    rgb: np.ndarray,
    points: np.ndarray,
    transmission: float,
    shape: str = "ellipse",
    tint: tuple[float, float, float] = SUNGLASS_TINTS[0],
    size: float = 1.0,
    highlight: bool = True,
) -> np.ndarray:
    """Draw sunglasses over the eyes given the clean image's 478 landmarks (pixels).

    Lenses are centred slightly below each eye centre, ``size`` x (0.84 x 0.64) interocular
    distances for the default ellipse (52 x 40 mm lenses on an average face), rotated with the
    eye axis. A lens is a filter: what is behind it is multiplied by ``transmission`` (x the
    tint; a little less towards the top, as gradient lenses are) and the lens adds
    SUNGLASS_REFLECTANCE of the scene's mean light, plus an optional specular reflection.
    A dark frame, a bridge and temples are drawn on top.
    """
    out = rgb.copy()
    height, width = rgb.shape[:2]
    right = points[list(RIGHT_EYE_CORNERS), :2]
    left = points[list(LEFT_EYE_CORNERS), :2]
    axis = left.mean(axis=0) - right.mean(axis=0)
    iod = float(np.linalg.norm(axis))
    eye_width = 0.48 * iod  # an adult eye is about 30 mm wide, the eyes about 63 mm apart
    angle = math.degrees(math.atan2(axis[1], axis[0]))
    down = np.array([-axis[1], axis[0]]) / max(np.linalg.norm(axis), 1e-6)
    # Lens half sizes over the interocular distance: 52 x 40 mm lenses for 63 mm between the eyes.
    half_w = {"ellipse": 0.42, "round": 0.36, "rectangle": 0.42, "aviator": 0.43}[shape] * iod * size
    half_h = {"ellipse": 0.32, "round": 0.36, "rectangle": 0.28, "aviator": 0.36}[shape] * iod * size
    mask = np.zeros((height, width), np.uint8)
    centres = []
    for corners in (right, left):
        centre = corners.mean(axis=0) + down * 0.12 * eye_width
        if shape == "aviator":
            centre = centre + down * 0.1 * eye_width
        centres.append(centre)
        if shape == "rectangle":
            box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (2 * half_w, 2 * half_h), angle))
            cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 255)
        else:
            cv2.ellipse(
                mask, (int(round(centre[0])), int(round(centre[1]))), (int(round(half_w)), int(round(half_h))),
                angle, 0, 360, 255, -1,
            )
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, eye_width * 0.02))
    cover = (mask.astype(np.float32) / 255.0)[:, :, None]
    # Gradient lenses: transmission rises from 0.7x at the top to 1.3x at the bottom.
    ys = np.arange(height, dtype=np.float32)[:, None]
    top = min(c[1] for c in centres) - half_h
    gradient = np.clip(0.7 + 0.6 * (ys - top) / max(2 * half_h, 1.0), 0.7, 1.3)[:, :, None]
    filtered = out.astype(np.float32) * (transmission * gradient * np.array(tint, np.float32))
    filtered += SUNGLASS_REFLECTANCE * float(rgb.mean())
    out = np.clip(out.astype(np.float32) * (1.0 - cover) + filtered * cover, 0, 255).astype(np.uint8)
    frame = (10, 10, 10)
    thickness = max(1, int(round(eye_width * 0.06)))
    for centre in centres:
        c = (int(round(centre[0])), int(round(centre[1])))
        if shape == "rectangle":
            box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (2 * half_w, 2 * half_h), angle))
            cv2.polylines(out, [np.round(box).astype(np.int32)], True, frame, thickness)
        else:
            cv2.ellipse(out, c, (int(round(half_w)), int(round(half_h))), angle, 0, 360, frame, thickness)
        if highlight:
            spot = np.zeros((height, width), np.uint8)
            offset = -down * 0.35 * half_h + axis / max(np.linalg.norm(axis), 1e-6) * 0.3 * half_w
            cv2.ellipse(
                spot, (int(round(centre[0] + offset[0])), int(round(centre[1] + offset[1]))),
                (max(1, int(half_w * 0.25)), max(1, int(half_h * 0.12))), angle - 20, 0, 360, 255, -1,
            )
            spot_alpha = (cv2.GaussianBlur(spot, (0, 0), max(0.5, eye_width * 0.05)).astype(np.float32) / 255.0 * 0.35)[:, :, None]
            out = (out.astype(np.float32) * (1 - spot_alpha) + 235.0 * spot_alpha).astype(np.uint8)
    unit = axis / max(np.linalg.norm(axis), 1e-6)
    inner_r = centres[0] + unit * half_w
    inner_l = centres[1] - unit * half_w
    cv2.line(out, tuple(np.round(inner_r - down * 0.3 * half_h).astype(int)),
             tuple(np.round(inner_l - down * 0.3 * half_h).astype(int)), frame, thickness)
    for centre, sign in ((centres[0], -1.0), (centres[1], 1.0)):
        start = centre + unit * sign * half_w - down * 0.3 * half_h
        end = start + unit * sign * 0.6 * eye_width
        cv2.line(out, tuple(np.round(start).astype(int)), tuple(np.round(end).astype(int)), frame, thickness)
    return out
