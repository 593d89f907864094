"""What the HTTP/JSON path adds to a Verify, against gRPC, on the same images and server.

    python bench/http_bench.py            # full run (make bench), prints one JSON object
    python bench/http_bench.py --quick    # a few images, for the smoke test

One ``ekyc-server`` process serves both transports (gRPC and ``--http-port``); the load
client runs in this process (its CPU time is reported, as bench.py does). Three paths:

- ``grpc``: ``LivenessClient.verify`` on one channel;
- ``http_raw``: ``POST /v1/liveness:verify`` with the JPEG as the body (``Content-Type: image/jpeg``);
- ``http_json``: the same route with proto3 JSON (the image in base64).

HTTP clients are ``http.client`` keep-alive connections, one per caller thread (the lightest
Python client: ``requests`` would add its own overhead to the figure). Latency: sequential
calls, the three paths in turn on each image, so that all see the same machine state; the
added latency is the median of the paired differences. Throughput: ``concurrency`` callers,
blocks alternating between the paths over ``rounds``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import SIZES, ServerProcess, _client_cpu, load_images, percentile  # noqa: E402

PATHS = ("grpc", "http_raw", "http_json")


class DualServer(ServerProcess):
    """ekyc-server with HTTP on a free port too; the ports come from its 'listening' line."""

    def __init__(self, args: list[str]):
        with socket.socket() as probe:  # HTTP port 0 means "off": ask for a free one
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        super().__init__(["--port", "0", "--http-port", str(free), *args])
        self.http_port = 0

    def wait_serving(self, timeout: float = 120.0) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("ekyc-server exited during start-up")
            entry = json.loads(line)
            if entry["event"] == "listening":
                self.port = entry["port"]
                self.http_port = entry["http_port"]
            if entry["event"] == "serving":
                break
        self.cold_start_s = time.perf_counter() - self.started
        threading.Thread(target=self._drain, daemon=True).start()


class HttpCaller:
    """Keep-alive connections, one per thread."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            connection.connect()
            # As curl, browsers and urllib3 do: http.client sends headers and body in two writes,
            # which Nagle's algorithm would hold back for the server's delayed ACK (40 ms).
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def verify(self, image: bytes, form: str) -> dict:
        if form == "http_raw":
            body, content_type = image, "image/jpeg"
        else:
            body, content_type = json.dumps({"image": base64.b64encode(image).decode("ascii")}).encode(), \
                "application/json"
        connection = self._connection()
        try:
            connection.request("POST", "/v1/liveness:verify", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            payload = response.read()
        except (http.client.HTTPException, OSError):
            connection.close()
            self.local.connection = None
            raise
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        return json.loads(payload)


def call(path: str, grpc_client, http_caller: HttpCaller, image: bytes) -> None:
    if path == "grpc":
        grpc_client.verify(image)
    else:
        http_caller.verify(image, path)


def sequential(grpc_client, http_caller, images: list[bytes], rounds: int) -> dict:
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    for _ in range(rounds):
        for image in images:
            for path in PATHS:
                started = time.perf_counter()
                call(path, grpc_client, http_caller, image)
                times[path].append((time.perf_counter() - started) * 1000.0)
    out = {f"{path}_sequential_p50_ms": round(percentile(values, 50), 2) for path, values in times.items()}
    for path in ("http_raw", "http_json"):
        out[f"{path}_added_p50_ms"] = round(statistics.median(h - g for h, g in zip(times[path], times["grpc"])), 2)
    return out


def block(path: str, grpc_client, http_caller, images: list[bytes], concurrency: int, server) -> dict:
    latencies: list[float] = []
    errors = 0

    def one(image: bytes) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            call(path, grpc_client, http_caller, image)
        except Exception:  # noqa: BLE001 - counted
            errors += 1
            return
        latencies.append((time.perf_counter() - started) * 1000.0)

    cpu_client, cpu_server = _client_cpu(), server.cpu_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as callers:
        list(callers.map(one, images))
    return {"images": len(images), "elapsed": time.perf_counter() - started, "latencies": latencies, "errors": errors,
            "cpu_client": _client_cpu() - cpu_client, "cpu_server": server.cpu_seconds() - cpu_server}


def summarise(blocks: dict[str, list[dict]]) -> dict:
    cores = os.cpu_count() or 1
    out = {}
    for path, runs in blocks.items():
        images = sum(b["images"] for b in runs)
        elapsed = sum(b["elapsed"] for b in runs)
        latencies = [v for b in runs for v in b["latencies"]]
        cpu_client = sum(b["cpu_client"] for b in runs)
        out[f"{path}_images_per_s"] = round(images / elapsed, 1)
        out[f"{path}_images_per_s_client_accounted"] = round(images / (elapsed - cpu_client / cores), 1)
        out[f"{path}_p50_ms"] = round(percentile(latencies, 50), 2)
        out[f"{path}_p99_ms"] = round(percentile(latencies, 99), 2)
        out[f"{path}_errors"] = sum(b["errors"] for b in runs)
        out[f"{path}_client_cpu_ms_per_image"] = round(cpu_client * 1000.0 / images, 2)
        out[f"{path}_server_cpu_ms_per_image"] = round(sum(b["cpu_server"] for b in runs) * 1000.0 / images, 2)
    for path in ("http_raw", "http_json"):
        out[f"{path}_vs_grpc_throughput"] = round(out[f"{path}_images_per_s"] / out["grpc_images_per_s"], 3)
    return out


def run(args) -> dict:
    from ekyc.client import LivenessClient

    result: dict = {"cores": os.cpu_count(), "concurrency": args.concurrency, "rounds": args.rounds,
                    "data": "EKYC_DATA_DIR" if os.environ.get("EKYC_DATA_DIR") else "packaged portrait", "sizes": {}}
    for name in args.sizes:
        images = load_images(args.images, SIZES[name])
        server = DualServer(["--threads", str(args.threads)] if args.threads else [])
        try:
            server.wait_serving()
            http_caller = HttpCaller(server.http_port)
            with LivenessClient(f"127.0.0.1:{server.port}", timeout=600) as grpc_client:
                for image in images[:5]:
                    for path in PATHS:
                        call(path, grpc_client, http_caller, image)
                entry = sequential(grpc_client, http_caller, images[: min(len(images), 60)], 1 if args.quick else 2)
                blocks: dict[str, list[dict]] = {path: [] for path in PATHS}
                for _ in range(args.rounds):
                    for path in PATHS:
                        blocks[path].append(block(path, grpc_client, http_caller, images, args.concurrency, server))
                entry.update(summarise(blocks))
            entry["server_rss_mb"] = round(server.rss_mb(), 1)
        finally:
            server.stop()
        result["sizes"][name] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200, help="images per size (default 200)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent callers (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks per path (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="server compute threads (default: one per CPU)")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["640x480"])
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.rounds, args.sizes = 6, 1, ["640x480"]
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
