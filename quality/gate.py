"""The quality gate: measures a selfie and says, with typed reasons, whether it is usable."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

from ekyc.quality.decode import decode_image
from ekyc.quality.faces import Face, FaceDetectorOptions, FaceDetectorPool

# Sharpness is measured on the face resized to this side, so that it does not
# depend on the face's size in pixels or on the background.
SHARPNESS_SIDE = 96


class QualityReason(str, enum.Enum):
    """Why an image fails; names match the proto's QUALITY_REASON_* values."""

    NO_FACE = "NO_FACE"
    MULTIPLE_FACES = "MULTIPLE_FACES"
    FACE_TOO_SMALL = "FACE_TOO_SMALL"
    TOO_DARK = "TOO_DARK"
    TOO_BRIGHT = "TOO_BRIGHT"
    BLURRY = "BLURRY"


@dataclass(frozen=True)
class QualityThresholds:
    """Limits of the gate. The shipped values live in quality/defaults.toml, not here."""

    min_brightness: float
    max_brightness: float
    min_sharpness: float
    min_face_size_px: int
    min_face_coverage: float
    multiple_faces_min_area_ratio: float

    @classmethod
    def from_dict(cls, data: dict) -> "QualityThresholds":
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown quality thresholds: {', '.join(sorted(unknown))}")
        missing = names - set(data)
        if missing:
            raise ValueError(f"missing quality thresholds: {', '.join(sorted(missing))}")
        values = {}
        for f in fields(cls):
            caster = int if f.type in (int, "int") else float
            try:
                values[f.name] = caster(data[f.name])
            except (TypeError, ValueError):
                raise ValueError(f"quality threshold {f.name} must be a number") from None
        return cls(**values)


@dataclass(frozen=True)
class QualityScores:
    brightness: float = 0.0
    sharpness: float = 0.0
    face_coverage: float = 0.0
    face_count: int = 0
    face_confidence: float = 0.0


@dataclass(frozen=True)
class QualityResult:
    """What the gate found: pass/fail, every failing reason, the raw scores and the main face."""

    passed: bool
    reasons: tuple[QualityReason, ...]
    scores: QualityScores
    face: Face | None
    image_width: int
    image_height: int
    faces: tuple[Face, ...] = field(default=(), repr=False)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as uint8, the same weights OpenCV and JPEG use."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def face_region(gray: np.ndarray, face: Face) -> np.ndarray:
    return gray[face.y : face.y + face.height, face.x : face.x + face.width]


def sharpness(gray_face: np.ndarray) -> float:
    """Variance of the Laplacian of the face resized to SHARPNESS_SIDE pixels square."""
    if gray_face.size == 0:
        return 0.0
    interpolation = cv2.INTER_AREA if min(gray_face.shape) > SHARPNESS_SIDE else cv2.INTER_LINEAR
    resized = cv2.resize(gray_face, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=interpolation)
    laplacian = cv2.Laplacian(resized, cv2.CV_32F)
    return float(laplacian.var())


def assess_quality(rgb: np.ndarray, faces: list[Face], limits: QualityThresholds) -> QualityResult:
    """Measure ``rgb`` given the detector's ``faces`` (largest first) and apply ``limits``."""
    height, width = rgb.shape[:2]
    gray = luma(rgb)
    reasons: list[QualityReason] = []
    main = faces[0] if faces else None
    if main is None:
        reasons.append(QualityReason.NO_FACE)
        region = gray
    else:
        region = face_region(gray, main)
    brightness = float(region.mean()) if region.size else 0.0
    scores = QualityScores(
        brightness=brightness,
        sharpness=sharpness(region) if main is not None else 0.0,
        face_coverage=(main.area / float(width * height)) if main is not None else 0.0,
        face_count=len(faces),
        face_confidence=main.score if main is not None else 0.0,
    )
    if main is not None:
        others = [f for f in faces[1:] if f.area >= limits.multiple_faces_min_area_ratio * main.area]
        if others:
            reasons.append(QualityReason.MULTIPLE_FACES)
        if (
            min(main.width, main.height) < limits.min_face_size_px
            or scores.face_coverage < limits.min_face_coverage
        ):
            reasons.append(QualityReason.FACE_TOO_SMALL)
        if scores.sharpness < limits.min_sharpness:
            reasons.append(QualityReason.BLURRY)
    if brightness < limits.min_brightness:
        reasons.append(QualityReason.TOO_DARK)
    elif brightness > limits.max_brightness:
        reasons.append(QualityReason.TOO_BRIGHT)
    return QualityResult(
        passed=not reasons,
        reasons=tuple(reasons),
        scores=scores,
        face=main,
        image_width=width,
        image_height=height,
        faces=tuple(faces),
    )


@dataclass(frozen=True)
class QualityGateOptions:
    """Everything the gate needs, built from the [quality] and [detector] config sections."""

    detector_model: Path
    min_detection_confidence: float
    max_image_pixels: int
    thresholds: QualityThresholds

    @classmethod
    def from_sections(cls, sections: dict, default_detector: Path) -> "QualityGateOptions":
        """Parse the config sections; raises ValueError naming the bad key."""
        quality = dict(sections["quality"])
        detector = sections["detector"]
        try:
            max_pixels = int(quality.pop("max_image_pixels"))
            confidence = float(detector["min_confidence"])
        except (TypeError, ValueError):
            raise ValueError("quality.max_image_pixels and detector.min_confidence must be numbers") from None
        if max_pixels < 1:
            raise ValueError("quality.max_image_pixels must be positive")
        if not 0.0 < confidence < 1.0:
            raise ValueError("detector.min_confidence must be within (0, 1)")
        thresholds = QualityThresholds.from_dict(quality)
        if thresholds.min_brightness >= thresholds.max_brightness:
            raise ValueError("quality.min_brightness must be below quality.max_brightness")
        path = Path(detector["path"]) if detector.get("path") else default_detector
        return cls(path, confidence, max_pixels, thresholds)


class QualityGate:
    """Face detection + measures + thresholds; thread-safe (a pool of detectors); a context manager."""

    def __init__(self, options: QualityGateOptions, pool_size: int = 1):
        self.options = options
        self._detectors = FaceDetectorPool(
            FaceDetectorOptions(options.detector_model, options.min_detection_confidence), size=pool_size
        )
        self._pool_size = max(1, pool_size)

    def decode(self, data: bytes) -> np.ndarray:
        """Decode image bytes under the configured pixel limit (typed errors on bad input)."""
        return decode_image(data, self.options.max_image_pixels)

    def assess(self, rgb: np.ndarray, timings: dict | None = None) -> QualityResult:
        """Run every check on an RGB image; ``timings`` (if given) receives ms per stage."""
        started = time.perf_counter()
        faces = self._detectors.detect(rgb)
        detected = time.perf_counter()
        result = assess_quality(rgb, faces, self.options.thresholds)
        if timings is not None:
            timings["detect"] = (detected - started) * 1000.0
            timings["quality"] = (time.perf_counter() - detected) * 1000.0
        return result

    def warm_up(self) -> None:
        blank = np.full((240, 320, 3), 128, dtype=np.uint8)
        for _ in range(self._pool_size):
            self._detectors.detect(blank)

    def close(self) -> None:
        self._detectors.close()

    def __enter__(self) -> "QualityGate":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
