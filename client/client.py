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


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise LivenessError(grpc.StatusCode.INVALID_ARGUMENT, f"cannot read {what} {path}: {exc.strerror or exc}") from None


class LivenessClient:
    """Calls an ekyc-server. Use as ``with LivenessClient("host:port") as client: ...``.

    ``tls_ca`` (PEM) switches to TLS; ``tls_cert``/``tls_key`` add a client certificate (mTLS);
    ``api_key`` is sent as ``authorization: Bearer <key>`` on every call.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: float | None = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        channel: grpc.Channel | None = None,
        *,
        api_key: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
        own_connection: bool = False,
    ):
        """``own_connection``: this channel opens its own connection instead of sharing one with
        other channels to the same target (gRPC's default), so that N clients are N connections
        a load balancer can place on N backends."""
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if own_connection:
            options.append(("grpc.use_local_subchannel_pool", 1))
        if channel is None and (tls_ca or tls_cert):
            if bool(tls_cert) != bool(tls_key):
                raise LivenessError(grpc.StatusCode.INVALID_ARGUMENT, "a client certificate needs its key, and a key its certificate")
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca, "CA file"),
                private_key=_read(tls_key, "client key"),
                certificate_chain=_read(tls_cert, "client certificate"),
            )
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            channel = grpc.secure_channel(target, credentials, options=options)
        self._channel = channel or grpc.insecure_channel(target, options=options)
        self._stub = liveness_pb2_grpc.LivenessServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def check_quality(self, image: bytes, request_id: str = "") -> pb.CheckQualityResponse:
        """Run the server's quality gate on encoded image bytes."""
        request = pb.CheckQualityRequest(image=image, request_id=request_id)
        return self._call(self._stub.CheckQuality, request)

    def verify(
        self, image: bytes, enable_quality_checks: bool = True, request_id: str = "", profile: str = "",
        reference_image: bytes | None = None, match_profile: str = "",
    ) -> pb.VerifyResponse:
        """Quality gate (unless disabled) and liveness decision for encoded image bytes; with
        ``reference_image`` (the ID document's portrait), also whether the selfie is its holder
        (``response.match``).

        ``profile`` picks the model's operating point (strict, balanced, lenient), ``match_profile``
        the matcher's (strict, balanced); empty: the server's defaults.
        """
        request = pb.VerifyRequest(
            image=image, enable_quality_checks=enable_quality_checks, request_id=request_id, profile=profile,
            reference_image=reference_image or b"", match_profile=match_profile,
        )
        return self._call(self._stub.Verify, request)

    def compare_faces(
        self, image: bytes, reference_image: bytes, request_id: str = "", profile: str = ""
    ) -> pb.CompareFacesResponse:
        """Whether the face of ``image`` is the person of ``reference_image`` (no liveness);
        ``profile``: the matcher's operating point (strict, balanced); empty: the server's default."""
        request = pb.CompareFacesRequest(image=image, reference_image=reference_image, request_id=request_id,
                                         profile=profile)
        return self._call(self._stub.CompareFaces, request)

    def verify_stream(
        self, requests: Iterable[pb.VerifyRequest], timeout: float | None = None
    ) -> Iterator[pb.VerifyStreamResponse]:
        """Stream VerifyRequests; yields one response per request, in order, as they arrive."""
        items = (pb.VerifyStreamRequest(request=request) for request in requests)
        try:
            yield from self._stub.VerifyStream(items, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise LivenessError.from_rpc_error(error) from None

    def health(self, service: str = "") -> str:
        """The server's health status name: SERVING, NOT_SERVING, SERVICE_UNKNOWN ..."""
        response = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise LivenessError.from_rpc_error(error) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "LivenessClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
