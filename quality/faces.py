"""Face detection with MediaPipe BlazeFace (short range) and the shared face-crop rule."""

from __future__ import annotations

import queue
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

DETECTOR_MEMBER = "face_detector.tflite"


@dataclass(frozen=True)
class Face:
    """A detected face: box in pixels of the upright image, detector score 0..1."""

    x: int
    y: int
    width: int
    height: int
    score: float

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class FaceDetectorOptions:
    """Where the detector comes from and how sure it must be."""

    model_path: Path
    min_confidence: float = 0.5


def load_detector_model(path: Path) -> bytes:
    """Return the BlazeFace .tflite bytes from a .tflite file or a Face Landmarker .task bundle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face detector model not found: {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as bundle:
            if DETECTOR_MEMBER not in bundle.namelist():
                raise ValueError(f"{path} has no {DETECTOR_MEMBER}")
            return bundle.read(DETECTOR_MEMBER)
    return path.read_bytes()


class FaceDetector:
    """One MediaPipe FaceDetector; a context manager. Not safe for concurrent calls."""

    def __init__(self, options: FaceDetectorOptions, model_bytes: bytes | None = None):
        from mediapipe.tasks.python import BaseOptions, vision

        self._options = options
        model = model_bytes if model_bytes is not None else load_detector_model(options.model_path)
        self._detector = vision.FaceDetector.create_from_options(
            vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=model),
                min_detection_confidence=options.min_confidence,
            )
        )

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, largest first."""
        import mediapipe as mp

        height, width = rgb.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._detector.detect(image)
        faces = []
        for detection in result.detections:
            box = detection.bounding_box
            x0 = max(0, box.origin_x)
            y0 = max(0, box.origin_y)
            x1 = min(width, box.origin_x + box.width)
            y1 = min(height, box.origin_y + box.height)
            if x1 <= x0 or y1 <= y0:
                continue
            score = detection.categories[0].score if detection.categories else 0.0
            faces.append(Face(x0, y0, x1 - x0, y1 - y0, float(score)))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FaceDetectorPool:
    """A fixed set of detectors shared by worker threads (MediaPipe tasks are not re-entrant)."""

    def __init__(self, options: FaceDetectorOptions, size: int):
        model = load_detector_model(options.model_path)
        self._all = [FaceDetector(options, model) for _ in range(max(1, size))]
        self._free: queue.SimpleQueue[FaceDetector] = queue.SimpleQueue()
        for detector in self._all:
            self._free.put(detector)

    @contextmanager
    def acquire(self) -> Iterator[FaceDetector]:
        detector = self._free.get()
        try:
            yield detector
        finally:
            self._free.put(detector)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        with self.acquire() as detector:
            return detector.detect(rgb)

    def close(self) -> None:
        for detector in self._all:
            detector.close()

    def __enter__(self) -> "FaceDetectorPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class CropRule:
    """How a face box becomes the model's input: the one rule training and serving share.

    The crop is a square of side ``scale`` x the longer box side, centred on the box,
    with parts outside the image filled by replicating the border, resized to ``size``.
    """

    size: int = 128
    scale: float = 1.2

    def to_dict(self) -> dict:
        return {"size": self.size, "scale": self.scale, "border": "replicate"}

    @classmethod
    def from_dict(cls, data: dict) -> "CropRule":
        return cls(size=int(data["size"]), scale=float(data["scale"]))


def crop_face(rgb: np.ndarray, face: Face, rule: CropRule) -> np.ndarray:
    """Cut the model input for ``face`` out of ``rgb``: uint8 (size, size, 3) RGB."""
    height, width = rgb.shape[:2]
    side = max(2, int(round(max(face.width, face.height) * rule.scale)))
    cx = face.x + face.width / 2.0
    cy = face.y + face.height / 2.0
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    x1, y1 = x0 + side, y0 + side
    inner = rgb[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    pad_top, pad_left = max(0, -y0), max(0, -x0)
    pad_bottom, pad_right = max(0, y1 - height), max(0, x1 - width)
    if pad_top or pad_left or pad_bottom or pad_right:
        inner = cv2.copyMakeBorder(
            inner, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE
        )
    interpolation = cv2.INTER_AREA if side > rule.size else cv2.INTER_LINEAR
    return cv2.resize(inner, (rule.size, rule.size), interpolation=interpolation)
