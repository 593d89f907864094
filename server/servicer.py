"""The LivenessService servicer: each RPC unpacks the proto, calls the pipeline, packs the reply.

Domain errors become gRPC status codes in one place, ``status_for``; clients never see a
stack trace.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Callable, Iterator

import grpc

from ekyc.quality.errors import EkycError, InvalidImageError
from ekyc.quality.gate import QualityResult
from ekyc.server.logs import log_event
from ekyc.server.pipeline import LivenessPipeline, Verdict
from ekyc.v1 import liveness_pb2 as pb
from ekyc.v1 import liveness_pb2_grpc

MAX_REQUEST_ID_LENGTH = 128


class ServiceNotReadyError(EkycError):
    """The models are still loading, or the server is shutting down."""


class InvalidRequestError(EkycError):
    """A request field other than the image is unusable."""


def status_for(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message for an exception."""
    if isinstance(error, (InvalidImageError, InvalidRequestError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, ServiceNotReadyError):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    return grpc.StatusCode.INTERNAL, "internal error; the server log has the details"


def quality_report(result: QualityResult) -> pb.QualityReport:
    report = pb.QualityReport(
        passed=result.passed,
        reasons=[pb.QualityReason.Value(f"QUALITY_REASON_{reason.value}") for reason in result.reasons],
        scores=pb.QualityScores(
            brightness=result.scores.brightness,
            sharpness=result.scores.sharpness,
            face_coverage=result.scores.face_coverage,
            face_count=result.scores.face_count,
            face_confidence=result.scores.face_confidence,
        ),
        image_width=result.image_width,
        image_height=result.image_height,
    )
    if result.face is not None:
        face = result.face
        report.face_box.CopyFrom(pb.FaceBox(x=face.x, y=face.y, width=face.width, height=face.height))
    return report


def verify_response(verdict: Verdict, request_id: str) -> pb.VerifyResponse:
    return pb.VerifyResponse(
        status=pb.VERIFY_STATUS_QUALITY_FAILED if verdict.quality_failed else pb.VERIFY_STATUS_SUCCESS,
        is_live=verdict.is_live,
        liveness_score=verdict.liveness_score,
        confidence=verdict.confidence,
        threshold=verdict.threshold,
        model_version=verdict.model_version,
        quality=quality_report(verdict.quality),
        request_id=request_id,
    )


def decision_of(response: pb.VerifyResponse) -> str:
    if response.status == pb.VERIFY_STATUS_QUALITY_FAILED:
        return "quality_failed"
    return "live" if response.is_live else "spoof"


def _check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidRequestError(f"request_id is longer than {MAX_REQUEST_ID_LENGTH} characters")


def _unary(method: str) -> Callable:
    """Time, log and map errors of a unary RPC handler."""

    def wrap(handler):
        @functools.wraps(handler)
        def run(self, request, context: grpc.ServicerContext):
            started = time.perf_counter()
            fields = {"method": method, "request_id": request.request_id[:MAX_REQUEST_ID_LENGTH]}
            try:
                response, extra = handler(self, request, context)
            except Exception as error:  # noqa: BLE001 - every error becomes a status
                code, message = status_for(error)
                _log_rpc(started, code, {**fields, "error": message}, error if code == grpc.StatusCode.INTERNAL else None)
                context.abort(code, message)
            _log_rpc(started, grpc.StatusCode.OK, {**fields, **extra})
            return response

        return run

    return wrap


def _log_rpc(started: float, code: grpc.StatusCode, fields: dict, error: Exception | None = None) -> None:
    latency_ms = round((time.perf_counter() - started) * 1000.0, 2)
    log_event(
        "rpc",
        level=logging.ERROR if error is not None else logging.INFO,
        exc_info=(type(error), error, error.__traceback__) if error is not None else None,
        code=code.name,
        latency_ms=latency_ms,
        **fields,
    )


class LivenessServicer(liveness_pb2_grpc.LivenessServiceServicer):
    """Thin adapter from the gRPC contract to a LivenessPipeline (None while loading)."""

    def __init__(self, pipeline: LivenessPipeline | None = None):
        self.pipeline = pipeline

    def _pipeline(self) -> LivenessPipeline:
        if self.pipeline is None:
            raise ServiceNotReadyError("the service is not ready: models are loading or it is shutting down")
        return self.pipeline

    @_unary("CheckQuality")
    def CheckQuality(self, request: pb.CheckQualityRequest, context):
        _check_request_id(request.request_id)
        result = self._pipeline().check_quality(request.image)
        response = pb.CheckQualityResponse(quality=quality_report(result), request_id=request.request_id)
        return response, {"decision": "passed" if result.passed else "quality_failed",
                          "reasons": [r.value for r in result.reasons]}

    @_unary("Verify")
    def Verify(self, request: pb.VerifyRequest, context):
        response = self._verify(request)
        return response, _verify_fields(response)

    def VerifyStream(self, request_iterator: Iterator[pb.VerifyStreamRequest], context) -> Iterator[pb.VerifyStreamResponse]:
        started = time.perf_counter()
        counts: dict[str, int] = {}
        fields: dict = {"method": "VerifyStream"}
        try:
            for item in request_iterator:
                request = item.request
                request_id = request.request_id[:MAX_REQUEST_ID_LENGTH]
                try:
                    response = self._verify(request)
                except EkycError as error:
                    code, message = status_for(error)
                    counts["error"] = counts.get("error", 0) + 1
                    yield pb.VerifyStreamResponse(
                        request_id=request_id, error=pb.ItemError(code=code.value[0], message=message)
                    )
                    continue
                decision = decision_of(response)
                counts[decision] = counts.get(decision, 0) + 1
                yield pb.VerifyStreamResponse(request_id=request_id, result=response)
        except Exception as error:  # noqa: BLE001
            code, message = status_for(error)
            _log_rpc(started, code, {**fields, "items": counts}, error if code == grpc.StatusCode.INTERNAL else None)
            context.abort(code, message)
        code = grpc.StatusCode.CANCELLED if not context.is_active() else grpc.StatusCode.OK
        _log_rpc(started, code, {**fields, "items": counts, "model_version": self._version()})

    def _verify(self, request: pb.VerifyRequest) -> pb.VerifyResponse:
        _check_request_id(request.request_id)
        enable = request.enable_quality_checks if request.HasField("enable_quality_checks") else True
        verdict = self._pipeline().verify(request.image, enable_quality_checks=enable)
        return verify_response(verdict, request.request_id)

    def _version(self) -> str:
        return self.pipeline.model_version if self.pipeline is not None else ""


def _verify_fields(response: pb.VerifyResponse) -> dict:
    fields = {"decision": decision_of(response), "model_version": response.model_version}
    if response.quality.reasons:
        fields["reasons"] = [pb.QualityReason.Name(r).removeprefix("QUALITY_REASON_") for r in response.quality.reasons]
    return fields
