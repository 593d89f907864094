"""The service layer: what every RPC does whatever the transport (gRPC today, HTTP/JSON next).

For each call: validate the request, rate-limit the client the adapter identified, run the
pipeline on the ComputePool within the caller's deadline, write the call's one log line and
count it in the metrics, both from the domain result (never from a reply message). A failure
is logged and counted here, then raised as ``CallFailed`` (a gRPC status code and a message,
from ``ekyc.server.errors.status_for``) for the adapter to send.

Adapters (server/servicer.py) only turn their messages into the inputs below, call
``check_quality`` / ``verify`` / ``verify_stream`` / ``compare_faces`` with a ``CallContext``, and turn the
results into replies.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

import grpc

from ekyc.errors import EkycError
from ekyc.quality.rules import QualityResult
from ekyc.server.compute import ComputePool
from ekyc.server.errors import CallFailed, InvalidRequestError, ServiceNotReadyError, status_for
from ekyc.server.limits import RateLimiter
from ekyc.server.logs import log_event
from ekyc.server.metrics import MetricsAggregator
from ekyc.server.ordered import OrderedWindow, StreamTooLongError
from ekyc.server.pipeline import Comparison, LivenessPipeline, MatchResult, Verdict

MAX_REQUEST_ID_LENGTH = 128
T = TypeVar("T")


@dataclass(frozen=True)
class CallContext:
    """What the adapter knows about one call."""

    client: str = ""  # the rate limiter's key for the caller (API key digest, IP); "" when limits are off
    deadline: float | None = None  # a time.monotonic() instant; None: the caller set none
    cancelled: threading.Event = field(default_factory=threading.Event)  # set by the adapter when the caller goes away
    transport: str = "grpc"  # how the call came: "grpc" or "http"; in the log line


@dataclass(frozen=True)
class QualityInput:
    """A CheckQuality request."""

    image: bytes
    request_id: str = ""


@dataclass(frozen=True)
class VerifyInput:
    """A Verify request (also one VerifyStream item)."""

    image: bytes
    request_id: str = ""
    enable_quality_checks: bool = True
    profile: str = ""
    reference_image: bytes = b""  # empty: no face match
    match_profile: str = ""


@dataclass(frozen=True)
class CompareInput:
    """A CompareFaces request."""

    image: bytes
    reference_image: bytes
    request_id: str = ""
    profile: str = ""


@dataclass(frozen=True)
class StreamAnswer:
    """One VerifyStream item's answer: its verdict, or the error only this item failed with."""

    request_id: str
    verdict: Verdict | None = None
    error: CallFailed | None = None


@dataclass(frozen=True)
class _Observation:
    """What the log line and the metrics say about a successful call."""

    decision: str | None = None
    reasons: tuple[str, ...] = ()
    model_version: str | None = None
    score: float | None = None  # metrics only: never in a line with the request id
    log: dict = field(default_factory=dict)


def _observe_quality(result: QualityResult) -> _Observation:
    decision = "passed" if result.passed else "quality_failed"
    reasons = tuple(reason.value for reason in result.reasons)
    return _Observation(decision, reasons, log={"decision": decision, "reasons": list(reasons)})


def _match_log(match: MatchResult) -> dict:
    """The match's log fields: its outcome, profile, model and the reference's reasons; never
    the similarity (a score about a person, next to the request id)."""
    log = {"match": match.outcome, "match_profile": match.profile, "matcher_version": match.model_version}
    if match.reference_quality.reasons:
        log["reference_reasons"] = [reason.value for reason in match.reference_quality.reasons]
    return log


def _observe_verdict(verdict: Verdict) -> _Observation:
    reasons = tuple(reason.value for reason in verdict.quality.reasons)
    log = {"decision": verdict.outcome, "model_version": verdict.model_version, "profile": verdict.profile}
    if reasons:
        log["reasons"] = list(reasons)
    if verdict.match is not None:
        log.update(_match_log(verdict.match))
    score = None if verdict.quality_failed else verdict.liveness_score
    return _Observation(verdict.outcome, reasons, verdict.model_version, score, log)


