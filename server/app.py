"""ekyc-server: builds the gRPC server and the HTTP/JSON gateway beside it, loads the models,
serves until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import ekyc
from ekyc.errors import ModelLoadError
from ekyc.model_store import resolve_model
from ekyc.server.compute import ComputePool
from ekyc.server.config import Config, ConfigError, load_config
from ekyc.server.gateway import Gateway, grpc_health_check, http_bindings
from ekyc.server.http_server import HttpServer, HttpStartError
from ekyc.server.limits import RateLimiter
from ekyc.server.logs import configure as configure_logging
from ekyc.server.logs import log_event
from ekyc.server.metrics import MetricsAggregator
from ekyc.server.openapi import openapi_document
from ekyc.server.pipeline import LivenessPipeline
from ekyc.server.security import ApiKeyInterceptor, ApiKeys, SecurityConfigError, server_credentials
from ekyc.server.service import LivenessService
from ekyc.server.servicer import LivenessServicer
from ekyc.server.servicer import add_to_server as add_liveness_service
from ekyc.v1 import liveness_pb2

SERVICE = liveness_pb2.DESCRIPTOR.services_by_name["LivenessService"]
SERVICE_NAME = SERVICE.full_name
HEALTH_SERVICES = ("", SERVICE_NAME)


class StartupError(Exception):
    """The server cannot start: a bad model, config or port. The message names the problem."""


class LivenessServer:
    """A gRPC server with health, reflection and the LivenessService, and (unless
    ``server.http_port`` is 0) the HTTP/JSON gateway over the same servicer; models load after
    start."""

    def __init__(self, config: Config):
        self.config = config
        self.compute = ComputePool(config.compute.threads, config.compute.queue_size)
        self.metrics = MetricsAggregator(config.server.metrics_interval_s) if config.server.metrics == "emf" else None
        self.service = LivenessService(
            self.compute,
            config.compute.stream_window,
            limiter=RateLimiter(config.limits.rate_limit_per_minute, config.limits.rate_limit_burst),
            max_stream_items=config.limits.max_stream_items,
            metrics=self.metrics,
        )
        self.servicer = LivenessServicer(self.service)
        try:
            keys = ApiKeys.load(config.security.api_keys_file, config.security.api_keys_env)
            self.credentials = (
                server_credentials(config.security.tls_cert, config.security.tls_key, config.security.tls_client_ca)
                if config.security.tls
                else None
            )
        except SecurityConfigError as exc:
            raise StartupError(str(exc)) from None
        self.api_keys_enabled = bool(len(keys))
        interceptors = [ApiKeyInterceptor(keys)] if len(keys) else []
        self.health = health.HealthServicer(experimental_non_blocking=True)
        options = [
            ("grpc.max_receive_message_length", config.server.max_message_bytes),
            ("grpc.max_send_message_length", config.server.max_message_bytes),
            # A second server on the same port must fail, not silently share it; only the
            # --workers processes of one ekyc-server share their port on purpose.
            ("grpc.so_reuseport", 1 if config.server.workers > 1 else 0),
        ]
        # RPC threads mostly wait on the compute pool; gRPC itself refuses RPCs beyond the limit.
        self.grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.server.max_concurrent_rpcs, thread_name_prefix="rpc"),
            options=options,
            maximum_concurrent_rpcs=config.server.max_concurrent_rpcs,
            interceptors=interceptors,
        )
        add_liveness_service(self.servicer, self.grpc_server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        if config.server.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc_server
            )
        for service in HEALTH_SERVICES:
            self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = 0
        self.http_port = 0
        self.gateway: Gateway | None = None
        self.http = self._http_server(keys) if config.server.http_port else None

    def _http_server(self, keys: ApiKeys) -> HttpServer:
        """The HTTP/JSON gateway over this server's servicer: the same service layer, keys,
        limits, TLS files; /healthz asks this server's gRPC health."""
        config = self.config
        self.gateway = gateway = Gateway(
            self.servicer, SERVICE,
            is_serving=grpc_health_check(self.health),
            api_keys=keys,
            max_message_bytes=config.server.max_message_bytes,
            max_concurrent_calls=config.server.max_concurrent_rpcs,
            openapi=openapi_document(SERVICE, http_bindings(SERVICE), version=ekyc.__version__),
        )
        return HttpServer(
            gateway.app(), config.server.host, config.server.http_port,
            tls_cert=config.security.tls_cert, tls_key=config.security.tls_key,
            tls_client_ca=config.security.tls_client_ca, reuse_port=config.server.workers > 1,
            grace_s=config.server.shutdown_grace_s,
        )

    def bind_and_start(self) -> int:
        """Listen on the configured address (health NOT_SERVING), HTTP too, and return the
        bound gRPC port (``http_port`` holds HTTP's)."""
        address = f"{self.config.server.host}:{self.config.server.port}"
        try:
            if self.credentials is not None:
                port = self.grpc_server.add_secure_port(address, self.credentials)
            else:
                port = self.grpc_server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port == 0:
            raise StartupError(f"cannot listen on {address}: the port is in use or the address is invalid")
        self.port = port
        self.grpc_server.start()
        if self.http is not None:
            try:
                self.http_port = self.http.start()
            except HttpStartError as exc:
                self.grpc_server.stop(0)
                raise StartupError(str(exc)) from None
        return port

    def load(self) -> None:
        """Load and warm the models, then report SERVING."""
        started = time.perf_counter()
        try:
            config = self.config
            if config.model.path.startswith("s3://"):
                # Health stays NOT_SERVING while the model downloads (once; then from the cache).
                local = resolve_model(config.model.path)
                config = dataclasses.replace(config, model=dataclasses.replace(config.model, path=str(local)))
            pipeline = LivenessPipeline(config)
        except (ModelLoadError, FileNotFoundError, ValueError, RuntimeError) as exc:
            raise StartupError(str(exc)) from None
        pipeline.warm_up()
        self.service.pipeline = pipeline
        if self.metrics is not None:
            self.metrics.start()
        for service in HEALTH_SERVICES:
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log_event(
            "serving",
            port=self.port,
            model_version=pipeline.model_version,
            threshold=pipeline.threshold,
            default_profile=pipeline.default_profile,
            profiles=sorted(pipeline.profiles),
            matcher_version=pipeline.matcher.version if pipeline.matcher is not None else None,
            match_profile=pipeline.matcher.default_profile if pipeline.matcher is not None else None,
            compute_threads=self.config.compute.threads,
            load_s=round(time.perf_counter() - started, 3),
        )

    def stop(self, grace: float | None = None, drain: float = 0.0) -> None:
        """Report NOT_SERVING, keep serving ``drain`` seconds, then refuse new RPCs and let
        in-flight ones finish within ``grace`` seconds; release the models."""
        grace = self.config.server.shutdown_grace_s if grace is None else grace
        self.health.enter_graceful_shutdown()
        log_event("stopping", drain_s=drain, grace_s=grace)
        if drain > 0:
            time.sleep(drain)
        stopped = self.grpc_server.stop(grace)
        if self.http is not None:
            self.http.stop(grace)  # both transports finish their in-flight calls at once
        stopped.wait()
        self.compute.shutdown()
        if self.metrics is not None:
            self.metrics.stop()
        pipeline, self.service.pipeline = self.service.pipeline, None
        if pipeline is not None:
            pipeline.close()
        log_event("stopped")


