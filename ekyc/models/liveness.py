"""The liveness model: an ONNX Runtime session plus the metadata file that describes it.

Shared by the server (scoring requests) and training (evaluating and calibrating an exported
model), so that both score through the same code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ekyc.errors import EkycError, ModelLoadError
from ekyc.ort_session import cpu_session
from ekyc.quality.faces import CropRule

INPUT_NAME = "image"
OUTPUT_NAME = "spoof_probability"


class UnknownProfileError(EkycError):
    """A request named an operating point the model does not have."""


LIVE, SPOOF, UNCERTAIN = "live", "spoof", "uncertain"


@dataclass(frozen=True)
class OperatingPoint:
    """A named threshold (spoof iff score >= threshold) with an optional review band:
    scores in [low, high) are UNCERTAIN and go to a person."""

    name: str
    threshold: float
    review_band: tuple[float, float] | None = None

    def decide(self, score: float) -> str:
        if self.review_band is not None and self.review_band[0] <= score < self.review_band[1]:
            return UNCERTAIN
        return SPOOF if score >= self.threshold else LIVE

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "OperatingPoint":
        threshold = float(data["threshold"])
        band = data.get("review_band")
        review_band = (float(band[0]), float(band[1])) if band else None
        if not 0.0 <= threshold <= 1.0 or (review_band and not review_band[0] <= threshold <= review_band[1]):
            raise ValueError(f"profile {name}: threshold {threshold} and band {review_band} are inconsistent")
        return cls(name, threshold, review_band)


@dataclass(frozen=True)
class ModelMetadata:
    """The parts of ``<model>.json`` the server relies on."""

    version: str
    crop: CropRule
    threshold: float
    profiles: dict[str, OperatingPoint]
    default_profile: str
    raw: dict

    @classmethod
    def load(cls, path: Path) -> "ModelMetadata":
        try:
            raw = json.loads(Path(path).read_text())
            threshold = float(raw["threshold"])
            profiles = {
                name: OperatingPoint.from_dict(name, point) for name, point in (raw.get("profiles") or {}).items()
            } or {"balanced": OperatingPoint("balanced", threshold)}
            default = str(raw.get("default_profile") or next(iter(profiles)))
            if default not in profiles:
                raise ValueError(f"default_profile {default!r} is not among the profiles")
            return cls(
                version=str(raw["version"]),
                crop=CropRule.from_dict(raw["crop"]),
                threshold=threshold,
                profiles=profiles,
                default_profile=default,
                raw=raw,
            )
        except FileNotFoundError:
            raise ModelLoadError(f"model metadata not found: {path}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"model metadata {path} is invalid: {exc!r}") from None


def metadata_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


class LivenessModel:
    """Scores face crops: uint8 (N, S, S, 3) RGB in, spoof probability (N,) out.

    Normalisation is inside the ONNX graph, so training and serving cannot drift apart.
    """

    def __init__(self, model_path: Path, intra_op_threads: int = 1):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        self.path = model_path
        self.metadata = ModelMetadata.load(metadata_path(model_path))
        try:
            self._session = cpu_session(model_path, intra_op_threads)
        except Exception as exc:  # ORT raises its own untyped errors for bad files
            raise ModelLoadError(f"model {model_path} cannot be loaded: {exc}") from None
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        size = self.metadata.crop.size
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ModelLoadError(
                f"model {model_path} must have input '{INPUT_NAME}' and output '{OUTPUT_NAME}'"
            )
        shape = inputs[INPUT_NAME].shape
        if len(shape) != 4 or list(shape[1:]) != [size, size, 3]:
            raise ModelLoadError(
                f"model {model_path} input shape {shape} does not match its metadata crop size {size}"
            )

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def crop_rule(self) -> CropRule:
        return self.metadata.crop

    def score(self, crops: np.ndarray) -> np.ndarray:
        """Spoof probabilities for a batch of crops."""
        batch = np.asarray(crops, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        (probabilities,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)

    def warm_up(self) -> None:
        size = self.metadata.crop.size
        self.score(np.zeros((1, size, size, 3), dtype=np.uint8))


CONFIGURED = "configured"


def resolve_profiles(
    metadata: ModelMetadata, configured_threshold: float, configured_profile: str
) -> tuple[dict[str, OperatingPoint], str]:
    """The operating points a request may pick, and the default one.

    A threshold set in the config becomes a profile named ``configured`` and the default;
    otherwise the config's profile (or the metadata's default) is.
    """
    profiles = dict(metadata.profiles)
    if configured_threshold is not None and not math.isnan(configured_threshold):
        if not 0.0 <= configured_threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {configured_threshold}")
        profiles[CONFIGURED] = OperatingPoint(CONFIGURED, float(configured_threshold))
        return profiles, CONFIGURED
    default = configured_profile or metadata.default_profile
    if default not in profiles:
        raise ValueError(f"model.profile {default!r} is not one of the model's profiles: {', '.join(profiles)}")
    return profiles, default