def _observe_comparison(comparison: Comparison) -> _Observation:
    match = comparison.match
    reasons = tuple(reason.value for reason in comparison.quality.reasons + match.reference_quality.reasons)
    log = {"decision": match.outcome, **_match_log(match)}
    if comparison.quality.reasons:
        log["reasons"] = [reason.value for reason in comparison.quality.reasons]
    return _Observation(match.outcome, reasons, match.model_version, None, log)


def _check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidRequestError(f"request_id is longer than {MAX_REQUEST_ID_LENGTH} characters")


def _check_profiles(pipeline: LivenessPipeline, request: VerifyInput) -> None:
    """An unknown profile, or a reference on a server without matching, fails before any work."""
    pipeline.profile(request.profile)
    if request.reference_image:
        pipeline.match_profile(request.match_profile)


def _verify_work(pipeline: LivenessPipeline, request: VerifyInput) -> Callable[[], Verdict]:
    return functools.partial(pipeline.verify, request.image, request.enable_quality_checks, request.profile,
                             request.reference_image, request.match_profile)


class LivenessService:
    """Validation, rate limits, compute, logs and metrics around a LivenessPipeline (None
    while the models load or after shutdown: calls then fail UNAVAILABLE). Thread-safe."""

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

    @property
    def identifies_clients(self) -> bool:
        """Whether calls need ``CallContext.client`` (identifying a client costs a hash: skip it
        when rate limits are off)."""
        return self.limiter.enabled

    # --- unary calls --------------------------------------------------------------------

    def check_quality(self, request: QualityInput, call: CallContext) -> QualityResult:
        """Decode the image and run the quality gate."""

        def work() -> tuple[QualityResult, _Observation]:
            _check_request_id(request.request_id)
            pipeline = self._ready()
            self._rate_limit(call.client)
            result = self.compute.run(pipeline.check_quality, request.image, deadline=call.deadline)
            return result, _observe_quality(result)

        return self._unary("CheckQuality", request.request_id, call, work)

    def verify(self, request: VerifyInput, call: CallContext) -> Verdict:
        """Quality gate (unless disabled) and liveness decision at the request's profile; with
        a reference image, the face match at its match profile too."""

        def work() -> tuple[Verdict, _Observation]:
            _check_request_id(request.request_id)
            pipeline = self._ready()
            self._rate_limit(call.client)
            _check_profiles(pipeline, request)  # an unknown profile fails before any work
            verdict = self.compute.run(_verify_work(pipeline, request), deadline=call.deadline)
            return verdict, _observe_verdict(verdict)

        return self._unary("Verify", request.request_id, call, work)

    def compare_faces(self, request: CompareInput, call: CallContext) -> Comparison:
        """Whether the faces of two images are one person (no liveness, no selfie gate)."""

        def work() -> tuple[Comparison, _Observation]:
            _check_request_id(request.request_id)
            pipeline = self._ready()
            self._rate_limit(call.client)
            pipeline.match_profile(request.profile)
            comparison = self.compute.run(pipeline.compare, request.image, request.reference_image, request.profile,
                                          deadline=call.deadline)
            return comparison, _observe_comparison(comparison)

        return self._unary("CompareFaces", request.request_id, call, work)

    def reject(self, method: str, error: BaseException, request_id: str = "",
               call: CallContext | None = None) -> CallFailed:
        """Log and count a call the adapter could not turn into an input (a malformed message,
        or a failure of its own); returns the CallFailed to send."""
        fields = {"transport": (call or CallContext()).transport, "request_id": request_id[:MAX_REQUEST_ID_LENGTH]}
        return self._failed(method, time.perf_counter(), fields, error)

    def _unary(self, method: str, request_id: str, call: CallContext,
               work: Callable[[], tuple[T, _Observation]]) -> T:
        started = time.perf_counter()
        fields = {"transport": call.transport, "request_id": request_id[:MAX_REQUEST_ID_LENGTH]}
        try:
            result, seen = work()
        except Exception as error:  # noqa: BLE001 - every error becomes a status
            raise self._failed(method, started, fields, error) from None
        latency_ms = _log_call(method, started, grpc.StatusCode.OK, {**fields, **seen.log})
        self._observe(method, grpc.StatusCode.OK, latency_ms, seen)
        return result

    def _failed(self, method: str, started: float, fields: dict, error: BaseException) -> CallFailed:
        code, message = status_for(error)
        internal = error if code == grpc.StatusCode.INTERNAL else None
        latency_ms = _log_call(method, started, code, {**fields, "error": message}, internal)
        self._observe(method, code, latency_ms)
        return CallFailed(code, message)

    # --- the stream ----------------------------------------------------------------------

    def verify_stream(
        self, requests: Iterable[VerifyInput | EkycError], call: CallContext
    ) -> Iterator[StreamAnswer]:
        """Verify each request, at most ``stream_window`` at once on the compute pool, and
        answer in request order. An item may be an error (e.g. a malformed message): it is
        answered as that item's error. A failure of the whole stream (not ready, too many
        items) raises CallFailed after the earlier items' answers."""
        method = "VerifyStream"
        started = time.perf_counter()
        try:
            pipeline = self._ready()
        except ServiceNotReadyError as error:
            raise self._failed(method, started, {"transport": call.transport}, error) from None
        counts: dict[str, int] = {}
        window = OrderedWindow(self.compute, self.stream_window, stop=call.cancelled, deadline=call.deadline,
                               max_items=self.max_stream_items)
        outcomes = window.run(iter(requests), functools.partial(self._prepare_item, pipeline, call.client))
        final_code = grpc.StatusCode.CANCELLED  # unless every item was answered (or the stream failed)
        try:
            for request, outcome in outcomes:
                answer = self._stream_answer(request, outcome)
                kind = answer.verdict.outcome if answer.verdict is not None else "error"
                counts[kind] = counts.get(kind, 0) + 1
                yield answer
            if window.completed:
                final_code = grpc.StatusCode.OK
        except StreamTooLongError as error:
            final_code, message = status_for(error)
            self._observe(method, final_code)
            raise CallFailed(final_code, message) from None
        finally:
            outcomes.close()
            _log_call(method, started, final_code, {"transport": call.transport, "items": counts,
                                                    "model_version": pipeline.model_version})

    def _prepare_item(self, pipeline: LivenessPipeline, client: str, request: VerifyInput | EkycError):
        """In the stream's reader thread: validate an item, return its work."""
        if isinstance(request, BaseException):
            raise request
        _check_request_id(request.request_id)
        _check_profiles(pipeline, request)
        self.limiter.check(client)
        return _verify_work(pipeline, request)

    def _stream_answer(self, request: VerifyInput | EkycError, outcome) -> StreamAnswer:
        request_id = request.request_id[:MAX_REQUEST_ID_LENGTH] if isinstance(request, VerifyInput) else ""
        if isinstance(outcome, Verdict):
            self._observe("VerifyStream", grpc.StatusCode.OK, None, _observe_verdict(outcome))
            return StreamAnswer(request_id, verdict=outcome)
        code, message = status_for(outcome)
        if code == grpc.StatusCode.INTERNAL:
            log_event("stream_item_failed", level=logging.ERROR, request_id=request_id,
                      exc_info=(type(outcome), outcome, outcome.__traceback__))
        self._observe("VerifyStream", code)
        return StreamAnswer(request_id, error=CallFailed(code, message))

    # --- helpers ------------------------------------------------------------------------

    def _ready(self) -> LivenessPipeline:
        pipeline = self.pipeline
        if pipeline is None:
            raise ServiceNotReadyError("the service is not ready: models are loading or it is shutting down")
        return pipeline

    def _rate_limit(self, client: str) -> None:
        if self.limiter.enabled:
            self.limiter.check(client)

    def _observe(self, method: str, code: grpc.StatusCode, latency_ms: float | None = None,
                 seen: _Observation | None = None) -> None:
        if self.metrics is None:
            return
        seen = seen or _Observation()
        self.metrics.observe(method, code.name, latency_ms, seen.decision, seen.reasons, seen.model_version, seen.score)


def _log_call(method: str, started: float, code: grpc.StatusCode, fields: dict,
              error: BaseException | None = None) -> float:
    """Write the call's one JSON log line; returns its latency in ms."""
    latency_ms = round((time.perf_counter() - started) * 1000.0, 2)
    log_event(
        "rpc",
        level=logging.ERROR if error is not None else logging.INFO,
        exc_info=(type(error), error, error.__traceback__) if error is not None else None,
        method=method,
        code=code.name,
        latency_ms=latency_ms,
        **fields,
    )
    return latency_ms
