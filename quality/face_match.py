"""1:1 face matching: align a face from the landmarks the gate already measured, embed it with
SFace (OpenCV Zoo, Apache-2.0) on ONNX Runtime, and compare two embeddings.

No second detector: the five points of the model's alignment template (eye centres, nose tip,
mouth corners) come from MediaPipe's face mesh (quality/landmarks.py), which the quality gate
runs on every face it accepts. The crop is OpenCV's ``FaceRecognizerSF.alignCrop``: a
least-squares similarity transform (Umeyama, as OpenCV's getSimilarityTransformMatrix) of the
five points onto the 112x112 template SFace was trained with, bilinear, zero border.

The model is SFace's own weights, converted once (scripts/convert_sface.py,
models/face-match/); its metadata file (models/face-match/sface.json) holds the operating
points chosen on impostor pairs (training/face_match_eval.py) and the score mapping.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ekyc.quality.errors import EkycError
from ekyc.quality.gate import QualityReason, QualityResult
from ekyc.quality.ort_session import cpu_session

BUNDLED_MATCHER = Path(__file__).resolve().parent.parent / "models" / "face-match" / "sface.onnx"
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

MATCH, NO_MATCH, UNCERTAIN = "MATCH", "NO_MATCH", "UNCERTAIN"
# The quality gate's reasons a reference image (an ID document's portrait, an earlier selfie)
# can fail for: the checks that decide whether a face can be matched at all. A reference's
# lighting, pose or resolution is the document's, not the user's to fix, and is not judged.
REFERENCE_REASONS = (QualityReason.NO_FACE, QualityReason.MULTIPLE_FACES, QualityReason.FACE_TOO_SMALL,
                     QualityReason.BLURRY)


class FaceMatcherModelError(ValueError):
    """The face-matching model or its metadata is missing or unusable."""


class UnknownMatchProfileError(EkycError):
    """A request named a match profile the matcher does not have."""


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


def similarity_from_cosine(cosine: float | np.ndarray) -> float | np.ndarray:
    """The reported similarity: the embeddings' cosine clipped to 0..1.

    Monotone in the model's score; below 0 (faces less alike than unrelated ones usually are)
    it stays 0. Thresholds and profiles are in the same unit, so cosine 0.363 (OpenCV's
    published SFace threshold) is similarity 0.363.
    """
    return np.clip(cosine, 0.0, 1.0) if isinstance(cosine, np.ndarray) else min(1.0, max(0.0, float(cosine)))


@dataclass(frozen=True)
class MatchProfile:
    """A named threshold on the similarity (MATCH iff similarity >= threshold) with an optional
    band [low, high) around it whose pairs are UNCERTAIN and go to a person."""

    name: str
    threshold: float
    uncertain_band: tuple[float, float] | None = None

    def decide(self, similarity: float) -> str:
        if self.uncertain_band is not None and self.uncertain_band[0] <= similarity < self.uncertain_band[1]:
            return UNCERTAIN
        return MATCH if similarity >= self.threshold else NO_MATCH

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "MatchProfile":
        threshold = float(data["threshold"])
        band = data.get("uncertain_band")
        uncertain = (float(band[0]), float(band[1])) if band else None
        if not 0.0 <= threshold <= 1.0 or (uncertain and not uncertain[0] <= threshold <= uncertain[1]):
            raise ValueError(f"match profile {name}: threshold {threshold} and band {uncertain} are inconsistent")
        return cls(name, threshold, uncertain)


@dataclass(frozen=True)
class ReferenceThresholds:
    """When a reference face can be matched. Measured with training/face_match_eval.py's
    ID-card portraits against selfies (models/face-match.md): genuine pairs' median similarity
    0.51 at 30 px between the eyes, 0.46 at 20, 0.37 at 16 (under the strict threshold); 0.53
    with the gate's sharpness at 170 (as rendered), 0.45 at 14, 0.36 at 8."""

    min_interocular_distance_px: float = 20.0
    min_sharpness: float = 10.0
    multiple_faces_min_area_ratio: float = 0.25

    def validate(self) -> None:
        for name in ("min_interocular_distance_px", "min_sharpness"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"matcher.reference_{name} must be a number >= 0")
        ratio = self.multiple_faces_min_area_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
            raise ValueError("matcher.reference_multiple_faces_min_area_ratio must be within (0, 1]")


def reference_reasons(result: QualityResult, limits: ReferenceThresholds = ReferenceThresholds()) -> tuple[QualityReason, ...]:
    """Why the face in a reference image cannot be matched, from the quality gate's result on
    it (empty: it can). No face, or no landmarks to align it by, is NO_FACE."""
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


