"""One pipeline for every RPC: decode -> quality gate -> face crop -> liveness model -> verdict."""

from __future__ import annotations

from dataclasses import dataclass

from ekyc.models.liveness import LIVE, LivenessModel, OperatingPoint, UnknownProfileError, resolve_profiles
from ekyc.quality.face_search import crop_main_face
from ekyc.quality.gate import QualityGate
from ekyc.quality.rules import QualityReason, QualityResult
from ekyc.server.config import Config


@dataclass(frozen=True)
class Verdict:
    """The answer to Verify. ``quality_failed`` means the model did not run; ``decision`` is
    live, spoof or uncertain (inside the profile's review band), empty when it did not run."""

    quality: QualityResult
    quality_failed: bool
    is_live: bool
    liveness_score: float
    confidence: float
    threshold: float
    model_version: str
    profile: str = ""
    decision: str = ""

    @property
    def outcome(self) -> str:
        """What the request came to: quality_failed, live, spoof or uncertain."""
        return "quality_failed" if self.quality_failed else self.decision


class LivenessPipeline:
    """Holds the face detectors and the ONNX session; thread-safe; a context manager."""

    def __init__(self, config: Config):
        self.config = config
        self.model = LivenessModel(config.model_path, config.model.intra_op_threads)
        self.profiles, self.default_profile = resolve_profiles(
            self.model.metadata, config.model.threshold, config.model.profile
        )
        self.gate = QualityGate(config.quality)

    @property
    def threshold(self) -> float:
        """The default profile's threshold."""
        return self.profiles[self.default_profile].threshold

    def profile(self, name: str = "") -> OperatingPoint:
        """The named operating point, or the default one for an empty name."""
        try:
            return self.profiles[name or self.default_profile]
        except KeyError:
            raise UnknownProfileError(
                f"unknown profile {name!r}; this model has: {', '.join(sorted(self.profiles))}"
            ) from None

    @property
    def model_version(self) -> str:
        return self.model.version

    def warm_up(self) -> None:
        """Run every stage once so that the first request pays no lazy initialisation."""
        self.model.warm_up()
        self.gate.warm_up()

    def check_quality(self, image: bytes) -> QualityResult:
        """Decode ``image`` and run the quality gate."""
        return self.gate.assess(self.gate.decode(image))

    def verify(self, image: bytes, enable_quality_checks: bool = True, profile: str = "") -> Verdict:
        """Decode, gate (unless disabled), crop the main face and score it at ``profile``."""
        point = self.profile(profile)
        rgb = self.gate.decode(image)
        quality = self.gate.assess(rgb)
        gate_blocks = not quality.passed if enable_quality_checks else quality.face is None
        if gate_blocks:
            # Without a face there is nothing to score, even when the gate is disabled.
            return Verdict(quality, True, False, 0.0, 0.0, point.threshold, self.model_version, point.name)
        crop = crop_main_face(rgb, quality.faces, self.model.crop_rule)
        score = float(self.model.score(crop[None])[0])
        decision = point.decide(score)
        # Confidence: the probability of the side of the threshold the score falls on.
        confidence = 1.0 - score if score < point.threshold else score
        return Verdict(quality, False, decision == LIVE, score, confidence, point.threshold, self.model_version,
                       point.name, decision)

    def close(self) -> None:
        self.gate.close()

    def __enter__(self) -> "LivenessPipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["LivenessPipeline", "QualityReason", "Verdict"]