def create_server(config: Config) -> tuple[LivenessServer, int]:
    """Build a server, bind it and start listening; the caller then calls ``load()``."""
    server = LivenessServer(config)
    port = server.bind_and_start()
    return server, port


def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop_requested = threading.Event()

    def request_stop(signum, _frame):
        log_event("signal", signal=signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server, port = create_server(config)
    log_event("listening", host=config.server.host, port=port, http_port=server.http_port,
              tls=config.security.tls, mutual_tls=bool(config.security.tls_client_ca),
              api_keys=server.api_keys_enabled)
    try:
        server.load()
    except StartupError:
        server.grpc_server.stop(0)
        if server.http is not None:
            server.http.stop(0)
        raise
    # Wake up regularly: Python runs signal handlers in the main thread only, and the kernel may
    # deliver SIGTERM to one of the native threads (ONNX Runtime, gRPC) instead, which leaves a
    # main thread blocked in an untimed wait asleep for good (seen under load in CI).
    while not stop_requested.wait(timeout=0.2):
        pass
    server.stop(drain=config.server.shutdown_drain_s)


def serve_workers(config: Config) -> int:
    """Fork ``workers`` server processes sharing the port (SO_REUSEPORT) before gRPC starts.

    The parent only supervises: it forwards SIGTERM/SIGINT, and when one worker fails it
    stops the others. Exit status: 0 when every worker exited 0, else the first failure's.
    """
    children: list[int] = []
    for index in range(config.server.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                log_event("worker_started", worker=index, pid=os.getpid())
                serve(config)
            except (ConfigError, StartupError) as exc:
                log_event("startup_failed", worker=index, error=str(exc))
                print(f"ekyc-server: error: {exc}", file=sys.stderr)
                code = 2
            except BaseException:  # noqa: BLE001 - a worker must never return into the parent's code
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    remaining = set(children)
    while remaining:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        remaining.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0 and status == 0:
            status = code if code > 0 else 1
            forward(signal.SIGTERM, None)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ekyc-server",
        description="Serve the ekyc LivenessService (quality gate + liveness model) over gRPC and HTTP/JSON.",
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (default 50051; 0 picks a free one)")
    parser.add_argument("--http-port", type=int,
                        help="HTTP/JSON API and demo page port (default 8080; 0 turns HTTP off)")
    parser.add_argument("--model", help="ONNX liveness model: a path or s3://bucket/key.onnx (default: the bundled one)")
    parser.add_argument("--config", help="TOML file overriding server/default.toml (or EKYC_CONFIG)")
    parser.add_argument("--threads", type=int, help="compute threads per process (default: CPUs / workers)")
    parser.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    security = parser.add_argument_group("security")
    security.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    security.add_argument("--tls-key", help="PEM private key of --tls-cert")
    security.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (mTLS)")
    security.add_argument("--api-keys-file", help="accepted API keys, one per line (or SHA-256 hex); also EKYC_API_KEYS")
    security.add_argument("--no-reflection", action="store_false", dest="reflection", default=None,
                          help="turn server reflection off")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-message-bytes", type=int, help="largest request in bytes (default 10 MiB)")
    limits.add_argument("--max-image-pixels", type=int, help="largest image in pixels, from its header (default 40 M)")
    limits.add_argument("--max-concurrent-rpcs", type=int, help="RPCs handled at once (default 64)")
    limits.add_argument("--queue-size", type=int, help="images waiting beyond the running ones (default 32)")
    limits.add_argument("--max-stream-items", type=int, help="items per VerifyStream (default 100000, 0 = no limit)")
    limits.add_argument("--rate-limit", type=float, dest="rate_limit_per_minute",
                        help="requests per client per minute (default 0 = off)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    config_path = args.config or os.environ.get("EKYC_CONFIG")
    overrides = {
        "server": {"host": args.host, "port": args.port, "http_port": args.http_port, "workers": args.workers,
                   "reflection": args.reflection,
                   "max_message_bytes": args.max_message_bytes, "max_concurrent_rpcs": args.max_concurrent_rpcs},
        "compute": {"threads": args.threads, "queue_size": args.queue_size},
        "model": {"path": args.model},
        "quality": {"max_image_pixels": args.max_image_pixels},
        "limits": {"max_stream_items": args.max_stream_items, "rate_limit_per_minute": args.rate_limit_per_minute},
        "security": {"api_keys_file": args.api_keys_file, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
                     "tls_client_ca": args.tls_client_ca},
    }
    try:
        config = load_config(config_path, overrides)
        if config.model.path and not config.model.path.startswith("s3://") and not Path(config.model.path).is_file():
            raise StartupError(f"model file not found: {config.model.path}")
        if config.server.workers > 1:
            if config.server.port == 0:
                raise StartupError("--workers needs a fixed --port: each worker would get its own port 0")
            return serve_workers(config)
        serve(config)
    except (ConfigError, StartupError) as exc:
        log_event("startup_failed", error=str(exc))
        print(f"ekyc-server: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
