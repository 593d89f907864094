"""The LivenessService servicer: each RPC unpacks the proto, calls the pipeline, packs the reply.

Domain errors become gRPC status codes in one place, ``status_for``; clients never see a
stack trace. All image work runs on the shared ComputePool.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Iterator

import grpc

from ekyc.quality.errors import EkycError, InvalidImageError
from ekyc.quality.gate import QualityResult
from ekyc.server.compute import ComputePool, DeadlineExpiredError, OverloadedError
from ekyc.server.limits import RateLimitedError, RateLimiter, client_identity
from ekyc.server.logs import log_event
from ekyc.server.metrics import MetricsAggregator
from ekyc.server.model import UnknownProfileError
from ekyc.server.pipeline import LivenessPipeline, Verdict
from ekyc.v1 import liveness_pb2 as pb
from ekyc.v1 import liveness_pb2_grpc

MAX_REQUEST_ID_LENGTH = 128
_POLL_S = 0.2
_TOO_LONG = object()


class ServiceNotReadyError(EkycError):
    """The models are still loading, or the server is shutting down."""


class InvalidRequestError(EkycError):
    """A request field other than the image is unusable."""


class StreamTooLongError(EkycError):
    """A VerifyStream carried more items than the configured limit."""


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message for an exception: the one mapping."""
    if isinstance(error, (InvalidImageError, InvalidRequestError, UnknownProfileError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, (OverloadedError, RateLimitedError, StreamTooLongError)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
    if isinstance(error, DeadlineExpiredError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(error)
    if isinstance(error, ServiceNotReadyError):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    return grpc.StatusCode.INTERNAL, "internal error; the server log has the details"


def quality_report(result: QualityResult) -> pb.QualityReport:
    """The proto QualityReport; every QualityScores field maps to the proto field of its name."""
    report = pb.QualityReport(
        passed=result.passed,
        reasons=[pb.QualityReason.Value(f"QUALITY_REASON_{reason.value}") for reason in result.reasons],
        scores=pb.QualityScores(**dataclasses.asdict(result.scores)),
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
        profile=verdict.profile,
        decision=_DECISIONS.get(verdict.decision, pb.LIVENESS_DECISION_UNSPECIFIED),
    )


_DECISIONS = {
    "live": pb.LIVENESS_DECISION_LIVE,
    "spoof": pb.LIVENESS_DECISION_SPOOF,
    "uncertain": pb.LIVENESS_DECISION_UNCERTAIN,
}


def decision_of(response: pb.VerifyResponse) -> str:
    """quality_failed, live, spoof or uncertain."""
    if response.status == pb.VERIFY_STATUS_QUALITY_FAILED:
        return "quality_failed"
    if response.decision == pb.LIVENESS_DECISION_UNCERTAIN:
        return "uncertain"
    return "live" if response.is_live else "spoof"


class MalformedRequest:
    """Stands in for a request whose bytes are not a valid protobuf message."""

    request_id = ""

    def __init__(self, type_name: str):
        self.type_name = type_name


def _tolerant(message_type):
    """A deserializer that never raises: gRPC would answer INTERNAL; we answer INVALID_ARGUMENT."""

    def deserialize(data: bytes):
        try:
            return message_type.FromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
            return MalformedRequest(message_type.DESCRIPTOR.full_name)

    return deserialize


def _check_well_formed(request) -> None:
    if isinstance(request, MalformedRequest):
        raise InvalidRequestError(f"the request is not a valid {request.type_name} message")


def add_to_server(servicer: "LivenessServicer", server: grpc.Server) -> None:
    """Register the servicer like the generated add_LivenessServiceServicer_to_server, but with
    deserializers that turn malformed messages into INVALID_ARGUMENT instead of INTERNAL."""
    handlers = {
        "CheckQuality": grpc.unary_unary_rpc_method_handler(
            servicer.CheckQuality,
            request_deserializer=_tolerant(pb.CheckQualityRequest),
            response_serializer=pb.CheckQualityResponse.SerializeToString,
        ),
        "Verify": grpc.unary_unary_rpc_method_handler(
            servicer.Verify,
            request_deserializer=_tolerant(pb.VerifyRequest),
            response_serializer=pb.VerifyResponse.SerializeToString,
        ),
        "VerifyStream": grpc.stream_stream_rpc_method_handler(
            servicer.VerifyStream,
            request_deserializer=_tolerant(pb.VerifyStreamRequest),
            response_serializer=pb.VerifyStreamResponse.SerializeToString,
        ),
    }
    service = pb.DESCRIPTOR.services_by_name["LivenessService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


def _check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidRequestError(f"request_id is longer than {MAX_REQUEST_ID_LENGTH} characters")


def _deadline(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline as a monotonic instant; None when it set none (gRPC then
    reports an effectively infinite time remaining)."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e6:
        return None
    return time.monotonic() + remaining


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
                internal = error if code == grpc.StatusCode.INTERNAL else None
                latency_ms = _log_rpc(started, code, {**fields, "error": message}, internal)
                self._observe(method, code, latency_ms)
                context.abort(code, message)
            latency_ms = _log_rpc(started, grpc.StatusCode.OK, {**fields, **extra})
            # The score goes to the aggregated metrics only, never into a line with the request id.
            score = response.liveness_score if _was_scored(response) else None
            self._observe(method, grpc.StatusCode.OK, latency_ms, extra.get("decision"), extra.get("reasons", ()),
                          extra.get("model_version"), score)
            return response

        return run

    return wrap


def _was_scored(response) -> bool:
    return isinstance(response, pb.VerifyResponse) and response.status == pb.VERIFY_STATUS_SUCCESS


def _log_rpc(started: float, code: grpc.StatusCode, fields: dict, error: BaseException | None = None) -> float:
    """Write the RPC's one JSON log line; returns its latency in ms."""
    latency_ms = round((time.perf_counter() - started) * 1000.0, 2)
    log_event(
        "rpc",
        level=logging.ERROR if error is not None else logging.INFO,
        exc_info=(type(error), error, error.__traceback__) if error is not None else None,
        code=code.name,
        latency_ms=latency_ms,
        **fields,
    )
    return latency_ms


class LivenessServicer(liveness_pb2_grpc.LivenessServiceServicer):
    """Thin adapter from the gRPC contract to a LivenessPipeline (None while loading)."""

    def __init__(
        self,
        compute: ComputePool,
        stream_window: int,
        pipeline: LivenessPipeline | None = None,
        limiter: RateLimiter | None = None,
        max_stream_items: int = 0,
        metrics: MetricsAggregator | None = None,
    ):
        self.compute = compute
        self.stream_window = max(1, stream_window)
        self.pipeline = pipeline
        self.limiter = limiter or RateLimiter(0, 1)
        self.max_stream_items = max_stream_items
        self.metrics = metrics

    def _rate_limit(self, context: grpc.ServicerContext) -> None:
        # Identifying the client hashes its key: skip it on the hot path when limits are off.
        if self.limiter.enabled:
            self.limiter.check(client_identity(context))

    def _observe(self, method: str, code: grpc.StatusCode, latency_ms: float | None = None, decision=None,
                 reasons=(), model_version=None, score=None) -> None:
        if self.metrics is not None:
            self.metrics.observe(method, code.name, latency_ms, decision, reasons, model_version, score)

    def _pipeline(self) -> LivenessPipeline:
        if self.pipeline is None:
            raise ServiceNotReadyError("the service is not ready: models are loading or it is shutting down")
        return self.pipeline

    @_unary("CheckQuality")
    def CheckQuality(self, request: pb.CheckQualityRequest, context):
        _check_well_formed(request)
        _check_request_id(request.request_id)
        pipeline = self._pipeline()
        self._rate_limit(context)
        result = self.compute.run(pipeline.check_quality, request.image, deadline=_deadline(context))
        response = pb.CheckQualityResponse(quality=quality_report(result), request_id=request.request_id)
        return response, {
            "decision": "passed" if result.passed else "quality_failed",
            "reasons": [r.value for r in result.reasons],
        }

    @_unary("Verify")
    def Verify(self, request: pb.VerifyRequest, context):
        _check_well_formed(request)
        _check_request_id(request.request_id)
        pipeline = self._pipeline()
        self._rate_limit(context)
        pipeline.profile(request.profile)  # an unknown profile fails before any work
        verdict = self.compute.run(
            pipeline.verify, request.image, _quality_enabled(request), request.profile, deadline=_deadline(context)
        )
        response = verify_response(verdict, request.request_id)
        return response, _verify_fields(response)

    def VerifyStream(
        self, request_iterator: Iterator[pb.VerifyStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.VerifyStreamResponse]:
        """Items run in parallel on the compute pool, at most ``stream_window`` at once, and are
        answered in request order. A reader thread admits items only while the window has room,
        so a flood of requests or a client that stops reading holds at most a window of images."""
        started = time.perf_counter()
        counts: dict[str, int] = {}
        try:
            pipeline = self._pipeline()
        except ServiceNotReadyError as error:
            code, message = status_for(error)
            _log_rpc(started, code, {"method": "VerifyStream", "error": message})
            context.abort(code, message)
        # ``window`` counts items admitted and not yet answered: the reader takes a permit
        # before reading the next request, the writer returns it once the answer is built.
        window = threading.BoundedSemaphore(self.stream_window)
        pending: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()
        context.add_callback(stop.set)
        client = client_identity(context) if self.limiter.enabled else ""
        reader = threading.Thread(
            target=self._admit_items, args=(request_iterator, pipeline, pending, window, stop, context, client),
            daemon=True, name="stream-reader",
        )
        reader.start()
        final_code: grpc.StatusCode | None = None
        try:
            while True:
                item = _get(pending, stop)
                if item is None:
                    break
                if item is _TOO_LONG:
                    error = StreamTooLongError(
                        f"a stream may carry at most {self.max_stream_items} items; open a new stream for the rest"
                    )
                    final_code, message = status_for(error)
                    context.abort(final_code, message)
                request_id, outcome = item
                response = self._stream_response(request_id, outcome, stop)
                window.release()
                if response is None:
                    break
                kind = decision_of(response.result) if response.HasField("result") else "error"
                counts[kind] = counts.get(kind, 0) + 1
                self._observe_item(response)
                yield response
        finally:
            stop.set()
            _cancel_pending(pending)
            if final_code is None:
                final_code = grpc.StatusCode.OK if context.is_active() else grpc.StatusCode.CANCELLED
            _log_rpc(started, final_code, {"method": "VerifyStream", "items": counts,
                                           "model_version": pipeline.model_version})

    def _observe_item(self, response: pb.VerifyStreamResponse) -> None:
        if self.metrics is None:
            return
        if response.HasField("error"):
            code = next((c for c in grpc.StatusCode if c.value[0] == response.error.code), grpc.StatusCode.UNKNOWN)
            self._observe("VerifyStream", code)
            return
        result = response.result
        reasons = [pb.QualityReason.Name(r).removeprefix("QUALITY_REASON_") for r in result.quality.reasons]
        self._observe("VerifyStream", grpc.StatusCode.OK, None, decision_of(result), reasons, result.model_version,
                      result.liveness_score if _was_scored(result) else None)

    def _admit_items(self, request_iterator, pipeline, pending, window, stop: threading.Event, context, client) -> None:
        """Reader thread: take a window permit, read one request, submit it to the pool and
        queue (request_id, future or error) for the writer. ``_TOO_LONG`` ends the stream."""
        count = 0
        try:
            while _acquire(window, stop):
                try:
                    item = next(request_iterator)
                except StopIteration:
                    window.release()
                    return
                count += 1
                if self.max_stream_items and count > self.max_stream_items:
                    pending.put(_TOO_LONG)
                    return
                request = item if isinstance(item, MalformedRequest) else item.request
                request_id = request.request_id[:MAX_REQUEST_ID_LENGTH]
                outcome: Future | EkycError
                try:
                    _check_well_formed(request)
                    _check_request_id(request.request_id)
                    self.limiter.check(client)
                    outcome = self._submit_waiting(pipeline, request, stop, _deadline(context))
                except EkycError as error:
                    outcome = error
                if outcome is None:
                    return
                pending.put((request_id, outcome))
        except Exception:  # noqa: BLE001 - the client went away mid-stream; nothing to answer
            stop.set()
        finally:
            pending.put(None)

    def _submit_waiting(self, pipeline, request, stop: threading.Event, deadline):
        """Wait for a pool place (backpressure), giving up when the stream ends."""
        while not stop.is_set():
            try:
                return self.compute.submit(
                    pipeline.verify, request.image, _quality_enabled(request), request.profile,
                    deadline=deadline, wait=_POLL_S,
                )
            except OverloadedError:
                continue
        return None

    @staticmethod
    def _stream_response(request_id: str, outcome, stop: threading.Event) -> pb.VerifyStreamResponse | None:
        if isinstance(outcome, Future):
            while True:
                try:
                    verdict = outcome.result(timeout=_POLL_S)
                    return pb.VerifyStreamResponse(request_id=request_id, result=verify_response(verdict, request_id))
                except TimeoutError:
                    if stop.is_set():
                        outcome.cancel()
                        return None
                except Exception as error:  # noqa: BLE001 - mapped to this item's error
                    outcome = error
                    break
        code, message = status_for(outcome)
        if code == grpc.StatusCode.INTERNAL:
            log_event("stream_item_failed", level=logging.ERROR, request_id=request_id,
                      exc_info=(type(outcome), outcome, outcome.__traceback__))
        return pb.VerifyStreamResponse(request_id=request_id, error=pb.ItemError(code=code.value[0], message=message))


def _quality_enabled(request: pb.VerifyRequest) -> bool:
    return request.enable_quality_checks if request.HasField("enable_quality_checks") else True


def _get(pending, stop: threading.Event):
    while True:
        try:
            return pending.get(timeout=_POLL_S)
        except queue.Empty:
            if stop.is_set():
                return None


def _acquire(window: threading.BoundedSemaphore, stop: threading.Event) -> bool:
    while not stop.is_set():
        if window.acquire(timeout=_POLL_S):
            return True
    return False


def _cancel_pending(pending) -> None:
    while True:
        try:
            item = pending.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, tuple) and isinstance(item[1], Future):
            item[1].cancel()


def _verify_fields(response: pb.VerifyResponse) -> dict:
    fields = {"decision": decision_of(response), "model_version": response.model_version, "profile": response.profile}
    if response.quality.reasons:
        fields["reasons"] = [pb.QualityReason.Name(r).removeprefix("QUALITY_REASON_") for r in response.quality.reasons]
    return fields
