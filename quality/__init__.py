"""Image decoding, face detection, the face-crop rule and the quality gate."""

from ekyc.quality.decode import decode_image
from ekyc.quality.errors import EkycError, ImageDecodeError, ImageTooLargeError, InvalidImageError
from ekyc.quality.faces import CropRule, Face, FaceDetector, FaceDetectorOptions, FaceDetectorPool, crop_face
from ekyc.quality.gate import (
    QualityGate,
    QualityGateOptions,
    QualityReason,
    QualityResult,
    QualityScores,
    QualityThresholds,
    assess_quality,
)

__all__ = [
    "CropRule",
    "EkycError",
    "Face",
    "FaceDetector",
    "FaceDetectorOptions",
    "FaceDetectorPool",
    "ImageDecodeError",
    "ImageTooLargeError",
    "InvalidImageError",
    "QualityGate",
    "QualityGateOptions",
    "QualityReason",
    "QualityResult",
    "QualityScores",
    "QualityThresholds",
    "assess_quality",
    "crop_face",
    "decode_image",
]
