"""The gate's rules: measurements of the main face and the image compared with the thresholds,
giving typed reasons. Pure functions of the image, the faces found and their landmarks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from ekyc.quality.faces import Face
from ekyc.quality.landmarks import FaceLandmarks
from ekyc.quality.measures import border_margin, exposure, eye_occlusion, face_region, luma, sharpness
from ekyc.quality.options import QualityThresholds, ReferenceThresholds


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


# The gate's reasons a reference image (the ID document's portrait, an earlier selfie) can be
# refused for: the checks that decide whether its face can be matched at all.
REFERENCE_REASONS = (QualityReason.NO_FACE, QualityReason.MULTIPLE_FACES, QualityReason.FACE_TOO_SMALL,
                     QualityReason.BLURRY)


def reference_reasons(result: QualityResult, limits: ReferenceThresholds) -> tuple[QualityReason, ...]:
    """Why the face of a reference image cannot be matched, from the gate's result on it
    (empty: it can). No face, or no landmarks to align it by, is NO_FACE."""
    scores = result.scores
    if result.face is None or result.landmarks is None:
        return (QualityReason.NO_FACE,)
    reasons = []
    if scores.second_face_area_ratio >= limits.multiple_faces_min_area_ratio:
        reasons.append(QualityReason.MULTIPLE_FACES)
    if scores.interocular_distance_px < limits.min_interocular_distance_px:
        reasons.append(QualityReason.FACE_TOO_SMALL)
    if scores.sharpness < limits.min_sharpness:
        reasons.append(QualityReason.BLURRY)
    return tuple(reasons)


def as_reference(result: QualityResult, limits: ReferenceThresholds) -> QualityResult:
    """The gate's result on a reference image judged as a reference: the same scores and face,
    ``reasons`` and ``passed`` from reference_reasons."""
    from dataclasses import replace

    reasons = reference_reasons(result, limits)
    return replace(result, passed=not reasons, reasons=reasons)
