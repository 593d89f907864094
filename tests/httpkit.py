"""Helpers for the HTTP gateway's tests: an ekyc-server (in-process) with HTTP on a free port."""

from __future__ import annotations

from dataclasses import dataclass

from conftest import free_port, start_server
from ekyc.v1 import liveness_pb2

SERVICE = liveness_pb2.DESCRIPTOR.services_by_name["LivenessService"]


@dataclass
class HttpEndpoint:
    """A loaded LivenessServer serving gRPC and HTTP on loopback ports."""

    server: object

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def gateway(self):
        return self.server.gateway

    def stop(self) -> None:
        self.server.stop(0)


def start_http(load: bool = True, **overrides) -> HttpEndpoint:
    """start_server(...) with HTTP on a free port (``load=False``: bound, models not loaded)."""
    overrides.setdefault("server__http_port", free_port())
    if load:
        server, _ = start_server(**overrides)
    else:
        from ekyc.server.app import create_server
        from ekyc.server.config import load_config

        sections: dict = {"server": {"host": "127.0.0.1", "port": 0}}
        for dotted, value in overrides.items():
            section, key = dotted.split("__")
            sections.setdefault(section, {})[key] = value
        server, _ = create_server(load_config(None, sections))
    return HttpEndpoint(server)
