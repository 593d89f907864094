"""The quality gate's options: thresholds, face-search settings, model paths; parsed from the
[quality], [detector] and [landmarks] configuration sections (shipped in quality/defaults.toml)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

from ekyc.paths import DEFAULT_DETECTOR
from ekyc.settings import ConfigError, load_sections

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
SECTIONS = ("quality", "detector", "landmarks", "reference")


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
        values = {
            f.name: number(data[f.name], int if f.type in (int, "int") else float, f"quality threshold {f.name}")
            for f in fields(cls)
        }
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
class ReferenceThresholds:
    """When a reference face (an ID document's portrait, an earlier selfie) can be matched:
    the [reference] section. Measured with training/face_match_eval.py's ID-card portraits
    against selfies (models/face-match.md): genuine pairs' median similarity 0.51 at 30 px
    between the eyes, 0.46 at 20, 0.37 at 16 (under the strict threshold); cards refused as
    blurry at sharpness 10 had lost most of theirs (0.38 against 0.47 kept)."""

    min_interocular_distance_px: float = 20.0
    min_sharpness: float = 10.0
    multiple_faces_min_area_ratio: float = 0.25

    @classmethod
    def from_dict(cls, data: dict) -> "ReferenceThresholds":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown reference thresholds: {', '.join(sorted(unknown))}")
        values = {f.name: number(data[f.name], float, f"reference.{f.name}") for f in fields(cls) if f.name in data}
        limits = cls(**values)
        limits.validate()
        return limits

    def validate(self) -> None:
        for name in ("min_interocular_distance_px", "min_sharpness"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"reference.{name} must be a number >= 0")
        ratio = self.multiple_faces_min_area_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
            raise ValueError("reference.multiple_faces_min_area_ratio must be within (0, 1]")


@dataclass(frozen=True)
class QualityGateOptions:
    """Everything the gate needs, built from the [quality], [detector], [landmarks] and
    [reference] config sections."""

    detector_model: Path
    min_detection_confidence: float
    max_image_pixels: int
    thresholds: QualityThresholds
    search: SearchOptions = SearchOptions()
    reference: ReferenceThresholds = ReferenceThresholds()

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
        reference = ReferenceThresholds.from_dict(dict(sections.get("reference", {})))
        return cls(path, confidence, max_pixels, thresholds, search, reference)


def _number(section: dict, name: str, key: str, caster, default, minimum):
    value = number(section.get(key, default), caster, f"{name}.{key}")
    if value < minimum:
        raise ValueError(f"{name}.{key} must be at least {minimum}")
    return value


def number(value, caster, name: str):
    """``value`` as an int or float (``caster``); ValueError naming ``name`` for a bool, a
    non-number or a NaN."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    try:
        value = caster(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a number") from None
    if caster is float and math.isnan(value):
        raise ValueError(f"{name} must be a number, not nan")
    return value


def _flag(section: dict, name: str, key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{name}.{key} must be true or false")
    return value


def load_gate_options(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> QualityGateOptions:
    """The gate's options on their own (ekyc-quality): quality/defaults.toml, then the
    [quality]/[detector]/[landmarks] sections of ``path`` (its other sections belong to
    ekyc-server and are skipped), then ``EKYC_QUALITY_*``/``EKYC_DETECTOR_*``/``EKYC_LANDMARKS_*``.
    Raises ConfigError."""
    data = load_sections([DEFAULTS_FILE], path, environ, foreign_sections=True)
    try:
        return QualityGateOptions.from_sections(data, DEFAULT_DETECTOR)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
