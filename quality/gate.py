"""The quality gate: measures a selfie and says, with typed reasons, whether it is usable.

Stages: decode (quality/decode.py), find the faces that matter and the main face's landmarks
(quality/face_search.py), then the rules (quality/rules.py: pure measurements from
quality/measures.py compared with the thresholds of quality/options.py, shipped in
quality/defaults.toml).
"""

from __future__ import annotations

import time

import numpy as np

from ekyc.quality.decode import decode_image
from ekyc.quality.face_search import FaceFinder
from ekyc.quality.faces import Face
from ekyc.quality.landmarks import FaceLandmarks
from ekyc.quality.measures import SHARPNESS_SIDE, face_region, luma, sharpness
from ekyc.quality.options import QualityGateOptions, QualityThresholds, SearchOptions
from ekyc.quality.rules import QualityReason, QualityResult, QualityScores, as_reference, assess_quality

# The gate's public types, importable from here as from their own modules.
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


class QualityGate:
    """Decode + face search + rules; thread-safe; a context manager."""

    def __init__(self, options: QualityGateOptions):
        self.options = options
        self.faces = FaceFinder(options)

    def decode(self, data: bytes) -> np.ndarray:
        """Decode image bytes under the configured pixel limit (typed errors on bad input)."""
        return decode_image(data, self.options.max_image_pixels)

    def find_faces(
        self, rgb: np.ndarray, timings: dict | None = None, unconfirmed: list[Face] | None = None
    ) -> tuple[list[Face], FaceLandmarks | None]:
        """The faces that matter, main face first, and its landmarks: see FaceFinder.find."""
        return self.faces.find(rgb, timings, unconfirmed)

    def search_all_faces(self, rgb: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        """Every face the detector finds down to ``min_face_px``: see FaceFinder.search_all_faces."""
        return self.faces.search_all_faces(rgb, min_face_px)

    def assess(self, rgb: np.ndarray, timings: dict | None = None, *, stage_detail: bool = False) -> QualityResult:
        """Run every check on an RGB image; ``timings`` (if given) receives ms per stage:
        ``detect`` (face search, plus the landmarker unless ``stage_detail``), ``landmarks``
        (the landmarker, only with ``stage_detail``) and ``quality`` (the measurements)."""
        stages: dict = {}
        rejected: list[Face] = []
        faces, landmarks = self.faces.find(rgb, stages, rejected)
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

    def assess_reference(self, rgb: np.ndarray, timings: dict | None = None) -> QualityResult:
        """Measure a reference image (an ID document's portrait, an earlier selfie) and judge it
        by the [reference] limits: only NO_FACE, MULTIPLE_FACES, FACE_TOO_SMALL and BLURRY can
        refuse it (quality/rules.py reference_reasons)."""
        return as_reference(self.assess(rgb, timings), self.options.reference)

    def warm_up(self) -> None:
        """Run the face search's models once, so that the first requests pay no lazy start-up."""
        self.faces.warm_up()

    def close(self) -> None:
        self.faces.close()

    def __enter__(self) -> "QualityGate":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
