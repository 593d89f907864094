"""Face alignment for the face matcher: five points of the gate's face mesh moved onto the
embedding model's template.

No second detector: the five points of SFace's alignment template (eye centres, nose tip,
mouth corners) come from MediaPipe's face mesh (quality/landmarks.py), which the quality gate
runs on every face it accepts. The crop is OpenCV's ``FaceRecognizerSF.alignCrop``: a
least-squares similarity transform (Umeyama, as OpenCV's getSimilarityTransformMatrix) of the
five points onto the 112x112 template SFace was trained with, bilinear, zero border.
"""

from __future__ import annotations

import cv2
import numpy as np

ALIGNED_SIDE = 112
# OpenCV's FaceRecognizerSF template (modules/objdetect/src/face_recognize.cpp), the ArcFace
# five points on a 112x112 crop: the subject's right eye (image left on an unmirrored photo),
# left eye, nose tip, right mouth corner, left mouth corner.
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# The same five points in MediaPipe's 478-point face mesh: iris centres (the template's eye
# points are eye centres, as the detectors it was made for label them), the nose tip and the
# mouth corners. tests/test_face_match.py checks that crops made from them agree with
# OpenCV's own pipeline (YuNet's five points + alignCrop) on real faces.
MESH_FIVE_POINTS = (468, 473, 1, 61, 291)


def five_points(points: np.ndarray) -> np.ndarray:
    """The template's five points (5, 2) from MediaPipe face-mesh landmarks (478, 2 or 3)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[0] <= max(MESH_FIVE_POINTS):
        raise ValueError(f"need MediaPipe's 478 face-mesh landmarks, got an array of shape {points.shape}")
    return points[list(MESH_FIVE_POINTS), :2].astype(np.float64)


def similarity_transform(source: np.ndarray, target: np.ndarray = TEMPLATE) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) that maps ``source`` (N, 2)
    onto ``target`` with the least squared error: Umeyama's solution, as OpenCV's
    getSimilarityTransformMatrix computes it for FaceRecognizerSF.alignCrop."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    centred_s, centred_t = source - mean_s, target - mean_t
    covariance = centred_t.T @ centred_s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(covariance) < 0:
        sign[1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = centred_s.var(axis=0).sum()
    if variance <= 1e-12:
        raise ValueError("the five points coincide: no alignment")
    scale = float((singular * sign).sum() / variance)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_t - matrix[:, :2] @ mean_s
    return matrix


def align_face(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The model's input crop: uint8 (112, 112, 3), the five ``points`` (5, 2) in pixels of
    ``rgb`` moved onto the template (bilinear, zero border, as OpenCV's alignCrop)."""
    matrix = similarity_transform(points)
    return cv2.warpAffine(rgb, matrix, (ALIGNED_SIDE, ALIGNED_SIDE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
