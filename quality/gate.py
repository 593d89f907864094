"""The quality gate: measures a selfie and says, with typed reasons, whether it is usable.

Stages: find faces (BlazeFace on the frame, tiles only where small faces could hide), measure
the main face's landmarks (MediaPipe's face mesh models on a crop around it), then pure
measurements (quality/measures.py) compared with thresholds (quality/defaults.toml).
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ekyc.quality.decode import decode_image
from ekyc.quality.faces import RELIABLE_FACE_SHARE, Face, FaceDetector, FaceDetectorOptions, clip_box, search_faces
from ekyc.quality.landmarks import FaceLandmarks, FaceMesh
from ekyc.quality.measures import (
    SHARPNESS_SIDE,
    border_margin,
    exposure,
    eye_occlusion,
    face_region,
    luma,
    sharpness,
)

__all__ = [
    "SHARPNESS_SIDE",
    "QualityGate",
    "QualityGateOptions",
    "QualityReason",
    "QualityResult",
    "QualityScores",
    "QualityThresholds",
    "SearchOptions",
    "assess_quality",
    "face_region",
    "luma",
    "sharpness",
]


class QualityReason(str, enum.Enum):
    """Why an image fails; names match the proto's QUALITY_REASON_* values (and its order)."""

    NO_FACE = "NO_FACE"
    MULTIPLE_FACES = "MULTIPLE_FACES"
    FACE_TOO_SMALL = "FACE_TOO_SMALL"
    TOO_DARK = "TOO_DARK"
    TOO_BRIGHT = "TOO_BRIGHT"
    BLURRY = "BLURRY"
    LOW_RESOLUTION = "LOW_RESOLUTION"
    LOW_CONTRAST = "LOW_CONTRAST"
    FACE_CUT_OFF = "FACE_CUT_OFF"
    POSE_TOO_LARGE = "POSE_TOO_LARGE"
    EYES_CLOSED = "EYES_CLOSED"
    EYES_OCCLUDED = "EYES_OCCLUDED"


_REASON_ORDER = {reason: index for index, reason in enumerate(QualityReason)}


@dataclass(frozen=True)
class QualityThresholds:
    """Limits of the gate. The shipped values live in quality/defaults.toml, not here."""

    min_image_short_side_px: int
    min_image_long_side_px: int
    min_brightness: float
    max_brightness: float
    underexposed_level: int
    overexposed_level: int
    max_underexposed_fraction: float
    max_overexposed_fraction: float
    min_dynamic_range: float
    min_sharpness: float
    min_face_size_px: int
    min_face_coverage: float
    min_interocular_distance_px: float
    multiple_faces_min_area_ratio: float
    min_face_border_margin: float
    max_abs_yaw_deg: float
    max_abs_pitch_deg: float
    max_abs_roll_deg: float
    max_eyes_closed_score: float
    max_eyes_occluded_score: float

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
            value = data[f.name]
            if isinstance(value, bool):
                raise ValueError(f"quality threshold {f.name} must be a number")
            try:
                values[f.name] = caster(value)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"quality threshold {f.name} must be a number") from None
            if caster is float and math.isnan(values[f.name]):
                raise ValueError(f"quality threshold {f.name} must be a number, not nan")
        limits = cls(**values)
        limits.validate()
        return limits

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent threshold."""
        checks = [
            (self.min_brightness < self.max_brightness, "quality.min_brightness must be below quality.max_brightness"),
            (0 <= self.underexposed_level < self.overexposed_level <= 255,
             "quality.underexposed_level must be below quality.overexposed_level, both within 0..255"),
            (self.min_image_short_side_px <= self.min_image_long_side_px,
             "quality.min_image_short_side_px must not exceed quality.min_image_long_side_px"),
            (self.multiple_faces_min_area_ratio > 0, "quality.multiple_faces_min_area_ratio must be positive"),
        ]
        for name in ("max_underexposed_fraction", "max_overexposed_fraction", "max_eyes_closed_score",
                     "max_eyes_occluded_score", "min_face_coverage"):
            checks.append((0.0 <= getattr(self, name) <= 1.0, f"quality.{name} must be within 0..1"))
        for name in ("max_abs_yaw_deg", "max_abs_pitch_deg", "max_abs_roll_deg"):
            checks.append((0.0 < getattr(self, name) <= 180.0, f"quality.{name} must be within (0, 180]"))
        for name in ("min_image_short_side_px", "min_face_size_px", "min_interocular_distance_px",
                     "min_sharpness", "min_dynamic_range"):
            checks.append((getattr(self, name) >= 0, f"quality.{name} must not be negative"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class QualityScores:
    """Raw measurements, reported whether or not they pass; names are the proto's fields."""

    brightness: float = 0.0
    sharpness: float = 0.0
    face_coverage: float = 0.0
    face_count: int = 0
    face_confidence: float = 0.0
    underexposed_fraction: float = 0.0
    overexposed_fraction: float = 0.0
    dynamic_range: float = 0.0
    interocular_distance_px: float = 0.0
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    eyes_closed_score: float = 0.0
    eyes_occluded_score: float = 0.0
    face_border_margin: float = 0.0
    second_face_area_ratio: float = 0.0
    landmarks_measured: bool = False


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
    landmarks: FaceLandmarks | None = field(default=None, repr=False, compare=False)


