"""The liveness model: an ONNX Runtime session plus the metadata file that describes it.

Shared by the server (scoring requests) and training (evaluating and calibrating an exported
model), so that both score through the same code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import ClassVar
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
    scores in [low, high) are UNCERTAIN and go to a person. Other models' profiles
    (ekyc.models.face_match.MatchProfile) name the three outcomes their own way."""

    name: str
    threshold: float
    review_band: tuple[float, float] | None = None
    AT_OR_ABOVE: ClassVar[str] = SPOOF
    BELOW: ClassVar[str] = LIVE
    IN_BAND: ClassVar[str] = UNCERTAIN

    def decide(self, score: float) -> str:
        if self.review_band is not None and self.review_band[0] <= score < self.review_band[1]:
            return self.IN_BAND
        return self.AT_OR_ABOVE if score >= self.threshold else self.BELOW

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
    crop: CropRule  # the first input's rule (the only one of a single-input model)
    threshold: float
    profiles: dict[str, OperatingPoint]
    default_profile: str
    raw: dict
    inputs: tuple[tuple[str, CropRule], ...] = ()  # (ONNX input name, crop rule) for every input

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
            if raw.get("inputs"):
                inputs = tuple((str(item["name"]), CropRule.from_dict(item)) for item in raw["inputs"])
                if len({name for name, _ in inputs}) != len(inputs):
                    raise ValueError("input names must be distinct")
            else:
                inputs = ((INPUT_NAME, CropRule.from_dict(raw["crop"])),)
            return cls(
                version=str(raw["version"]),
                crop=inputs[0][1],
                inputs=inputs,
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
        if OUTPUT_NAME not in outputs:
            raise ModelLoadError(f"model {model_path} must have output '{OUTPUT_NAME}'")
        declared = {name for name, _ in self.metadata.inputs}
        if set(inputs) != declared:
            raise ModelLoadError(
                f"model {model_path} has inputs {sorted(inputs)}, its metadata describes {sorted(declared)}"
            )
        for name, rule in self.metadata.inputs:
            shape = inputs[name].shape
            if len(shape) != 4 or list(shape[1:]) != [rule.size, rule.size, 3]:
                raise ModelLoadError(
                    f"model {model_path} input {name!r} shape {shape} does not match its metadata crop size {rule.size}"
                )

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def crop_rule(self) -> CropRule:
        return self.metadata.crop

    @property
    def inputs(self) -> tuple[tuple[str, CropRule], ...]:
        """(input name, crop rule) of every model input, in the metadata's order."""
        return self.metadata.inputs

    def score(self, crops: np.ndarray) -> np.ndarray:
        """Spoof probabilities for a batch of crops of a single-input model."""
        if len(self.metadata.inputs) != 1:
            raise ValueError(f"model {self.path.name} takes {len(self.metadata.inputs)} crops: use score_inputs")
        return self.score_inputs({self.metadata.inputs[0][0]: crops})

    def score_inputs(self, crops: dict[str, np.ndarray]) -> np.ndarray:
        """Spoof probabilities for a batch of faces, one (N, S, S, 3) array per named input."""
        feed = {}
        for name, _ in self.metadata.inputs:
            batch = np.asarray(crops[name], dtype=np.float32)
            feed[name] = batch[None] if batch.ndim == 3 else batch
        (probabilities,) = self._session.run([OUTPUT_NAME], feed)
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)

    def warm_up(self) -> None:
        self.score_inputs({name: np.zeros((1, rule.size, rule.size, 3), dtype=np.uint8)
                           for name, rule in self.metadata.inputs})


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
