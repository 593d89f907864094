"""ekyc-server's HTTP side as an operator sees it: --http-port / config / EKYC_* env, one log
line per call with its transport, the shared metrics, API keys, TLS, start-up faults and a
graceful stop in which /healthz follows gRPC health."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import ServerProcess, flat_image, free_port
from ekyc.client import LivenessClient
from ekyc.server.app import create_server
from ekyc.server.config import ConfigError, load_config
from httpkit import start_http
from test_security import pki  # noqa: F401 - the CA, server and client certificates fixture

SERVER = str(Path(sys.executable).parent / "ekyc-server")
ROOT = Path(__file__).resolve().parent.parent


def test_http_port_comes_from_the_config_file_env_and_flags_and_0_turns_http_off(tmp_path):
    assert load_config(None, environ={}).server.http_port == 8080
    file = tmp_path / "http.toml"
    file.write_text("[server]\nhttp_port = 9100\n")
    assert load_config(file, environ={}).server.http_port == 9100
    assert load_config(file, environ={"EKYC_SERVER_HTTP_PORT": "9200"}).server.http_port == 9200
    flags = {"server": {"http_port": 9300}}
    assert load_config(file, flags, environ={"EKYC_SERVER_HTTP_PORT": "9200"}).server.http_port == 9300
    for bad in (-1, 70000):
        with pytest.raises(ConfigError, match="http_port"):
            load_config(None, {"server": {"http_port": bad}}, environ={})
    with pytest.raises(ConfigError, match="differ"):
        load_config(None, {"server": {"port": 9400, "http_port": 9400}}, environ={})
    server, _ = create_server(load_config(None, {"server": {"host": "127.0.0.1", "port": 0, "http_port": 0}}))
    try:
        assert server.http is None and server.http_port == 0
    finally:
        server.stop(0)


def test_make_run_serves_grpc_on_50051_and_http_on_8080():
    """`make run` starts ekyc-server with the shipped defaults: both ports."""
    recipe = ROOT.joinpath("Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/ekyc-server" in recipe and "--port" not in recipe and "--http-port" not in recipe
    config = load_config(None, environ={})
    assert (config.server.port, config.server.http_port) == (50051, 8080)


def test_a_busy_http_port_stops_the_start_with_one_error_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        result = subprocess.run([SERVER, "--host", "127.0.0.1", "--port", "0", "--http-port", str(busy)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("ekyc-server: error:")]
    assert len(errors) == 1 and "for HTTP" in errors[0] and str(busy) in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def _get(url: str, **kwargs):
    try:
        return requests.get(url, timeout=5, **kwargs)
    except requests.ConnectionError:
        return None


def test_the_process_logs_counts_and_guards_http_calls_like_grpc_and_stops_gracefully(face_jpeg):
    http_port = free_port()
    env = {"EKYC_SERVER_METRICS": "emf", "EKYC_SERVER_METRICS_INTERVAL_S": "0.3", "EKYC_API_KEYS": "key-one",
           "EKYC_SERVER_SHUTDOWN_DRAIN_S": "1.5"}
    with ServerProcess("--http-port", str(http_port), env=env) as server:
        server.wait_serving()
        (listening,) = [entry for entry in server.log if entry["event"] == "listening"]
        assert listening["http_port"] == http_port and listening["api_keys"] is True
        base = f"http://127.0.0.1:{http_port}"
        key = {"Authorization": "Bearer key-one"}
        ok = requests.post(f"{base}/v1/liveness:verify?requestId=http-1", data=face_jpeg, timeout=60,
                           headers={"Content-Type": "image/jpeg", **key})
        assert ok.status_code == 200, ok.text
        assert requests.post(f"{base}/v1/quality:check", files={"image": ("f.png", flat_image(), "image/png")},
                             headers=key, timeout=60).status_code == 200
        assert requests.post(f"{base}/v1/liveness:verify", data=b"junk", timeout=60,
                             headers={"Content-Type": "image/jpeg", **key}).status_code == 400
        assert requests.post(f"{base}/v1/liveness:verify", data=face_jpeg, timeout=60,
                             headers={"Content-Type": "image/jpeg"}).status_code == 401
        with LivenessClient(server.target, api_key="key-one") as client:
            client.verify(face_jpeg, request_id="grpc-1")
        assert _get(f"{base}/healthz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        statuses = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the drain: still answering, but not healthy
            response = _get(f"{base}/healthz")
            if response is None:
                break
            statuses.add(response.status_code)
            if response.status_code == 503:
                break
            time.sleep(0.05)
        assert 503 in statuses, statuses
        log = server.rest_of_log()
        assert server.process.returncode == 0
    assert log[-1]["event"] == "stopped"
    calls = {}
    for entry in log:
        if entry.get("event") == "rpc":
            key_ = (entry.get("transport"), entry["method"], entry["code"])
            calls[key_] = calls.get(key_, 0) + 1
    assert calls == {("http", "Verify", "OK"): 1, ("http", "CheckQuality", "OK"): 1,
                     ("http", "Verify", "INVALID_ARGUMENT"): 1, ("http", "Verify", "UNAUTHENTICATED"): 1,
                     ("grpc", "Verify", "OK"): 1}
    (http_line,) = [e for e in log if e.get("request_id") == "http-1"]
    assert http_line["decision"] in ("live", "spoof", "uncertain", "quality_failed") and http_line["model_version"]
    text = json.dumps(log)
    assert "key-one" not in text, [e for e in log if "key-one" in json.dumps(e)]
    assert "Bearer key" not in text and "liveness_score" not in text
    requests_by = {}
    for record in (e for e in log if e.get("event") == "metrics" and "Requests" in e):
        requests_by[(record["method"], record["code"])] = requests_by.get((record["method"], record["code"]), 0) \
            + record["Requests"]
    # One set of metrics for both transports: the HTTP calls are counted with the gRPC one.
    assert requests_by[("Verify", "OK")] == 2 and requests_by[("CheckQuality", "OK")] == 1
    assert requests_by[("Verify", "INVALID_ARGUMENT")] == 1


def test_the_http_socket_is_tcp_so_that_responses_are_not_held_by_nagle():
    """asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP: a socket made
    with protocol 0 made every keep-alive response wait ~40 ms for a delayed ACK
    (bench/http_bench.py measures the latency itself)."""
    endpoint = start_http(load=False)
    try:
        assert endpoint.server.http.socket.proto == socket.IPPROTO_TCP
    finally:
        endpoint.stop()


def test_tls_and_mutual_tls_over_http(pki, face_jpeg):  # noqa: F811 - the imported fixture
    endpoint = start_http(security__tls_cert=str(pki / "server.crt"), security__tls_key=str(pki / "server.key"))
    try:
        url = f"https://127.0.0.1:{endpoint.server.http_port}"
        answer = requests.post(f"{url}/v1/quality:check", data=face_jpeg, headers={"Content-Type": "image/jpeg"},
                               verify=str(pki / "ca.crt"), timeout=60)
        assert answer.status_code == 200 and answer.json()["quality"]["passed"] is True
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/healthz", verify=str(pki / "stranger.crt"), timeout=30)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{endpoint.server.http_port}/healthz", timeout=30)
    finally:
        endpoint.stop()
    endpoint = start_http(security__tls_cert=str(pki / "server.crt"), security__tls_key=str(pki / "server.key"),
                          security__tls_client_ca=str(pki / "ca.crt"))
    try:
        url = f"https://127.0.0.1:{endpoint.server.http_port}/healthz"
        with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
            requests.get(url, verify=str(pki / "ca.crt"), timeout=30)
        with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
            requests.get(url, verify=str(pki / "ca.crt"), timeout=30,
                         cert=(str(pki / "stranger-client.crt"), str(pki / "stranger-client.key")))
        ok = requests.get(url, verify=str(pki / "ca.crt"), timeout=30,
                          cert=(str(pki / "client.crt"), str(pki / "client.key")))
        assert ok.status_code == 200 and ok.json() == {"status": "SERVING"}
    finally:
        endpoint.stop()
