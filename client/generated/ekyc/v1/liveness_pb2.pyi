from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QualityReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_REASON_UNSPECIFIED: _ClassVar[QualityReason]
    QUALITY_REASON_NO_FACE: _ClassVar[QualityReason]
    QUALITY_REASON_MULTIPLE_FACES: _ClassVar[QualityReason]
    QUALITY_REASON_FACE_TOO_SMALL: _ClassVar[QualityReason]
    QUALITY_REASON_TOO_DARK: _ClassVar[QualityReason]
    QUALITY_REASON_TOO_BRIGHT: _ClassVar[QualityReason]
    QUALITY_REASON_BLURRY: _ClassVar[QualityReason]
    QUALITY_REASON_LOW_RESOLUTION: _ClassVar[QualityReason]
    QUALITY_REASON_LOW_CONTRAST: _ClassVar[QualityReason]
    QUALITY_REASON_FACE_CUT_OFF: _ClassVar[QualityReason]
    QUALITY_REASON_POSE_TOO_LARGE: _ClassVar[QualityReason]
    QUALITY_REASON_EYES_CLOSED: _ClassVar[QualityReason]
    QUALITY_REASON_EYES_OCCLUDED: _ClassVar[QualityReason]

class VerifyStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_STATUS_UNSPECIFIED: _ClassVar[VerifyStatus]
    VERIFY_STATUS_SUCCESS: _ClassVar[VerifyStatus]
    VERIFY_STATUS_QUALITY_FAILED: _ClassVar[VerifyStatus]

class LivenessDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIVENESS_DECISION_UNSPECIFIED: _ClassVar[LivenessDecision]
    LIVENESS_DECISION_LIVE: _ClassVar[LivenessDecision]
    LIVENESS_DECISION_SPOOF: _ClassVar[LivenessDecision]
    LIVENESS_DECISION_UNCERTAIN: _ClassVar[LivenessDecision]

class MatchStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_STATUS_UNSPECIFIED: _ClassVar[MatchStatus]
    MATCH_STATUS_SUCCESS: _ClassVar[MatchStatus]
    MATCH_STATUS_REFERENCE_REJECTED: _ClassVar[MatchStatus]
    MATCH_STATUS_PROBE_REJECTED: _ClassVar[MatchStatus]

class MatchDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_DECISION_UNSPECIFIED: _ClassVar[MatchDecision]
    MATCH_DECISION_MATCH: _ClassVar[MatchDecision]
    MATCH_DECISION_NO_MATCH: _ClassVar[MatchDecision]
    MATCH_DECISION_UNCERTAIN: _ClassVar[MatchDecision]
QUALITY_REASON_UNSPECIFIED: QualityReason
QUALITY_REASON_NO_FACE: QualityReason
QUALITY_REASON_MULTIPLE_FACES: QualityReason
QUALITY_REASON_FACE_TOO_SMALL: QualityReason
QUALITY_REASON_TOO_DARK: QualityReason
QUALITY_REASON_TOO_BRIGHT: QualityReason
QUALITY_REASON_BLURRY: QualityReason
QUALITY_REASON_LOW_RESOLUTION: QualityReason
QUALITY_REASON_LOW_CONTRAST: QualityReason
QUALITY_REASON_FACE_CUT_OFF: QualityReason
QUALITY_REASON_POSE_TOO_LARGE: QualityReason
QUALITY_REASON_EYES_CLOSED: QualityReason
QUALITY_REASON_EYES_OCCLUDED: QualityReason
VERIFY_STATUS_UNSPECIFIED: VerifyStatus
VERIFY_STATUS_SUCCESS: VerifyStatus
VERIFY_STATUS_QUALITY_FAILED: VerifyStatus
LIVENESS_DECISION_UNSPECIFIED: LivenessDecision
LIVENESS_DECISION_LIVE: LivenessDecision
LIVENESS_DECISION_SPOOF: LivenessDecision
LIVENESS_DECISION_UNCERTAIN: LivenessDecision
MATCH_STATUS_UNSPECIFIED: MatchStatus
MATCH_STATUS_SUCCESS: MatchStatus
MATCH_STATUS_REFERENCE_REJECTED: MatchStatus
MATCH_STATUS_PROBE_REJECTED: MatchStatus
MATCH_DECISION_UNSPECIFIED: MatchDecision
MATCH_DECISION_MATCH: MatchDecision
MATCH_DECISION_NO_MATCH: MatchDecision
MATCH_DECISION_UNCERTAIN: MatchDecision