def assess_quality(
    rgb: np.ndarray,
    faces: list[Face],
    limits: QualityThresholds,
    landmarks: FaceLandmarks | None = None,
    unconfirmed: list[Face] | tuple[Face, ...] = (),
) -> QualityResult:
    """Measure ``rgb`` given the ``faces`` that matter (the first is the main face, see
    QualityGate.find_faces), the main face's ``landmarks`` (None: not measured) and apply
    ``limits``.

    Without a face, exposure is measured on the whole image, except when one of the
    ``unconfirmed`` boxes (the detector found a face there, the landmarker could not confirm
    it) is overexposed: then that box is measured, as a face blown out past recognition is
    the likely cause of NO_FACE (a dark suit or background would otherwise make the whole
    image read TOO_DARK).
    """
    height, width = rgb.shape[:2]
    gray = luma(rgb)
    reasons: set[QualityReason] = set()
    if min(width, height) < limits.min_image_short_side_px or max(width, height) < limits.min_image_long_side_px:
        reasons.add(QualityReason.LOW_RESOLUTION)
    main = faces[0] if faces else None
    region = gray if main is None else face_region(gray, main)
    light = exposure(region, limits.underexposed_level, limits.overexposed_level)
    if main is None:
        for box in unconfirmed:
            boxed = exposure(face_region(gray, box), limits.underexposed_level, limits.overexposed_level)
            if _too_bright(boxed, limits):
                light = boxed
                break
    if light.brightness < limits.min_brightness or light.underexposed_fraction > limits.max_underexposed_fraction:
        if not _too_bright(light, limits):
            reasons.add(QualityReason.TOO_DARK)
    if _too_bright(light, limits):
        reasons.add(QualityReason.TOO_BRIGHT)
    values: dict = dict(
        brightness=light.brightness,
        underexposed_fraction=light.underexposed_fraction,
        overexposed_fraction=light.overexposed_fraction,
        dynamic_range=light.dynamic_range,
        face_count=len(faces),
    )
    if main is None:
        reasons.add(QualityReason.NO_FACE)
        return _result(reasons, QualityScores(**values), None, width, height, faces, None)

    if light.dynamic_range < limits.min_dynamic_range:
        reasons.add(QualityReason.LOW_CONTRAST)
    second = faces[1].area / float(max(main.area, 1)) if len(faces) > 1 else 0.0
    if second >= limits.multiple_faces_min_area_ratio:
        reasons.add(QualityReason.MULTIPLE_FACES)
    values.update(
        sharpness=sharpness(region),
        face_coverage=main.area / float(width * height),
        face_confidence=main.score,
        second_face_area_ratio=second,
        face_border_margin=border_margin(main, None if landmarks is None else landmarks.points, width, height),
    )
    if values["sharpness"] < limits.min_sharpness:
        reasons.add(QualityReason.BLURRY)
    if values["face_border_margin"] < limits.min_face_border_margin:
        reasons.add(QualityReason.FACE_CUT_OFF)
    too_small = min(main.width, main.height) < limits.min_face_size_px or values["face_coverage"] < limits.min_face_coverage
    if landmarks is not None:
        pose = landmarks.pose
        values.update(
            landmarks_measured=True,
            interocular_distance_px=landmarks.interocular_distance,
            yaw_deg=pose.yaw,
            pitch_deg=pose.pitch,
            roll_deg=pose.roll,
            eyes_closed_score=landmarks.eyes_closed,
            eyes_occluded_score=eye_occlusion(gray, landmarks),
        )
        too_small = too_small or values["interocular_distance_px"] < limits.min_interocular_distance_px
        if (
            not abs(pose.yaw) <= limits.max_abs_yaw_deg
            or not abs(pose.pitch) <= limits.max_abs_pitch_deg
            or not abs(pose.roll) <= limits.max_abs_roll_deg
        ):
            reasons.add(QualityReason.POSE_TOO_LARGE)
        if values["eyes_occluded_score"] > limits.max_eyes_occluded_score:
            reasons.add(QualityReason.EYES_OCCLUDED)
        elif values["eyes_closed_score"] > limits.max_eyes_closed_score:
            # Only eyes that can be seen can be called closed.
            reasons.add(QualityReason.EYES_CLOSED)
    if too_small:
        reasons.add(QualityReason.FACE_TOO_SMALL)
    return _result(reasons, QualityScores(**values), main, width, height, faces, landmarks)


