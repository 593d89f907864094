"""Face landmarks, head pose and eye state from MediaPipe's face mesh models, run directly.

The models are MediaPipe Face Landmarker's own (landmarks: 478 points; blendshapes: 52
expression scores), converted once to ONNX (scripts/convert_face_mesh.py, models/mediapipe/)
and run by ONNX Runtime on the face that BlazeFace already found. MediaPipe's FaceLandmarker
task would first run its own face detector again and costs 8 ms per face on one core here;
the two models alone cost about 5.5 ms. What the task adds is re-implemented here, as its
source does it: the crop (the detector box x 1.5, turned so that the eyes are level), the
projection of the landmarks back to the image, the blendshape model's input (146 of the
points, in pixels) and the head pose (a weighted Procrustes fit of MediaPipe's canonical face
mesh to the landmarks). tests/test_mediapipe_models.py checks all of it against MediaPipe's
FaceLandmarker on real faces.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ekyc.quality.faces import Face
from ekyc.ort_session import cpu_session

FACE_MESH_FILES = ("face_landmarks.onnx", "face_blendshapes.onnx", "geometry_pipeline_metadata_landmarks.binarypb")
# The landmark model's input side (pixels) and the crop around the detector's box (MediaPipe's
# FaceDetectorGraph: RectTransformationCalculator scale 1.5 x 1.5 around the box's centre).
INPUT_SIDE = 256
ROI_SCALE = 1.5
# Landmark indices of MediaPipe's 478-point face mesh (subject's right eye = image left on
# an unmirrored photo). Contours are listed in polygon order.
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)
# Eyelid pairs (upper, lower) for the eye aspect ratio.
RIGHT_EYE_LIDS = ((160, 144), (159, 145), (158, 153))
LEFT_EYE_LIDS = ((385, 380), (386, 374), (387, 373))
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
# Skin that sunglasses do not cover: lower cheeks (left, right) and the middle of the forehead.
SKIN_POINTS = (205, 425, 151)


class LandmarkerModelError(ValueError):
    """The face mesh models are missing or unusable."""


# Points the blendshape model reads, in this order (MediaPipe face_blendshapes_graph.cc).
BLENDSHAPE_POINTS = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78,
    80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152,
    153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246,
    249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312,
    314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381,
    382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472,
    473, 474, 475, 476, 477,
)
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)


@dataclass(frozen=True)
class HeadPose:
    """Degrees. yaw > 0: the nose points to the image's right (the subject turns to their left);
    pitch > 0: the nose points up; roll > 0: the face is turned counter-clockwise in the image."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class FaceLandmarks:
    """What the landmarker measured on one face, in pixels of the full image."""

    points: np.ndarray  # (478, 3) float32: x, y in image pixels; z in the same scale as x
    blendshapes: dict[str, float]
    pose: HeadPose

    def eye_centre(self, corners: tuple[int, int]) -> np.ndarray:
        return self.points[list(corners), :2].mean(axis=0)

    @property
    def interocular_distance(self) -> float:
        """Pixels between the eye centres (midpoints of each eye's corners)."""
        return float(np.linalg.norm(self.eye_centre(RIGHT_EYE_CORNERS) - self.eye_centre(LEFT_EYE_CORNERS)))

    @property
    def eyes_closed(self) -> float:
        """Mean of the eyeBlinkLeft/eyeBlinkRight blendshapes (0 open, 1 closed)."""
        return 0.5 * (self.blendshapes.get("eyeBlinkLeft", 0.0) + self.blendshapes.get("eyeBlinkRight", 0.0))

    def eye_aspect_ratio(self) -> float:
        """Mean over both eyes of lid opening / corner distance (about 0.3 open, under 0.1 closed)."""
        ratios = []
        for corners, lids in ((RIGHT_EYE_CORNERS, RIGHT_EYE_LIDS), (LEFT_EYE_CORNERS, LEFT_EYE_LIDS)):
            width = np.linalg.norm(self.points[corners[0], :2] - self.points[corners[1], :2])
            opening = np.mean([np.linalg.norm(self.points[a, :2] - self.points[b, :2]) for a, b in lids])
            ratios.append(opening / max(width, 1e-6))
        return float(np.mean(ratios))


def pose_from_matrix(matrix: np.ndarray) -> HeadPose:
    """Head pose from a facial transformation matrix (canonical face -> camera), such as
    MediaPipe's or FaceMesh.pose's fit.

    The camera frame is right-handed with x to the image's right, y up and z towards the viewer;
    a frontal face has the identity rotation. Yaw and pitch are the direction of the face's
    forward axis (its third column); roll is the angle of its up axis (second column) in the
    image plane.
    """
    rotation = np.asarray(matrix, dtype=np.float64)[:3, :3]
    # Remove the model's scale so the columns are unit vectors.
    rotation = rotation / np.linalg.norm(rotation, axis=0, keepdims=True)
    fx, fy, fz = rotation[:, 2]
    yaw = math.degrees(math.atan2(fx, fz))
    pitch = math.degrees(math.atan2(fy, math.hypot(fx, fz)))
    ux, uy, _ = rotation[:, 1]
    roll = math.degrees(math.atan2(-ux, uy))
    return HeadPose(yaw, pitch, roll)