class QualityScores(_message.Message):
    __slots__ = ("brightness", "sharpness", "face_coverage", "face_count", "face_confidence", "underexposed_fraction", "overexposed_fraction", "dynamic_range", "interocular_distance_px", "yaw_deg", "pitch_deg", "roll_deg", "eyes_closed_score", "eyes_occluded_score", "face_border_margin", "second_face_area_ratio", "landmarks_measured")
    BRIGHTNESS_FIELD_NUMBER: _ClassVar[int]
    SHARPNESS_FIELD_NUMBER: _ClassVar[int]
    FACE_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FACE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    UNDEREXPOSED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    OVEREXPOSED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_RANGE_FIELD_NUMBER: _ClassVar[int]
    INTEROCULAR_DISTANCE_PX_FIELD_NUMBER: _ClassVar[int]
    YAW_DEG_FIELD_NUMBER: _ClassVar[int]
    PITCH_DEG_FIELD_NUMBER: _ClassVar[int]
    ROLL_DEG_FIELD_NUMBER: _ClassVar[int]
    EYES_CLOSED_SCORE_FIELD_NUMBER: _ClassVar[int]
    EYES_OCCLUDED_SCORE_FIELD_NUMBER: _ClassVar[int]
    FACE_BORDER_MARGIN_FIELD_NUMBER: _ClassVar[int]
    SECOND_FACE_AREA_RATIO_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_MEASURED_FIELD_NUMBER: _ClassVar[int]
    brightness: float
    sharpness: float
    face_coverage: float
    face_count: int
    face_confidence: float
    underexposed_fraction: float
    overexposed_fraction: float
    dynamic_range: float
    interocular_distance_px: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    eyes_closed_score: float
    eyes_occluded_score: float
    face_border_margin: float
    second_face_area_ratio: float
    landmarks_measured: bool
    def __init__(self, brightness: _Optional[float] = ..., sharpness: _Optional[float] = ..., face_coverage: _Optional[float] = ..., face_count: _Optional[int] = ..., face_confidence: _Optional[float] = ..., underexposed_fraction: _Optional[float] = ..., overexposed_fraction: _Optional[float] = ..., dynamic_range: _Optional[float] = ..., interocular_distance_px: _Optional[float] = ..., yaw_deg: _Optional[float] = ..., pitch_deg: _Optional[float] = ..., roll_deg: _Optional[float] = ..., eyes_closed_score: _Optional[float] = ..., eyes_occluded_score: _Optional[float] = ..., face_border_margin: _Optional[float] = ..., second_face_area_ratio: _Optional[float] = ..., landmarks_measured: _Optional[bool] = ...) -> None: ...

