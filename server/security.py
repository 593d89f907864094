"""Who may call the service: API keys (Bearer tokens, compared in constant time) and TLS.

Health and reflection stay open so that load balancers and grpcurl work without a key.
Keys never reach the logs: only whether a key was missing or wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Iterable

import grpc

from ekyc.server.logs import log_event

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class SecurityConfigError(ValueError):
    """A key file or certificate cannot be used."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """SHA-256 digests of the accepted keys. A line of 64 hex digits is taken as a digest."""

    def __init__(self, entries: Iterable[str]):
        digests = []
        for entry in entries:
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            digests.append(bytes.fromhex(entry) if _SHA256_HEX.match(entry) else _digest(entry))
        self._digests = tuple(digests)

    def __len__(self) -> int:
        return len(self._digests)

    @classmethod
    def load(cls, path: str | None, env_value: str | None) -> "ApiKeys":
        entries: list[str] = []
        if path:
            try:
                entries.extend(Path(path).read_text(encoding="utf-8").splitlines())
            except OSError as exc:
                raise SecurityConfigError(f"cannot read API keys file {path}: {exc.strerror or exc}") from None
        if env_value:
            entries.extend(env_value.split(","))
        keys = cls(entries)
        if (path or env_value) and not len(keys):
            raise SecurityConfigError("API keys were configured but none was found")
        return keys

    def accepts(self, presented: str) -> bool:
        """Constant-time comparison of the presented key's digest with every accepted digest."""
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched


def _bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return None


class ApiKeyInterceptor(grpc.ServerInterceptor):
    """Refuses LivenessService calls without a valid ``authorization: Bearer KEY`` with UNAUTHENTICATED."""

    def __init__(self, keys: ApiKeys):
        self._keys = keys

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_PREFIXES):
            return continuation(handler_call_details)
        presented = _bearer(handler_call_details.invocation_metadata)
        if presented is not None and self._keys.accepts(presented):
            return continuation(handler_call_details)
        reason = "missing API key: send 'authorization: Bearer <key>'" if presented is None else "API key not accepted"
        handler = continuation(handler_call_details)
        return _deny(handler, method, reason)


def _deny(handler, method: str, reason: str):
    started = time.perf_counter()

    def abort(_request_or_iterator, context):
        log_event(
            "rpc", method=method.rsplit("/", 1)[-1], code="UNAUTHENTICATED",
            latency_ms=round((time.perf_counter() - started) * 1000, 2), error=reason,
        )
        context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """TLS credentials; with ``client_ca`` clients must present a certificate it signed (mTLS)."""

    def read(path: str, what: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise SecurityConfigError(f"cannot read TLS {what} {path}: {exc.strerror or exc}") from None

    chain, private_key = read(cert, "certificate"), read(key, "key")
    if b"PRIVATE KEY" not in private_key:
        raise SecurityConfigError(f"TLS key {key} is not a PEM private key")
    if b"CERTIFICATE" not in chain:
        raise SecurityConfigError(f"TLS certificate {cert} is not a PEM certificate")
    roots = read(client_ca, "client CA") if client_ca else None
    return grpc.ssl_server_credentials(
        [(private_key, chain)], root_certificates=roots, require_client_auth=roots is not None
    )
