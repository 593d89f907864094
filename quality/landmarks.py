"""Face landmarks, head pose and eye state from MediaPipe Face Landmarker, run on a face crop.

The landmarker runs in IMAGE mode on a square crop around a face that BlazeFace already
found (never on the full frame): its own detector then sees one large face, and its cost does
not depend on the frame size. Everything it returns is mapped back to pixels of the image.
"""

from __future__ import annotations

import math
import queue
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ekyc.quality.faces import Face

LANDMARKER_MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite", "face_blendshapes.tflite")

# The crop handed to the landmarker: a square of CROP_SCALE x the face box's longer side,
# centred on the box, padded with black outside the image, resized to at most CROP_SIDE.
CROP_SCALE = 2.0
CROP_SIDE = 256

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
    """The landmarker bundle is missing or incomplete."""


def load_landmarker_model(path: Path) -> bytes:
    """Return the bytes of a Face Landmarker .task bundle, checking that it has every model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face landmarker model not found: {path}")
    if not zipfile.is_zipfile(path):
        raise LandmarkerModelError(f"{path} is not a Face Landmarker .task bundle")
    with zipfile.ZipFile(path) as bundle:
        missing = [m for m in LANDMARKER_MEMBERS if m not in bundle.namelist()]
    if missing:
        raise LandmarkerModelError(f"{path} lacks {', '.join(missing)}: a Face Landmarker .task bundle is needed")
    return path.read_bytes()


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
    """Head pose from the landmarker's facial transformation matrix (canonical face -> camera).

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


def face_crop_square(face: Face, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """(x0, y0, side) of the square crop around ``face`` that the landmarker sees."""
    side = max(face.width, face.height) * scale
    cx = face.x + face.width / 2.0
    cy = face.y + face.height / 2.0
    return cx - side / 2.0, cy - side / 2.0, side


# Faces the landmarker looks for in a crop: the crop can hold a neighbour's face too (a person
# behind), and the landmarker's own detector may list it first; measure() keeps the one that
# is centred on the box it was given.
CROP_FACES = 2


class FaceLandmarker:
    """One MediaPipe FaceLandmarker (IMAGE mode, blendshapes + matrix). Not re-entrant."""

    def __init__(self, model_bytes: bytes, min_detection_confidence: float = 0.3, min_presence_confidence: float = 0.5):
        from mediapipe.tasks.python import BaseOptions, vision

        self._landmarker = vision.FaceLandmarker.create_from_options(
            vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=model_bytes),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=CROP_FACES,
                min_face_detection_confidence=min_detection_confidence,
                min_face_presence_confidence=min_presence_confidence,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
        )

    def measure(self, rgb: np.ndarray, face: Face) -> FaceLandmarks | None:
        """Landmarks of ``face`` (a box in ``rgb``), or None when the landmarker finds no face there."""
        import mediapipe as mp

        x0, y0, side = face_crop_square(face)
        size = int(min(CROP_SIDE, max(32, round(side))))
        scale = size / side
        # One affine warp crops, pads (black) and resizes in a single uint8 pass.
        warp = np.float32([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
        crop = cv2.warpAffine(rgb, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
        if not result.face_landmarks:
            return None
        # The face centred on the box: in crop coordinates the box centre is (0.5, 0.5).
        best, best_distance = 0, float("inf")
        for index, landmarks in enumerate(result.face_landmarks):
            cx = sum(p.x for p in landmarks) / len(landmarks)
            cy = sum(p.y for p in landmarks) / len(landmarks)
            distance = (cx - 0.5) ** 2 + (cy - 0.5) ** 2
            if distance < best_distance:
                best, best_distance = index, distance
        normalized = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[best]], dtype=np.float32)
        points = np.empty_like(normalized)
        points[:, 0] = x0 + normalized[:, 0] * side
        points[:, 1] = y0 + normalized[:, 1] * side
        points[:, 2] = normalized[:, 2] * side
        blendshapes = (
            {c.category_name: float(c.score) for c in result.face_blendshapes[best]}
            if len(result.face_blendshapes) > best else {}
        )
        if len(result.facial_transformation_matrixes) > best:
            pose = pose_from_matrix(np.asarray(result.facial_transformation_matrixes[best]))
        else:  # pragma: no cover - the bundle always has the geometry pipeline
            pose = HeadPose(float("nan"), float("nan"), float("nan"))
        return FaceLandmarks(points, blendshapes, pose)

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FaceLandmarkerPool:
    """A fixed set of landmarkers shared by worker threads, like FaceDetectorPool."""

    def __init__(self, model_path: Path, size: int, min_detection_confidence: float = 0.3,
                 min_presence_confidence: float = 0.5):
        model = load_landmarker_model(model_path)
        self._all = [
            FaceLandmarker(model, min_detection_confidence, min_presence_confidence) for _ in range(max(1, size))
        ]
        self._free: queue.SimpleQueue[FaceLandmarker] = queue.SimpleQueue()
        for landmarker in self._all:
            self._free.put(landmarker)

    @contextmanager
    def acquire(self) -> Iterator[FaceLandmarker]:
        landmarker = self._free.get()
        try:
            yield landmarker
        finally:
            self._free.put(landmarker)

    def measure(self, rgb: np.ndarray, face: Face) -> FaceLandmarks | None:
        with self.acquire() as landmarker:
            return landmarker.measure(rgb, face)

    def close(self) -> None:
        for landmarker in self._all:
            landmarker.close()

    def __enter__(self) -> "FaceLandmarkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
