"""The face matcher: SFace (OpenCV Zoo, Apache-2.0) on ONNX Runtime, aligned faces in, unit
embeddings out, and its operating points.

The model is SFace's own weights, converted once (scripts/convert_sface.py, models/face-match/);
its metadata (models/face-match/sface.json) holds the operating points chosen on impostor pairs
(training/face_match_eval.py). Faces are aligned from the gate's face-mesh landmarks
(quality/alignment.py): no second detector. Shared by the server and the accuracy harness.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

import numpy as np

from ekyc.errors import EkycError, ModelLoadError
from ekyc.models.liveness import OperatingPoint
from ekyc.ort_session import cpu_session
from ekyc.paths import DEFAULT_MATCHER
from ekyc.quality.alignment import ALIGNED_SIDE, align_face, five_points

MATCH, NO_MATCH, UNCERTAIN = "MATCH", "NO_MATCH", "UNCERTAIN"


class FaceMatcherModelError(ModelLoadError):
    """The face-matching model or its metadata is missing or unusable."""


class UnknownMatchProfileError(EkycError):
    """A request named a match profile the matcher does not have."""


def similarity_from_cosine(cosine: float | np.ndarray) -> float | np.ndarray:
    """The reported similarity: the embeddings' cosine clipped to 0..1.

    Monotone in the model's score; below 0 (faces less alike than unrelated ones usually are)
    it stays 0. Thresholds and profiles are in the same unit, so cosine 0.363 (OpenCV's
    published SFace threshold) is similarity 0.363.
    """
    return np.clip(cosine, 0.0, 1.0) if isinstance(cosine, np.ndarray) else min(1.0, max(0.0, float(cosine)))


@dataclass(frozen=True)
class MatchProfile(OperatingPoint):
    """A named threshold on the similarity (MATCH iff similarity >= threshold) with an optional
    review band [low, high) whose pairs are UNCERTAIN and go to a person."""

    AT_OR_ABOVE: ClassVar[str] = MATCH
    BELOW: ClassVar[str] = NO_MATCH
    IN_BAND: ClassVar[str] = UNCERTAIN


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

    model_path: Path = DEFAULT_MATCHER
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
        if options.profile and options.profile not in self.metadata.profiles:
            raise FaceMatcherModelError(
                f"matcher.profile {options.profile!r} is not one of the matcher's profiles: "
                f"{', '.join(sorted(self.metadata.profiles))}")
        self.default_profile = self.profile().name

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
