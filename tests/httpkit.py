"""Helpers for the HTTP gateway's tests: a gateway over a test server, requests to it."""

from __future__ import annotations

from dataclasses import dataclass

from ekyc.server.gateway import Gateway, grpc_health_check, http_bindings
from ekyc.server.http_server import HttpServer
from ekyc.server.openapi import openapi_document
from ekyc.server.security import ApiKeys
from ekyc.v1 import liveness_pb2

SERVICE = liveness_pb2.DESCRIPTOR.services_by_name["LivenessService"]


@dataclass
class HttpEndpoint:
    http: HttpServer
    gateway: Gateway

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    def stop(self) -> None:
        self.http.stop(0)


def start_gateway(server) -> HttpEndpoint:
    """The HTTP gateway over ``server`` (conftest.start_server) on a free loopback port."""
    config = server.config
    keys = ApiKeys.load(config.security.api_keys_file, config.security.api_keys_env)
    gateway = Gateway(
        server.servicer, SERVICE, is_serving=grpc_health_check(server.health), api_keys=keys,
        max_message_bytes=config.server.max_message_bytes,
        openapi=openapi_document(SERVICE, http_bindings(SERVICE), version="test"),
    )
    http = HttpServer(gateway.app(), "127.0.0.1", 0)
    http.start()
    return HttpEndpoint(http, gateway)
