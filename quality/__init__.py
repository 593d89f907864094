"""Image decoding, face detection, face landmarks, the face-crop rule and the quality gate."""

from ekyc.quality.decode import decode_image
from ekyc.quality.errors import EkycError, ImageDecodeError, ImageTooLargeError, InvalidImageError
from ekyc.quality.faces import (
    CropRule,
    Face,
    FaceDetector,
    FaceDetectorOptions,
    crop_face,
    plan_tiles,
    search_faces,
)
from ekyc.quality.gate import (
    QualityGate,
    QualityGateOptions,
    QualityReason,
    QualityResult,
    QualityScores,
    QualityThresholds,
    SearchOptions,
    assess_quality,
)
from ekyc.quality.landmarks import FaceLandmarks, FaceMesh, HeadPose

__all__ = [
    "CropRule",
    "EkycError",
    "Face",
    "FaceDetector",
    "FaceDetectorOptions",
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
    "plan_tiles",
    "search_faces",
]