class FaceBox(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class QualityReport(_message.Message):
    __slots__ = ("passed", "reasons", "scores", "face_box", "image_width", "image_height")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    FACE_BOX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    reasons: _containers.RepeatedScalarFieldContainer[QualityReason]
    scores: QualityScores
    face_box: FaceBox
    image_width: int
    image_height: int
    def __init__(self, passed: _Optional[bool] = ..., reasons: _Optional[_Iterable[_Union[QualityReason, str]]] = ..., scores: _Optional[_Union[QualityScores, _Mapping]] = ..., face_box: _Optional[_Union[FaceBox, _Mapping]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ...) -> None: ...

class CheckQualityRequest(_message.Message):
    __slots__ = ("image", "request_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    request_id: str
    def __init__(self, image: _Optional[bytes] = ..., request_id: _Optional[str] = ...) -> None: ...

class CheckQualityResponse(_message.Message):
    __slots__ = ("quality", "request_id")
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    quality: QualityReport
    request_id: str
    def __init__(self, quality: _Optional[_Union[QualityReport, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("image", "enable_quality_checks", "request_id", "profile", "reference_image", "match_profile")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENABLE_QUALITY_CHECKS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    MATCH_PROFILE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    enable_quality_checks: bool
    request_id: str
    profile: str
    reference_image: bytes
    match_profile: str
    def __init__(self, image: _Optional[bytes] = ..., enable_quality_checks: _Optional[bool] = ..., request_id: _Optional[str] = ..., profile: _Optional[str] = ..., reference_image: _Optional[bytes] = ..., match_profile: _Optional[str] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("status", "is_live", "liveness_score", "confidence", "threshold", "model_version", "quality", "request_id", "profile", "decision", "match")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IS_LIVE_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_SCORE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    status: VerifyStatus
    is_live: bool
    liveness_score: float
    confidence: float
    threshold: float
    model_version: str
    quality: QualityReport
    request_id: str
    profile: str
    decision: LivenessDecision
    match: FaceMatch
    def __init__(self, status: _Optional[_Union[VerifyStatus, str]] = ..., is_live: _Optional[bool] = ..., liveness_score: _Optional[float] = ..., confidence: _Optional[float] = ..., threshold: _Optional[float] = ..., model_version: _Optional[str] = ..., quality: _Optional[_Union[QualityReport, _Mapping]] = ..., request_id: _Optional[str] = ..., profile: _Optional[str] = ..., decision: _Optional[_Union[LivenessDecision, str]] = ..., match: _Optional[_Union[FaceMatch, _Mapping]] = ...) -> None: ...

class VerifyStreamRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: VerifyRequest
    def __init__(self, request: _Optional[_Union[VerifyRequest, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class VerifyStreamResponse(_message.Message):
    __slots__ = ("request_id", "result", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    result: VerifyResponse
    error: ItemError
    def __init__(self, request_id: _Optional[str] = ..., result: _Optional[_Union[VerifyResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class FaceMatch(_message.Message):
    __slots__ = ("status", "similarity", "is_match", "decision", "threshold", "profile", "model_version", "reference_quality")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    IS_MATCH_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_QUALITY_FIELD_NUMBER: _ClassVar[int]
    status: MatchStatus
    similarity: float
    is_match: bool
    decision: MatchDecision
    threshold: float
    profile: str
    model_version: str
    reference_quality: QualityReport
    def __init__(self, status: _Optional[_Union[MatchStatus, str]] = ..., similarity: _Optional[float] = ..., is_match: _Optional[bool] = ..., decision: _Optional[_Union[MatchDecision, str]] = ..., threshold: _Optional[float] = ..., profile: _Optional[str] = ..., model_version: _Optional[str] = ..., reference_quality: _Optional[_Union[QualityReport, _Mapping]] = ...) -> None: ...

class CompareFacesRequest(_message.Message):
    __slots__ = ("image", "reference_image", "request_id", "profile")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    reference_image: bytes
    request_id: str
    profile: str
    def __init__(self, image: _Optional[bytes] = ..., reference_image: _Optional[bytes] = ..., request_id: _Optional[str] = ..., profile: _Optional[str] = ...) -> None: ...

class CompareFacesResponse(_message.Message):
    __slots__ = ("match", "quality", "request_id")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    match: FaceMatch
    quality: QualityReport
    request_id: str
    def __init__(self, match: _Optional[_Union[FaceMatch, _Mapping]] = ..., quality: _Optional[_Union[QualityReport, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...
