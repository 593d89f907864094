"""The gate's measurements: pure functions of uint8 pixels, boxes and landmarks.

Everything here works on the face region or on small patches around landmarks, never on a
float copy of the full frame, so the gate's cost does not grow with the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ekyc.quality.faces import Face
from ekyc.quality.landmarks import LEFT_EYE, LEFT_EYE_CORNERS, RIGHT_EYE, RIGHT_EYE_CORNERS, SKIN_POINTS, FaceLandmarks

# Sharpness is measured on the face resized to this side, so that it does not
# depend on the face's size in pixels or on the background.
SHARPNESS_SIDE = 96
# The face region's luma is normalised to this standard deviation before the Laplacian,
# so that sharpness measures detail, not exposure (a darker copy of a face scores alike).
SHARPNESS_CONTRAST = 48.0


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as uint8, the same weights OpenCV and JPEG use."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def face_region(gray: np.ndarray, face: Face) -> np.ndarray:
    return gray[face.y : face.y + face.height, face.x : face.x + face.width]


def sharpness(gray_face: np.ndarray) -> float:
    """Variance of the Laplacian of the face resized to SHARPNESS_SIDE pixels square,
    after scaling the face's luma to a standard deviation of SHARPNESS_CONTRAST."""
    if gray_face.size == 0:
        return 0.0
    interpolation = cv2.INTER_AREA if min(gray_face.shape) > SHARPNESS_SIDE else cv2.INTER_LINEAR
    resized = cv2.resize(gray_face, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=interpolation)
    std = float(resized.std())
    if std < 1.0:
        return 0.0
    laplacian = cv2.Laplacian(resized, cv2.CV_32F)
    return float(laplacian.var()) * (SHARPNESS_CONTRAST / std) ** 2


@dataclass(frozen=True)
class Exposure:
    brightness: float
    underexposed_fraction: float
    overexposed_fraction: float
    dynamic_range: float


def exposure(gray_region: np.ndarray, dark_level: int, bright_level: int) -> Exposure:
    """Mean luma, clipped fractions and the 5-95 percentile spread of a uint8 region (one histogram)."""
    if gray_region.size == 0:
        return Exposure(0.0, 0.0, 0.0, 0.0)
    hist = cv2.calcHist([gray_region], [0], None, [256], [0, 256]).ravel()
    total = float(hist.sum())
    cumulative = np.cumsum(hist) / total
    mean = float(np.dot(hist, np.arange(256)) / total)
    p5 = int(np.searchsorted(cumulative, 0.05))
    p95 = int(np.searchsorted(cumulative, 0.95))
    under = float(cumulative[min(max(dark_level, 0), 255)])
    over = float(hist[min(max(bright_level, 0), 255) :].sum() / total) if bright_level <= 255 else 0.0
    return Exposure(mean, under, over, float(p95 - p5))


def border_margin(face: Face, points: np.ndarray | None, width: int, height: int) -> float:
    """Smallest distance from the face to the image border, over the face width; <= 0 when the
    face touches or crosses the border. Uses the detector's unclamped box and, when given,
    the face-oval landmarks (which the landmarker places outside the image for a cut face)."""
    x0, y0, x1, y1 = face.bounds if face.bounds is not None else (face.x, face.y, face.x + face.width, face.y + face.height)
    if points is not None:
        x0, y0 = min(x0, float(points[:, 0].min())), min(y0, float(points[:, 1].min()))
        x1, y1 = max(x1, float(points[:, 0].max())), max(y1, float(points[:, 1].max()))
    margin = min(x0, y0, width - x1, height - y1)
    return float(margin / max(face.width, 1))


def _patch(gray: np.ndarray, x: float, y: float, radius: int) -> np.ndarray:
    height, width = gray.shape
    xi, yi = int(round(x)), int(round(y))
    return gray[max(0, yi - radius) : min(height, yi + radius + 1), max(0, xi - radius) : min(width, xi + radius + 1)]


# Where a lens hides skin that an open, closed or clear-glassed eye leaves visible: a band
# under each eye, in units of the eye's corner-to-corner width w, along the corner axis
# (u, from the middle of the eye) and down from it (v); the eye itself is cut out.
UNDER_EYE_BAND = (-0.65, 0.65, 0.1, 0.5)  # u0, u1, v0, v1
EYE_CUTOUT_SCALE = 1.15


def eye_occlusion(gray: np.ndarray, landmarks: FaceLandmarks) -> float:
    """0 = both eyes visible .. 1 = both hidden behind something dark (e.g. sunglasses).

    For each eye, the mean luma of the band under it (UNDER_EYE_BAND) over the median luma
    of skin patches that sunglasses leave visible (lower cheeks, mid forehead). Bare skin under
    an eye is about as bright as the cheeks (ratio ~1); a dark lens transmits a few to 40 % of
    the light, so the ratio falls with it. The score is 1 - the ratio of the less hidden eye
    (one shaded or closed eye does not flag the image), clipped to 0..1.
    """
    points = landmarks.points
    iod = max(landmarks.interocular_distance, 4.0)
    radius = max(2, int(round(iod * 0.08)))
    skin = np.concatenate([_patch(gray, points[i, 0], points[i, 1], radius).ravel() for i in SKIN_POINTS])
    if skin.size == 0:
        return 0.0
    skin_level = float(np.median(skin))
    if skin_level < 8.0:
        return 0.0  # too dark to tell: TOO_DARK reports it
    height, width = gray.shape
    u0, u1, v0, v1 = UNDER_EYE_BAND
    ratios = []
    for contour, corners in ((RIGHT_EYE, RIGHT_EYE_CORNERS), (LEFT_EYE, LEFT_EYE_CORNERS)):
        a, b = points[corners[0], :2], points[corners[1], :2]
        along = b - a
        eye_width = float(np.linalg.norm(along))
        if eye_width < 2.0:
            continue
        along /= eye_width
        down = np.array([-along[1], along[0]])
        if down[1] < 0:
            down = -down
        middle = (a + b) / 2.0
        band = np.array([middle + along * u * eye_width + down * v * eye_width for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])
        eye = points[list(contour), :2]
        centre = eye.mean(axis=0)
        eye = centre + (eye - centre) * EYE_CUTOUT_SCALE
        x0, y0 = np.floor(np.minimum(band.min(axis=0), eye.min(axis=0))).astype(int)
        x1, y1 = np.ceil(np.maximum(band.max(axis=0), eye.max(axis=0))).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round(band - (x0, y0)).astype(np.int32)], 1)
        cv2.fillPoly(mask, [np.round(eye - (x0, y0)).astype(np.int32)], 0)
        inside = gray[y0:y1, x0:x1][mask.astype(bool)]
        if inside.size:
            ratios.append(float(inside.mean()) / skin_level)
    if not ratios:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - max(ratios))))


def eye_centres(landmarks: FaceLandmarks) -> tuple[np.ndarray, np.ndarray]:
    return landmarks.eye_centre(RIGHT_EYE_CORNERS), landmarks.eye_centre(LEFT_EYE_CORNERS)
