"""One pipeline for every RPC: decode -> quality gate -> face crop -> liveness model -> verdict;
with a reference image, the reference's own checks and a face match (one embedding per image)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ekyc.models.face_match import MATCH, NO_MATCH, UNCERTAIN, FaceMatcher, FaceMatcherOptions, MatchProfile
from ekyc.models.liveness import LIVE, LivenessModel, OperatingPoint, UnknownProfileError, resolve_profiles
from ekyc.quality.alignment import align_face, five_points
from ekyc.quality.errors import InvalidImageError
from ekyc.quality.face_search import crop_main_face_inputs
from ekyc.quality.gate import QualityGate
from ekyc.quality.rules import QualityReason, QualityResult
from ekyc.server.config import Config
from ekyc.server.errors import MatcherDisabledError

# MatchResult.status values (the proto's MATCH_STATUS_*).
MATCHED, REFERENCE_REJECTED, PROBE_REJECTED = "SUCCESS", "REFERENCE_REJECTED", "PROBE_REJECTED"


@dataclass(frozen=True)
class MatchResult:
    """A face match: ``status`` MATCHED (``similarity`` and ``decision``: MATCH, NO_MATCH or
    UNCERTAIN), REFERENCE_REJECTED or PROBE_REJECTED (nothing compared, ``decision`` empty).
    ``reference_quality`` is the gate's result on the reference, judged as a reference."""

    status: str
    reference_quality: QualityResult
    threshold: float
    profile: str
    model_version: str
    similarity: float = 0.0
    decision: str = ""

    @property
    def is_match(self) -> bool:
        return self.decision == MATCH

    @property
    def outcome(self) -> str:
        """match, no_match, uncertain, reference_rejected or probe_rejected."""
        return self.decision.lower() if self.status == MATCHED else self.status.lower()


@dataclass(frozen=True)
class Comparison:
    """The answer to CompareFaces: the probe image's quality (judged as a reference) and the match."""

    quality: QualityResult
    match: MatchResult


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
    match: MatchResult | None = None  # only when the request carried a reference image

    @property
    def outcome(self) -> str:
        """What the request came to: quality_failed, live, spoof or uncertain."""
        return "quality_failed" if self.quality_failed else self.decision


class LivenessPipeline:
    """Holds the face detectors, the liveness model and the face matcher (ONNX Runtime
    sessions); thread-safe; a context manager."""

    def __init__(self, config: Config):
        self.config = config
        self.model = LivenessModel(config.model_path, config.model.intra_op_threads)
        self.profiles, self.default_profile = resolve_profiles(
            self.model.metadata, config.model.threshold, config.model.profile
        )
        self.matcher: FaceMatcher | None = None
        if config.matcher.enabled:
            self.matcher = FaceMatcher(FaceMatcherOptions(
                config.matcher_path, profile=config.matcher.profile, intra_op_threads=config.matcher.intra_op_threads))
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

    def match_profile(self, name: str = "") -> MatchProfile:
        """The matcher's named operating point, or its default for an empty name; raises
        MatcherDisabledError when matching is off."""
        if self.matcher is None:
            raise MatcherDisabledError("face matching is disabled on this server (matcher.enabled = false)")
        return self.matcher.profile(name)

    @property
    def model_version(self) -> str:
        return self.model.version

    def warm_up(self) -> None:
        """Run every stage once so that the first request pays no lazy initialisation."""
        self.model.warm_up()
        self.gate.warm_up()
        if self.matcher is not None:
            self.matcher.warm_up()

    def check_quality(self, image: bytes) -> QualityResult:
        """Decode ``image`` and run the quality gate."""
        return self.gate.assess(self.gate.decode(image))

    def verify(self, image: bytes, enable_quality_checks: bool = True, profile: str = "",
               reference_image: bytes = b"", match_profile: str = "") -> Verdict:
        """Decode, gate (unless disabled), crop the main face and score it at ``profile``; with
        a ``reference_image``, also match the selfie's face against it at ``match_profile``."""
        point = self.profile(profile)
        match_point = self.match_profile(match_profile) if reference_image else None
        rgb = self.gate.decode(image)
        reference = self._decode_reference(reference_image) if reference_image else None
        quality = self.gate.assess(rgb)
        gate_blocks = not quality.passed if enable_quality_checks else quality.face is None
        match = None
        if reference is not None:
            # A selfie the gate refused is not matched either: retaking it comes first.
            match = self._match(rgb, None if gate_blocks else quality, reference, match_point)
        if gate_blocks:
            # Without a face there is nothing to score, even when the gate is disabled.
            return Verdict(quality, True, False, 0.0, 0.0, point.threshold, self.model_version, point.name,
                           match=match)
        crops = crop_main_face_inputs(rgb, quality.faces, self.model.inputs)
        score = float(self.model.score_inputs(crops)[0])
        decision = point.decide(score)
        # Confidence: the probability of the side of the threshold the score falls on.
        confidence = 1.0 - score if score < point.threshold else score
        return Verdict(quality, False, decision == LIVE, score, confidence, point.threshold, self.model_version,
                       point.name, decision, match)

    def compare(self, image: bytes, reference_image: bytes, profile: str = "") -> Comparison:
        """Match the face of ``image`` against the face of ``reference_image`` at ``profile``;
        both are judged by the reference checks only (no selfie gate, no liveness)."""
        point = self.match_profile(profile)
        rgb = self.gate.decode(image)
        reference = self._decode_reference(reference_image)
        quality = self.gate.assess_reference(rgb)
        return Comparison(quality, self._match(rgb, quality if quality.passed else None, reference, point))

    def _decode_reference(self, data: bytes) -> np.ndarray:
        try:
            return self.gate.decode(data)
        except InvalidImageError as error:
            raise type(error)(f"reference_image: {error}") from None

    def _match(self, rgb: np.ndarray, probe: QualityResult | None, reference_rgb: np.ndarray,
               point: MatchProfile) -> MatchResult:
        """The reference's checks, then (when both faces can be matched) one embedding per
        image, in one batch, and the decision at ``point``."""
        reference = self.gate.assess_reference(reference_rgb)
        base = dict(reference_quality=reference, threshold=point.threshold, profile=point.name,
                    model_version=self.matcher.version)
        if not reference.passed:
            return MatchResult(REFERENCE_REJECTED, **base)
        if probe is None or probe.landmarks is None:
            return MatchResult(PROBE_REJECTED, **base)
        crops = np.stack([align_face(rgb, five_points(probe.landmarks.points)),
                          align_face(reference_rgb, five_points(reference.landmarks.points))])
        probe_embedding, reference_embedding = self.matcher.embed(crops)
        similarity = self.matcher.similarity(probe_embedding, reference_embedding)
        return MatchResult(MATCHED, similarity=similarity, decision=point.decide(similarity), **base)

    def close(self) -> None:
        self.gate.close()

    def __enter__(self) -> "LivenessPipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Comparison", "LivenessPipeline", "MatchResult", "MatcherDisabledError", "QualityReason", "Verdict",
           "MATCH", "NO_MATCH", "UNCERTAIN"]
