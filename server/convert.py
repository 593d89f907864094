"""Between the contract's messages (ekyc.v1) and the service layer's inputs and results.

Requests become ``QualityInput`` / ``VerifyInput`` / ``CompareInput``; results become replies. Adapters of
other transports that speak the contract's messages (an HTTP/JSON gateway parsing JSON into
them) reuse these functions.
"""

from __future__ import annotations

from ekyc.quality.report import quality_report
from ekyc.quality.rules import QualityResult
from ekyc.server.errors import InvalidRequestError
from ekyc.server.pipeline import Comparison, MatchResult, Verdict
from ekyc.server.service import CompareInput, QualityInput, StreamAnswer, VerifyInput
from ekyc.v1 import liveness_pb2 as pb

_DECISIONS = {
    "live": pb.LIVENESS_DECISION_LIVE,
    "spoof": pb.LIVENESS_DECISION_SPOOF,
    "uncertain": pb.LIVENESS_DECISION_UNCERTAIN,
}
_MATCH_DECISIONS = {
    "MATCH": pb.MATCH_DECISION_MATCH,
    "NO_MATCH": pb.MATCH_DECISION_NO_MATCH,
    "UNCERTAIN": pb.MATCH_DECISION_UNCERTAIN,
}


class MalformedRequest:
    """Stands in for a request whose bytes are not a valid protobuf message."""

    request_id = ""

    def __init__(self, type_name: str):
        self.type_name = type_name


def _check_well_formed(request) -> None:
    if isinstance(request, MalformedRequest):
        raise InvalidRequestError(f"the request is not a valid {request.type_name} message")


def quality_input(request: pb.CheckQualityRequest | MalformedRequest) -> QualityInput:
    _check_well_formed(request)
    return QualityInput(image=request.image, request_id=request.request_id)


def verify_input(request: pb.VerifyRequest | MalformedRequest) -> VerifyInput:
    _check_well_formed(request)
    quality = request.enable_quality_checks if request.HasField("enable_quality_checks") else True
    return VerifyInput(image=request.image, request_id=request.request_id, enable_quality_checks=quality,
                       profile=request.profile, reference_image=request.reference_image,
                       match_profile=request.match_profile)


def compare_input(request: pb.CompareFacesRequest | MalformedRequest) -> CompareInput:
    _check_well_formed(request)
    if not request.reference_image:
        raise InvalidRequestError("reference_image is empty: send the reference's JPEG, PNG or WebP bytes")
    return CompareInput(image=request.image, reference_image=request.reference_image,
                        request_id=request.request_id, profile=request.profile)


def stream_item(request: pb.VerifyStreamRequest | MalformedRequest) -> VerifyInput | InvalidRequestError:
    """A stream item's input, or the error that only this item fails with."""
    try:
        _check_well_formed(request)
        return verify_input(request.request)
    except InvalidRequestError as error:
        return error


def check_quality_response(result: QualityResult, request_id: str) -> pb.CheckQualityResponse:
    return pb.CheckQualityResponse(quality=quality_report(result), request_id=request_id)


def face_match(match: MatchResult) -> pb.FaceMatch:
    return pb.FaceMatch(
        status=pb.MatchStatus.Value(f"MATCH_STATUS_{match.status}"),
        similarity=match.similarity,
        is_match=match.is_match,
        decision=_MATCH_DECISIONS.get(match.decision, pb.MATCH_DECISION_UNSPECIFIED),
        threshold=match.threshold,
        profile=match.profile,
        model_version=match.model_version,
        reference_quality=quality_report(match.reference_quality),
    )


def compare_response(comparison: Comparison, request_id: str) -> pb.CompareFacesResponse:
    return pb.CompareFacesResponse(match=face_match(comparison.match), quality=quality_report(comparison.quality),
                                   request_id=request_id)


def verify_response(verdict: Verdict, request_id: str) -> pb.VerifyResponse:
    response = _verify_response(verdict, request_id)
    if verdict.match is not None:
        response.match.CopyFrom(face_match(verdict.match))
    return response


def _verify_response(verdict: Verdict, request_id: str) -> pb.VerifyResponse:
    return pb.VerifyResponse(
        status=pb.VERIFY_STATUS_QUALITY_FAILED if verdict.quality_failed else pb.VERIFY_STATUS_SUCCESS,
        is_live=verdict.is_live,
        liveness_score=verdict.liveness_score,
        confidence=verdict.confidence,
        threshold=verdict.threshold,
        model_version=verdict.model_version,
        quality=quality_report(verdict.quality),
        request_id=request_id,
        profile=verdict.profile,
        decision=_DECISIONS.get(verdict.decision, pb.LIVENESS_DECISION_UNSPECIFIED),
    )


def stream_response(answer: StreamAnswer) -> pb.VerifyStreamResponse:
    if answer.error is not None:
        error = pb.ItemError(code=answer.error.code.value[0], message=answer.error.message)
        return pb.VerifyStreamResponse(request_id=answer.request_id, error=error)
    return pb.VerifyStreamResponse(request_id=answer.request_id,
                                   result=verify_response(answer.verdict, answer.request_id))