def _too_bright(light, limits: QualityThresholds) -> bool:
    return light.brightness > limits.max_brightness or light.overexposed_fraction > limits.max_overexposed_fraction


def _result(reasons, scores, main, width, height, faces, landmarks) -> QualityResult:
    ordered = tuple(sorted(reasons, key=_REASON_ORDER.__getitem__))
    return QualityResult(
        passed=not ordered,
        reasons=ordered,
        scores=scores,
        face=main,
        image_width=width,
        image_height=height,
        faces=tuple(faces),
        landmarks=landmarks,
    )


@dataclass(frozen=True)
class SearchOptions:
    """How hard the gate looks for faces and landmarks ([detector] and [landmarks] sections)."""

    min_face_px: int = 32
    max_tiles: int = 24
    second_face_tiles_min_side: int = 1000
    landmarks: bool = True
    landmarker_model: Path | None = None
    landmarker_min_presence_confidence: float = 0.5
    max_confirmations: int = 4
    upright_check_below_score: float = 0.8


@dataclass(frozen=True)
class QualityGateOptions:
    """Everything the gate needs, built from the [quality], [detector] and [landmarks] config sections."""

    detector_model: Path
    min_detection_confidence: float
    max_image_pixels: int
    thresholds: QualityThresholds
    search: SearchOptions = SearchOptions()

    @classmethod
    def from_sections(cls, sections: dict, default_detector: Path) -> "QualityGateOptions":
        """Parse the config sections; raises ValueError naming the bad key. The face mesh
        models default to the folder of the default detector (models/mediapipe)."""
        quality = dict(sections["quality"])
        detector = dict(sections["detector"])
        landmarks = dict(sections.get("landmarks", {}))
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
        path = Path(detector["path"]) if detector.get("path") else default_detector
        search = SearchOptions(
            min_face_px=_number(detector, "detector", "min_face_px", int, SearchOptions.min_face_px, 8),
            max_tiles=_number(detector, "detector", "max_tiles", int, SearchOptions.max_tiles, 0),
            second_face_tiles_min_side=_number(
                detector, "detector", "second_face_tiles_min_side", int, SearchOptions.second_face_tiles_min_side, 0
            ),
            landmarks=_flag(landmarks, "landmarks", "enabled", True),
            landmarker_model=(
                Path(landmarks["path"]) if landmarks.get("path") else Path(default_detector).parent
            ),
            landmarker_min_presence_confidence=_number(
                landmarks, "landmarks", "min_presence_confidence", float, SearchOptions.landmarker_min_presence_confidence, 0.0
            ),
            max_confirmations=_number(landmarks, "landmarks", "max_confirmations", int, SearchOptions.max_confirmations, 1),
            upright_check_below_score=_number(
                landmarks, "landmarks", "upright_check_below_score", float, SearchOptions.upright_check_below_score, 0.0
            ),
        )
        if not 0.0 < search.landmarker_min_presence_confidence < 1.0:
            raise ValueError("landmarks.min_presence_confidence must be within (0, 1)")
        return cls(path, confidence, max_pixels, thresholds, search)


