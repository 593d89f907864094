"""The face library: image decoding, face detection and search, face landmarks, the face-crop
rule and the quality gate. Imports neither the server nor training (docs/architecture.md)."""

from ekyc.quality.decode import decode_image
from ekyc.errors import EkycError
from ekyc.quality.errors import ImageDecodeError, ImageTooLargeError, InvalidImageError
from ekyc.quality.faces import (
    CropRule,
    Face,
    FaceDetector,
    FaceDetectorOptions,
    crop_face,
    plan_tiles,
    search_faces,
)
from ekyc.quality.face_search import FaceFinder
from ekyc.quality.gate import QualityGate
from ekyc.quality.options import QualityGateOptions, QualityThresholds, SearchOptions, load_gate_options
from ekyc.quality.rules import QualityReason, QualityResult, QualityScores, assess_quality
from ekyc.quality.landmarks import FaceLandmarks, FaceMesh, HeadPose

__all__ = [
    "CropRule",
    "EkycError",
    "Face",
    "FaceDetector",
    "FaceDetectorOptions",
    "FaceFinder",
    "FaceLandmarks",
    "FaceMesh",
    "HeadPose",
    "ImageDecodeError",
    "ImageTooLargeError",
    "InvalidImageError",
    "QualityGate",
    "QualityGateOptions",
    "QualityReason",
    "QualityResult",
    "QualityScores",
    "QualityThresholds",
    "SearchOptions",
    "assess_quality",
    "crop_face",
    "decode_image",
    "load_gate_options",
    "plan_tiles",
    "search_faces",
]
