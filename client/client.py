"""LivenessClient: a context manager with one method per RPC, raising LivenessError."""

from __future__ import annotations

from typing import Iterable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ekyc.v1 import liveness_pb2 as pb
from ekyc.v1 import liveness_pb2_grpc

DEFAULT_TARGET = "localhost:50051"
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class LivenessError(Exception):
    """An RPC failed. ``code`` is the grpc.StatusCode, ``details`` the server's reason."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "LivenessError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")


class LivenessClient:
    """Calls an ekyc-server. Use as ``with LivenessClient("host:port") as client: ...``."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: float | None = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        channel: grpc.Channel | None = None,
    ):
        self.target = target
        self.timeout = timeout
        self._channel = channel or grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._stub = liveness_pb2_grpc.LivenessServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def check_quality(self, image: bytes, request_id: str = "") -> pb.CheckQualityResponse:
        """Run the server's quality gate on encoded image bytes."""
        request = pb.CheckQualityRequest(image=image, request_id=request_id)
        return self._call(self._stub.CheckQuality, request)

    def verify(self, image: bytes, enable_quality_checks: bool = True, request_id: str = "") -> pb.VerifyResponse:
        """Quality gate (unless disabled) and liveness decision for encoded image bytes."""
        request = pb.VerifyRequest(image=image, enable_quality_checks=enable_quality_checks, request_id=request_id)
        return self._call(self._stub.Verify, request)

    def verify_stream(
        self, requests: Iterable[pb.VerifyRequest], timeout: float | None = None
    ) -> Iterator[pb.VerifyStreamResponse]:
        """Stream VerifyRequests; yields one response per request, in order, as they arrive."""
        items = (pb.VerifyStreamRequest(request=request) for request in requests)
        try:
            yield from self._stub.VerifyStream(items, timeout=timeout)
        except grpc.RpcError as error:
            raise LivenessError.from_rpc_error(error) from None

    def health(self, service: str = "") -> str:
        """The server's health status name: SERVING, NOT_SERVING, SERVICE_UNKNOWN ..."""
        response = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise LivenessError.from_rpc_error(error) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "LivenessClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
