"""ekyc-server: builds the gRPC server, loads the models, serves until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
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

from ekyc.server.compute import ComputePool
from ekyc.server.config import Config, ConfigError, load_config
from ekyc.server.logs import configure as configure_logging
from ekyc.server.logs import log_event
from ekyc.server.model import ModelLoadError
from ekyc.server.pipeline import LivenessPipeline
from ekyc.server.servicer import LivenessServicer
from ekyc.v1 import liveness_pb2, liveness_pb2_grpc

SERVICE_NAME = liveness_pb2.DESCRIPTOR.services_by_name["LivenessService"].full_name
HEALTH_SERVICES = ("", SERVICE_NAME)


class StartupError(Exception):
    """The server cannot start: a bad model, config or port. The message names the problem."""


class LivenessServer:
    """A gRPC server with health, reflection and the LivenessService; models load after start."""

    def __init__(self, config: Config):
        self.config = config
        self.compute = ComputePool(config.compute.threads, config.compute.queue_size)
        self.servicer = LivenessServicer(self.compute, config.compute.stream_window)
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
        )
        liveness_pb2_grpc.add_LivenessServiceServicer_to_server(self.servicer, self.grpc_server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        if config.server.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc_server
            )
        for service in HEALTH_SERVICES:
            self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = 0

    def bind_and_start(self) -> int:
        """Listen on the configured address (health NOT_SERVING) and return the bound port."""
        address = f"{self.config.server.host}:{self.config.server.port}"
        try:
            port = self.grpc_server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port == 0:
            raise StartupError(f"cannot listen on {address}: the port is in use or the address is invalid")
        self.port = port
        self.grpc_server.start()
        return port

    def load(self) -> None:
        """Load and warm the models, then report SERVING."""
        started = time.perf_counter()
        try:
            pipeline = LivenessPipeline(self.config)
        except (ModelLoadError, FileNotFoundError, ValueError, RuntimeError) as exc:
            raise StartupError(str(exc)) from None
        pipeline.warm_up()
        self.servicer.pipeline = pipeline
        for service in HEALTH_SERVICES:
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log_event(
            "serving",
            port=self.port,
            model_version=pipeline.model_version,
            threshold=pipeline.threshold,
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
        self.grpc_server.stop(grace).wait()
        self.compute.shutdown()
        pipeline, self.servicer.pipeline = self.servicer.pipeline, None
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
    log_event("listening", host=config.server.host, port=port)
    try:
        server.load()
    except StartupError:
        server.grpc_server.stop(0)
        raise
    stop_requested.wait()
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
        description="Serve the ekyc LivenessService (quality gate + liveness model) over gRPC.",
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (default 50051; 0 picks a free one)")
    parser.add_argument("--model", help="ONNX liveness model (default: the bundled models/liveness.onnx)")
    parser.add_argument("--config", help="TOML file overriding server/default.toml (or EKYC_CONFIG)")
    parser.add_argument("--threads", type=int, help="compute threads per process (default: CPUs / workers)")
    parser.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    config_path = args.config or os.environ.get("EKYC_CONFIG")
    overrides = {
        "server": {"host": args.host, "port": args.port, "workers": args.workers},
        "compute": {"threads": args.threads},
        "model": {"path": args.model},
    }
    try:
        config = load_config(config_path, overrides)
        if config.model.path and not Path(config.model.path).is_file():
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