def read_canonical_face(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (468, 3), basis ids, basis weights) from MediaPipe's serialised
    GeometryPipelineMetadata (geometry_pipeline_metadata.proto, mesh_3d.proto):
    ``canonical_mesh = 1`` (Mesh3d: ``vertex_buffer = 3``, 5 floats x y z u v per vertex) and
    ``procrustes_landmark_basis = 2`` (``landmark_id = 1``, ``weight = 2``). Decoding these few
    fields by hand spares the service MediaPipe's .proto files."""

    def fields(buffer: bytes):
        position = 0
        while position < len(buffer):
            key, position = _varint(buffer, position)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, position = _varint(buffer, position)
            elif wire == 1:
                value, position = buffer[position : position + 8], position + 8
            elif wire == 2:
                size, position = _varint(buffer, position)
                value, position = buffer[position : position + size], position + size
            elif wire == 5:
                value, position = buffer[position : position + 4], position + 4
            else:
                raise LandmarkerModelError(f"unexpected protobuf wire type {wire} in the face geometry metadata")
            yield number, wire, value

    vertex_buffer: list[float] = []
    ids: list[int] = []
    weights: list[float] = []
    for number, wire, value in fields(data):
        if number == 1 and wire == 2:
            for mesh_number, mesh_wire, mesh_value in fields(value):
                if mesh_number == 3 and mesh_wire == 2:  # packed floats
                    vertex_buffer.extend(struct.unpack(f"<{len(mesh_value) // 4}f", mesh_value))
                elif mesh_number == 3 and mesh_wire == 5:
                    vertex_buffer.append(struct.unpack("<f", mesh_value)[0])
        elif number == 2 and wire == 2:
            ref = {n: v for n, _, v in fields(value)}
            ids.append(int(ref.get(1, 0)))
            weights.append(struct.unpack("<f", ref[2])[0] if 2 in ref else 0.0)
    if not vertex_buffer or len(vertex_buffer) % 5 or not ids:
        raise LandmarkerModelError("the face geometry metadata has no canonical mesh or landmark basis")
    vertices = np.asarray(vertex_buffer, dtype=np.float64).reshape(-1, 5)[:, :3]
    return vertices, np.asarray(ids, dtype=np.int64), np.asarray(weights, dtype=np.float64)


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(buffer):
            raise LandmarkerModelError("truncated face geometry metadata")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def fit_rotation(canonical: np.ndarray, observed: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The rotation (3x3) of the weighted similarity fit canonical -> observed (Umeyama):
    MediaPipe's geometry pipeline solves the same weighted orthogonal Procrustes problem."""
    w = weights / weights.sum()
    mean_c = w @ canonical
    mean_o = w @ observed
    covariance = (observed - mean_o).T @ ((canonical - mean_c) * w[:, None])
    u, _, vt = np.linalg.svd(covariance)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


@dataclass(frozen=True)
class Roi:
    """The landmark model's crop: centre and size in pixels, rotation in radians (clockwise in
    the image, the angle of the line from the right eye to the left eye)."""

    cx: float
    cy: float
    width: float
    height: float
    rotation: float

    @classmethod
    def around(cls, face: Face, orient: bool = True) -> "Roi":
        """MediaPipe's face ROI: the detector's (unclipped) box x ROI_SCALE, eyes level (upright
        when ``orient`` is false or the face has no eye keypoints)."""
        x0, y0, x1, y1 = face.bounds if face.bounds is not None else (
            face.x, face.y, face.x + face.width, face.y + face.height)
        cx, cy, width, height = (x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0
        rotation = 0.0
        if face.eyes is not None:
            rx, ry, lx, ly = face.eyes
            rotation = math.atan2(ly - ry, lx - rx) if orient else 0.0
            if x0 <= 0 or y0 <= 0:
                # MediaPipe moves a box that crosses the image's left or top edge inside it, and
                # the crop would miss the face: place it from the eyes instead (on BlazeFace's
                # square boxes the eyes' midpoint is 0.24 x the side above the centre and the
                # eyes are 0.43 x the side apart, medians over 500 NUAA and photo faces).
                side = max(width, height, math.hypot(lx - rx, ly - ry) / 0.43)
                mx, my = (rx + lx) / 2.0, (ry + ly) / 2.0
                cx = mx if x0 <= 0 else cx
                cy = my + 0.24 * side if y0 <= 0 else cy
                width = height = side
        return cls(cx, cy, width * ROI_SCALE, height * ROI_SCALE, rotation)

    def axes(self) -> np.ndarray:
        """2x2: image pixels per unit of the crop's normalised x and y (columns)."""
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        return np.array([[cos * self.width, -sin * self.height], [sin * self.width, cos * self.height]])

    def crop(self, rgb: np.ndarray, side: int = INPUT_SIDE) -> np.ndarray:
        """The ROI resampled to side x side (bilinear, border replicated), uint8."""
        axes = self.axes() / side
        # Output pixel (u, v) samples the image at centre + axes @ ((u, v) + 0.5 - side / 2),
        # in OpenCV's convention (pixel centres at integers).
        offset = np.array([self.cx, self.cy]) - axes @ np.array([side / 2.0 - 0.5, side / 2.0 - 0.5]) - 0.5
        matrix = np.hstack([axes, offset[:, None]])
        return cv2.warpAffine(
            rgb, matrix, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )

    def project(self, normalized: np.ndarray) -> np.ndarray:
        """Landmarks normalised to the crop (x, y in 0..1, z scaled like x) -> image pixels."""
        points = np.empty_like(normalized, dtype=np.float32)
        points[:, :2] = (normalized[:, :2] - 0.5) @ self.axes().T + (self.cx, self.cy)
        points[:, 2] = normalized[:, 2] * self.width
        return points


class FaceMesh:
    """MediaPipe's face landmark and blendshape models on ONNX Runtime, plus the canonical
    face for head pose. Thread-safe (ONNX Runtime sessions are); a context manager."""

    def __init__(self, model_dir: Path, min_presence_confidence: float = 0.5, intra_op_threads: int = 1):
        model_dir = Path(model_dir)
        missing = [name for name in FACE_MESH_FILES if not (model_dir / name).is_file()]
        if missing:
            raise LandmarkerModelError(
                f"{model_dir} lacks {', '.join(missing)}: a face mesh folder made by scripts/convert_face_mesh.py is needed"
            )
        try:
            self._landmarks = cpu_session(model_dir / "face_landmarks.onnx", intra_op_threads)
            self._blendshapes = cpu_session(model_dir / "face_blendshapes.onnx", intra_op_threads)
        except Exception as error:  # noqa: BLE001 - ORT raises its own exception types
            raise LandmarkerModelError(f"cannot load the face mesh models in {model_dir}: {error}") from error
        self._landmarks_input = self._landmarks.get_inputs()[0].name
        self._landmarks_outputs = [o.name for o in self._landmarks.get_outputs()[:2]]  # points, presence
        self._blendshapes_input = self._blendshapes.get_inputs()[0].name
        vertices, ids, weights = read_canonical_face((model_dir / FACE_MESH_FILES[2]).read_bytes())
        self._basis_ids = ids
        self._basis_canonical = vertices[ids]
        self._basis_weights = weights
        self.min_presence_confidence = min_presence_confidence

    def run(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """(points (478, 3) in image pixels, face presence 0..1) in ``roi``."""
        crop = roi.crop(rgb).astype(np.float32)
        crop *= 1.0 / 255.0
        raw, presence = self._landmarks.run(self._landmarks_outputs, {self._landmarks_input: crop[None]})
        normalized = raw.reshape(-1, 3) / INPUT_SIDE
        score = 1.0 / (1.0 + math.exp(-float(np.asarray(presence).ravel()[0])))
        return roi.project(normalized), score

    def blendshapes(self, points: np.ndarray) -> dict[str, float]:
        """The 52 blendshape scores of a face from its landmarks (in pixels)."""
        subset = np.ascontiguousarray(points[list(BLENDSHAPE_POINTS), :2], dtype=np.float32)
        (scores,) = self._blendshapes.run(None, {self._blendshapes_input: subset[None]})
        return {name: float(value) for name, value in zip(BLENDSHAPE_NAMES, np.asarray(scores).ravel())}

    def pose(self, points: np.ndarray) -> HeadPose:
        """Head pose from the landmarks: the canonical face fitted to them in a camera frame
        with x to the right, y up and z towards the viewer (MediaPipe's z grows away from it)."""
        observed = points[self._basis_ids].astype(np.float64) * (1.0, -1.0, -1.0)
        return pose_from_matrix(fit_rotation(self._basis_canonical, observed, self._basis_weights))

    def measure(self, rgb: np.ndarray, face: Face, check_upright: bool = False) -> FaceLandmarks | None:
        """Landmarks of ``face`` (a detector box in ``rgb``), or None when the landmark model
        says there is no face in it. ``check_upright``: the face must also be present in an
        upright crop, not only in the crop turned by the detector's eye keypoints."""
        points, presence = self.run(rgb, Roi.around(face))
        if presence < self.min_presence_confidence:
            return None
        if check_upright and face.eyes is not None:
            if self.run(rgb, Roi.around(face, orient=False))[1] < self.min_presence_confidence:
                return None
        return FaceLandmarks(points, self.blendshapes(points), self.pose(points))

    def close(self) -> None:
        """Sessions are freed with the object; kept for the context-manager protocol."""

    def __enter__(self) -> "FaceMesh":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
