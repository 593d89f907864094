"""The service's own errors, and the one mapping from errors to what a caller sees.

``status_for`` is the only place that turns an exception into a status: the service layer
calls it once per failed call (or stream item) and hands adapters a ``CallFailed`` with the
gRPC status code and message. The gRPC servicer aborts with them; an HTTP adapter maps the
gRPC code to an HTTP status. Anything that is not a known ``EkycError`` is INTERNAL and its
details stay in the server log.
"""

from __future__ import annotations

import grpc

from ekyc.errors import EkycError
from ekyc.models.face_match import UnknownMatchProfileError
from ekyc.models.liveness import UnknownProfileError
from ekyc.quality.errors import InvalidImageError
from ekyc.server.compute import DeadlineExpiredError, OverloadedError
from ekyc.server.limits import RateLimitedError
from ekyc.server.ordered import StreamTooLongError

INTERNAL_MESSAGE = "internal error; the server log has the details"


class ServiceNotReadyError(EkycError):
    """The models are still loading, or the server is shutting down."""


class MatcherDisabledError(EkycError):
    """A request needs face matching (a reference image, CompareFaces), which this server's
    configuration turned off (matcher.enabled = false)."""


class InvalidRequestError(EkycError):
    """A request field other than the image is unusable, or the message itself is malformed."""


class CallFailed(Exception):
    """A call (or one stream item) failed: ``code`` (a grpc.StatusCode) and ``message`` are
    what the caller is told. Raised by the service layer after it logged and counted the call."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message for an exception: the one mapping."""
    if isinstance(error, (InvalidImageError, InvalidRequestError, UnknownProfileError, UnknownMatchProfileError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, MatcherDisabledError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(error)
    if isinstance(error, (OverloadedError, RateLimitedError, StreamTooLongError)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
    if isinstance(error, DeadlineExpiredError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(error)
    if isinstance(error, ServiceNotReadyError):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
