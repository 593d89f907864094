"""uvicorn serving the HTTP gateway from a thread of the gRPC server's process.

The socket is bound here, before uvicorn starts, so that a busy port fails start-up at once
(like gRPC's), port 0 reports the port it got, and ``--workers`` processes can share the
port with SO_REUSEPORT as they share gRPC's.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import uvicorn


class HttpStartError(RuntimeError):
    """The HTTP port cannot be bound or uvicorn did not start."""


class HttpServer:
    """An ASGI ``app`` on ``host:port`` (TLS with ``tls_cert``; mTLS with ``tls_client_ca``)."""

    def __init__(self, app, host: str, port: int, *, tls_cert: str = "", tls_key: str = "",
                 tls_client_ca: str = "", reuse_port: bool = False, grace_s: float = 10.0):
        self.app = app
        self.host, self.requested_port = host, port
        self.tls = bool(tls_cert)
        self.reuse_port = reuse_port
        self.config = uvicorn.Config(
            app,
            log_config=None,  # ekyc's JSON log lines only; the gateway writes the request line
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=max(grace_s, 0.01),
            ssl_certfile=tls_cert or None,
            ssl_keyfile=tls_key or None,
            ssl_ca_certs=tls_client_ca or None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls_client_ca else ssl.CERT_NONE,
        )
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None
        self.socket: socket.socket | None = None
        self.port = 0
        self._error: BaseException | None = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
        # that say they are TCP; without it a keep-alive response's body waits for the client's
        # delayed ACK (40 ms a call).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as exc:
            sock.close()
            raise HttpStartError(
                f"cannot listen on {self.host}:{self.requested_port} for HTTP: {exc.strerror or exc}"
            ) from None
        sock.listen(self.config.backlog)
        sock.set_inheritable(True)
        return sock

    def start(self, timeout: float = 30.0) -> int:
        """Bind, start uvicorn in a thread and return the bound port once it accepts connections."""
        self.socket = self._bind()
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop(0)
                raise HttpStartError(f"the HTTP server did not start: {self._error or 'timeout'}")
            time.sleep(0.01)
        return self.port

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting connections; in-flight requests get uvicorn's graceful shutdown."""
        if grace is not None:
            self.config.timeout_graceful_shutdown = max(grace, 0.01)
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=(grace or 0) + 10)
        if self.socket is not None:
            self.socket.close()