def _number(section: dict, name: str, key: str, caster, default, minimum):
    value = section.get(key, default)
    if isinstance(value, bool):
        raise ValueError(f"{name}.{key} must be a number")
    try:
        value = caster(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name}.{key} must be a number") from None
    if value < minimum:
        raise ValueError(f"{name}.{key} must be at least {minimum}")
    return value


def _flag(section: dict, name: str, key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{name}.{key} must be true or false")
    return value


def _warm_up_portrait() -> np.ndarray | None:
    try:
        import matplotlib.cbook
        from PIL import Image

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        with Image.open(path) as image:
            return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    except Exception:  # noqa: BLE001 - optional: without it the warm-up uses a blank image
        return None


def _by_area(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.area, reverse=True)


def _by_prominence(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.area * f.score, reverse=True)


def _same(a: Face, b: Face) -> bool:
    return (a.x, a.y, a.width, a.height) == (b.x, b.y, b.width, b.height)


def _landmarks_fit(landmarks: FaceLandmarks, face: Face) -> bool:
    """The landmarker's face is the candidate's: its centre inside the box, a similar width."""
    points = landmarks.points
    cx, cy = float(points[:, 0].mean()), float(points[:, 1].mean())
    width = float(points[:, 0].max() - points[:, 0].min())
    inside = face.x <= cx <= face.x + face.width and face.y <= cy <= face.y + face.height
    # Measured landmark width / box width: 0.81-1.15 on clean photos, up to 1.41 rotated or cut.
    return inside and 0.7 * face.width <= width <= 1.7 * face.width


class QualityGate:
    """Face search + landmarks + measures + thresholds; thread-safe (the detector and the face
    mesh are ONNX Runtime sessions, which are); a context manager."""

    def __init__(self, options: QualityGateOptions):
        self.options = options
        self._detector = FaceDetector(FaceDetectorOptions(options.detector_model, options.min_detection_confidence))
        self._landmarkers: FaceMesh | None = None
        if options.search.landmarks:
            self._landmarkers = FaceMesh(options.search.landmarker_model, options.search.landmarker_min_presence_confidence)

    def decode(self, data: bytes) -> np.ndarray:
        """Decode image bytes under the configured pixel limit (typed errors on bad input)."""
        return decode_image(data, self.options.max_image_pixels)

    def find_faces(
        self, rgb: np.ndarray, timings: dict | None = None, unconfirmed: list[Face] | None = None
    ) -> tuple[list[Face], FaceLandmarks | None]:
        """The faces that matter, main face first, and the main face's landmarks; the boxes the
        landmarker rejected are appended to ``unconfirmed`` (if given), largest first.

        1. BlazeFace on the whole frame (it finds faces at least RELIABLE_FACE_SHARE of the
           frame's longer side).
        2. The landmarker confirms candidates, most prominent first (area x detector score): a
           box where it finds no face, or a face that does not fit the box, is a false detection
           and is dropped. The first one confirmed is the main face. (Without landmarks: the
           most prominent box.)
        3. Tiles, only where a face that changes the answer could hide: down to ``min_face_px``
           when no face is confirmed yet (a small face is FACE_TOO_SMALL, not NO_FACE), else
           down to the size of a second face that would count for MULTIPLE_FACES, in frames
           whose longer side is at least ``second_face_tiles_min_side`` (smaller frames, such
           as a 640x480 selfie, rely on the frame pass for second faces, which keeps them fast).
        4. Every other face at least ``multiple_faces_min_area_ratio`` of the main one is
           confirmed too. At most ``max_confirmations`` landmarker runs per image; candidates
           left unchecked are kept as detected.
        """
        search = self.options.search
        ratio = self.options.thresholds.multiple_faces_min_area_ratio
        height, width = rgb.shape[:2]
        budget = [max(1, search.max_confirmations)]
        rejected: list[Face] = []
        spent = [0.0]

        def confirm(face: Face) -> FaceLandmarks | None:
            started = time.perf_counter()
            budget[0] -= 1
            # The eye keypoints of a box the detector is unsure of can point anywhere (a logo's
            # windows one above the other), and a crop turned by them can make the landmark
            # model see a face: such a box must hold a face in an upright crop too.
            found = self._landmarkers.measure(rgb, face, check_upright=face.score < search.upright_check_below_score)
            spent[0] += time.perf_counter() - started
            if found is None or not _landmarks_fit(found, face):
                rejected.append(face)
                return None
            return found

        def first_confirmed(candidates: list[Face]) -> tuple[Face | None, FaceLandmarks | None]:
            for face in candidates:
                if budget[0] <= 0:
                    break
                if any(_same(face, r) for r in rejected):
                    continue
                found = confirm(face)
                if found is not None:
                    return face, found
            return None, None

        started = time.perf_counter()
        detector = self._detector
        boxes = detector.detect_boxes(rgb)
        faces = _by_prominence([f for f in (clip_box(b, width, height) for b in boxes) if f])
        if self._landmarkers is None:
            main, landmarks = (faces[0] if faces else None), None
        else:
            main, landmarks = first_confirmed(faces)
        need = float(search.min_face_px)
        tiles = search.max_tiles > 0
        if main is not None:
            need = max(need, math.sqrt(ratio) * min(main.width, main.height))
            tiles = tiles and max(width, height) >= search.second_face_tiles_min_side
        if tiles and need < RELIABLE_FACE_SHARE * max(width, height):
            # A rejected box must not hide a real, smaller face found inside it.
            kept = [b for b in boxes if not any(_same(clip_box(b, width, height), r) for r in rejected)]
            faces = _by_prominence(search_faces(detector, rgb, need, search.max_tiles, full_frame=kept))
            if self._landmarkers is None:
                main = faces[0] if faces else None
            elif main is None:
                main, landmarks = first_confirmed(faces)
        others: list[Face] = []
        for face in faces if main is not None else []:
            if _same(face, main) or any(_same(face, r) for r in rejected):
                continue
            if self._landmarkers is not None and face.area >= ratio * main.area and budget[0] > 0:
                if confirm(face) is None:
                    continue  # a false detection
            others.append(face)
        result = ([main] if main is not None else []) + _by_area(others)
        if unconfirmed is not None:
            unconfirmed.extend(_by_area(rejected))
        if timings is not None:
            total = time.perf_counter() - started
            timings["detect"] = (total - spent[0]) * 1000.0
            timings["landmarks"] = spent[0] * 1000.0
        return result, landmarks

    def search_all_faces(self, rgb: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        """Every face the detector finds down to ``min_face_px`` (default: detector.min_face_px),
        whatever the gate needs: the detection strategy on its own, for measuring recall."""
        search = self.options.search
        return search_faces(self._detector, rgb, float(min_face_px or search.min_face_px), search.max_tiles)

    def assess(self, rgb: np.ndarray, timings: dict | None = None, *, stage_detail: bool = False) -> QualityResult:
        """Run every check on an RGB image; ``timings`` (if given) receives ms per stage:
        ``detect`` (face search, plus the landmarker unless ``stage_detail``), ``landmarks``
        (the landmarker, only with ``stage_detail``) and ``quality`` (the measurements)."""
        stages: dict = {}
        rejected: list[Face] = []
        faces, landmarks = self.find_faces(rgb, stages, rejected)
        measured = time.perf_counter()
        result = assess_quality(rgb, faces, self.options.thresholds, landmarks, rejected)
        if timings is not None:
            if stage_detail:
                timings["detect"] = stages["detect"]
                timings["landmarks"] = stages["landmarks"]
            else:
                timings["detect"] = stages["detect"] + stages["landmarks"]
            timings["quality"] = (time.perf_counter() - measured) * 1000.0
        return result

    def warm_up(self) -> None:
        """Run the detector and the face mesh once on a real portrait (matplotlib's public-domain
        sample, when installed), so that the first requests pay no lazy start-up (ONNX Runtime
        allocates its buffers on the first call)."""
        portrait = _warm_up_portrait()
        blank = np.full((240, 320, 3), 128, dtype=np.uint8)
        self._detector.detect(blank)
        face = Face(110, 70, 100, 100, 1.0)
        if portrait is not None:
            found = self._detector.detect(portrait)
            face = found[0] if found else face
        if self._landmarkers is not None:
            self._landmarkers.measure(portrait if portrait is not None else blank, face)

    def close(self) -> None:
        self._detector.close()
        if self._landmarkers is not None:
            self._landmarkers.close()

    def __enter__(self) -> "QualityGate":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

