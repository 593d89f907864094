"""The gRPC adapter of the LivenessService: each RPC unpacks the proto, calls the service
layer (server/service.py), packs the reply; a failed call aborts in one place, ``_abort``.

Validation, rate limits, compute, logs, metrics and the error -> status mapping all live in
the service layer, so another transport reuses them as they are.
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable, Iterator, NoReturn

import grpc

from ekyc.server import convert
from ekyc.server.errors import CallFailed
from ekyc.server.service import CallContext, LivenessService
from ekyc.v1 import liveness_pb2 as pb
from ekyc.v1 import liveness_pb2_grpc


def client_identity(context: grpc.ServicerContext) -> str:
    """The API key's digest when the client sent one, else its IP address (no port)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return "key:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    peer = context.peer() or ""
    if peer.startswith(("ipv4:", "ipv6:")):
        address = peer.split(":", 1)[1]
        host = address.rsplit(":", 1)[0]
        return "ip:" + host.strip("[]")
    return "peer:" + peer


def _deadline(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline as a monotonic instant; None when it set none (gRPC then
    reports an effectively infinite time remaining)."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e6:
        return None
    return time.monotonic() + remaining


def _abort(context: grpc.ServicerContext, failure: CallFailed) -> NoReturn:
    context.abort(failure.code, failure.message)


class LivenessServicer(liveness_pb2_grpc.LivenessServiceServicer):
    """gRPC <-> LivenessService."""

    def __init__(self, service: LivenessService):
        self.service = service

    def CheckQuality(self, request: pb.CheckQualityRequest, context: grpc.ServicerContext):
        return self._unary("CheckQuality", request, context, lambda call: convert.check_quality_response(
            self.service.check_quality(convert.quality_input(request), call), request.request_id))

    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext):
        return self._unary("Verify", request, context, lambda call: convert.verify_response(
            self.service.verify(convert.verify_input(request), call), request.request_id))

    def CompareFaces(self, request: pb.CompareFacesRequest, context: grpc.ServicerContext):
        return self._unary("CompareFaces", request, context, lambda call: convert.compare_response(
            self.service.compare_faces(convert.compare_input(request), call), request.request_id))

    def VerifyStream(
        self, request_iterator: Iterator[pb.VerifyStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.VerifyStreamResponse]:
        call = self._call_context(context)
        context.add_callback(call.cancelled.set)
        items = (convert.stream_item(request) for request in request_iterator)
        try:
            for answer in self.service.verify_stream(items, call):
                yield convert.stream_response(answer)
        except CallFailed as failure:
            _abort(context, failure)

    def _unary(self, method: str, request, context: grpc.ServicerContext, serve: Callable[[CallContext], object]):
        call = self._call_context(context)
        try:
            return serve(call)
        except CallFailed as failure:
            failed = failure
        except Exception as error:  # noqa: BLE001 - a malformed message, or a bug in unpacking or packing
            failed = self.service.reject(method, error, request.request_id, call)
        _abort(context, failed)

    def _call_context(self, context: grpc.ServicerContext) -> CallContext:
        client = client_identity(context) if self.service.identifies_clients else ""
        # The HTTP gateway calls these methods too, with a context that names its transport.
        transport = getattr(context, "transport", "grpc")
        return CallContext(client=client, deadline=_deadline(context), transport=transport)


def _tolerant(message_type):
    """A deserializer that never raises: gRPC would answer INTERNAL; we answer INVALID_ARGUMENT."""

    def deserialize(data: bytes):
        try:
            return message_type.FromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
            return convert.MalformedRequest(message_type.DESCRIPTOR.full_name)

    return deserialize


def add_to_server(servicer: LivenessServicer, server: grpc.Server) -> None:
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
        "CompareFaces": grpc.unary_unary_rpc_method_handler(
            servicer.CompareFaces,
            request_deserializer=_tolerant(pb.CompareFacesRequest),
            response_serializer=pb.CompareFacesResponse.SerializeToString,
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