@dataclass(frozen=True)
class MatcherMetadata:
    """What the matcher needs from ``<model>.json``: its version, profiles and default profile."""

    version: str
    profiles: dict[str, MatchProfile]
    default_profile: str
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "MatcherMetadata":
        try:
            raw = json.loads(Path(path).read_text())
            profiles = {name: MatchProfile.from_dict(name, point) for name, point in raw["profiles"].items()}
            default = str(raw.get("default_profile") or next(iter(profiles)))
            if default not in profiles:
                raise ValueError(f"default_profile {default!r} is not among the profiles")
            return cls(str(raw["version"]), profiles, default, raw)
        except FileNotFoundError:
            raise FaceMatcherModelError(f"face-matching model metadata not found: {path}") from None
        except (ValueError, KeyError, TypeError, StopIteration) as error:
            raise FaceMatcherModelError(f"face-matching model metadata {path} is invalid: {error!r}") from None


@dataclass(frozen=True)
class FaceMatcherOptions:
    """Where the embedding model comes from and how it runs. ``metadata_path`` defaults to the
    model's path with a .json suffix; ``profile`` (empty: the metadata's default) is the
    operating point used when a call names none."""

    model_path: Path = BUNDLED_MATCHER
    metadata_path: Path | None = None
    profile: str = ""
    intra_op_threads: int = 1


class FaceMatcher:
    """SFace on ONNX Runtime: aligned RGB crops in, L2-normalised 128-d embeddings out.
    Thread-safe (the session is); a context manager."""

    def __init__(self, options: FaceMatcherOptions = FaceMatcherOptions()):
        self.options = options
        path = Path(options.model_path)
        if not path.is_file():
            raise FaceMatcherModelError(f"face-matching model not found: {path}")
        self.metadata = MatcherMetadata.load(options.metadata_path or path.with_suffix(".json"))
        try:
            self._session = cpu_session(path, options.intra_op_threads)
        except Exception as error:  # noqa: BLE001 - ORT raises its own exception types
            raise FaceMatcherModelError(f"cannot load the face-matching model {path}: {error}") from error
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, ALIGNED_SIDE, ALIGNED_SIDE] or len(outputs) != 1:
            raise FaceMatcherModelError(f"{path} is not an SFace-style model (1 x 3 x 112 x 112 in, one embedding out)")
        self._input, self._output = inputs[0].name, outputs[0].name
        self._batched = not isinstance(inputs[0].shape[0], int)
        self.default_profile = self.profile(options.profile).name

    @property
    def version(self) -> str:
        return self.metadata.version

    def profile(self, name: str = "") -> MatchProfile:
        """The named operating point, or the default one for an empty name."""
        name = name or self.options.profile or self.metadata.default_profile
        try:
            return self.metadata.profiles[name]
        except KeyError:
            raise UnknownMatchProfileError(
                f"unknown match profile {name!r}; the matcher has: {', '.join(sorted(self.metadata.profiles))}"
            ) from None

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings (N, 128), unit length, of aligned uint8 RGB crops (N, 112, 112, 3)."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:] != (ALIGNED_SIDE, ALIGNED_SIDE, 3):
            raise ValueError(f"need aligned crops of shape (N, 112, 112, 3), got {crops.shape}")
        # The graph takes RGB 0..255, NCHW, and normalises inside (as OpenCV feeds it).
        tensor = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
        if self._batched:
            raw = self._session.run([self._output], {self._input: tensor})[0]
        else:
            raw = np.concatenate([self._session.run([self._output], {self._input: t[None]})[0] for t in tensor])
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_face(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The embedding (128,) of one face, from its face-mesh landmarks (478, 2 or 3) in ``rgb``."""
        return self.embed(align_face(rgb, five_points(landmarks)))[0]

    @staticmethod
    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        """Cosine of two embeddings (unit length from ``embed``; normalised again for safety)."""
        a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
        denominator = np.linalg.norm(a) * np.linalg.norm(b)
        return float(a @ b / denominator) if denominator > 0 and math.isfinite(denominator) else 0.0

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """The reported similarity (0..1, see similarity_from_cosine) of two embeddings."""
        return float(similarity_from_cosine(self.cosine(a, b)))

    def warm_up(self) -> None:
        """One embedding, so that the first request pays no lazy start-up."""
        self.embed(np.full((1, ALIGNED_SIDE, ALIGNED_SIDE, 3), 128, dtype=np.uint8))

    def close(self) -> None:
        """The session is freed with the object; kept for the context-manager protocol."""

    def __enter__(self) -> "FaceMatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
