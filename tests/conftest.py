"""Shared fixtures: real images, a real server on a loopback port, a client."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from ekyc.client import LivenessClient
from ekyc.server.app import create_server
from ekyc.paths import DEFAULT_MODEL
from ekyc.server.config import load_config

ROOT = Path(__file__).resolve().parent.parent
# The evaluation harnesses (bench/degrade.py, bench/quality_accuracy.py) are scripts, not part
# of the installed package: the tests import them from their folder.
sys.path.insert(0, str(ROOT / "bench"))
DATA_DIR = Path(os.environ["EKYC_DATA_DIR"]) if os.environ.get("EKYC_DATA_DIR") else None
SPLIT_FILE = ROOT / "training" / "splits" / "shared-data.json"

# Servers the tests start (in-process and ekyc-server processes, which inherit this) serve HTTP
# only where a test asks for it on a free port: the default 8080 may be held by a developer's
# `make run` or by another test run on the machine.
os.environ.setdefault("EKYC_SERVER_HTTP_PORT", "0")

needs_data = pytest.mark.skipif(DATA_DIR is None, reason="EKYC_DATA_DIR is not set (shared face images)")


def packaged_face_path() -> Path:
    """A real portrait that ships with matplotlib (public domain): the data-free fallback."""
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def face_path() -> Path:
    """A photo with one clear, frontal face: shared data when present, else the packaged one."""
    if DATA_DIR is not None:
        return DATA_DIR / "faces" / "photos" / "obama.jpg"
    return packaged_face_path()


@pytest.fixture(scope="session")
def face_jpeg(face_path) -> bytes:
    return face_path.read_bytes()


@pytest.fixture(scope="session")
def face_rgb(face_jpeg) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(face_jpeg)).convert("RGB"))


def encode(rgb: np.ndarray, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def flat_image(value: int = 128, size=(480, 640)) -> bytes:
    return encode(np.full((*size, 3), value, dtype=np.uint8), "PNG")


def manifest_rows(split: str) -> list[dict]:
    """Rows of the shared manifest in ``split`` of the committed split file (the training
    code's own assignment, which also splits the replay sets by person). Capture setups added to
    the shared data after the split was made are in no split: the bundled model never saw them."""
    from ekyc.training.data import load_manifest, load_split, split_samples

    samples = split_samples(load_manifest(DATA_DIR), load_split(SPLIT_FILE), strict=False)[split]
    return [{"path": s.path, "label": "spoof" if s.label else "live", "source": s.source, "subject": s.subject}
            for s in samples]


def free_port() -> int:
    """A loopback port nothing listens on now (for HTTP, where port 0 means off)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(**overrides):
    """A real ekyc-server on 127.0.0.1 port 0 with the bundled model, loaded and SERVING; no
    HTTP unless ``server__http_port`` asks for it."""
    sections: dict = {"server": {"host": "127.0.0.1", "port": 0, "http_port": 0}}
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        sections.setdefault(section, {})[key] = value
    config = load_config(None, sections)
    server, port = create_server(config)
    server.load()
    return server, port


@pytest.fixture(scope="session")
def server():
    server, port = start_server()
    yield server
    server.stop(0)


@pytest.fixture(scope="session")
def target(server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture()
def client(target):
    with LivenessClient(target, timeout=30) as client:
        yield client


@pytest.fixture()
def ekyc_logger():
    """The ekyc logger, restored afterwards (other tests may rely on its handlers)."""
    import logging

    from ekyc.server import logs

    logger = logging.getLogger(logs.LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    return DEFAULT_MODEL


class ServerProcess:
    """``ekyc-server`` as a child process on a free loopback port; the port is read from its log."""

    def __init__(self, *args: str, env: dict | None = None):
        import subprocess
        import sys

        command = [str(Path(sys.executable).parent / "ekyc-server"), "--host", "127.0.0.1", "--port", "0", *args]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.port = 0
        self.log: list[dict] = []
        self.stderr_lines: list[str] = []

    def wait_serving(self, timeout: float = 60.0) -> "ServerProcess":
        """Wait for the 'serving' log line; fail if the process ends first.

        Threads read stdout and stderr from the start (a select() on a buffered pipe misses
        lines already read into Python's buffer, and a full pipe would block the server)."""
        import time

        self._start_draining()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in list(self.log):
                if entry["event"] == "listening":
                    self.port = entry["port"]
                if entry["event"] == "serving":
                    return self
            if self.process.poll() is not None and not self._drainers[0].is_alive():
                break
            time.sleep(0.05)
        ended = self.process.poll() is not None
        raise AssertionError(f"server did not start: {''.join(self.stderr_lines) if ended else 'timeout'}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start_draining(self) -> None:
        """Keep reading stdout (and stderr) so that the server never blocks on a full pipe."""
        import threading

        if getattr(self, "_drainers", None):
            return

        def drain_stdout():
            for line in self.process.stdout:
                if line.strip():
                    self.log.append(json.loads(line))

        def drain_stderr():
            for line in self.process.stderr:
                self.stderr_lines.append(line)

        self._drainers = [threading.Thread(target=drain_stdout, daemon=True),
                          threading.Thread(target=drain_stderr, daemon=True)]
        for thread in self._drainers:
            thread.start()

    def rest_of_log(self, timeout: float = 30.0) -> list[dict]:
        """Wait for the process to end and return every JSON log line it wrote."""
        self.process.wait(timeout=timeout)
        for thread in getattr(self, "_drainers", []):
            thread.join(timeout)
        return self.log

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def darken(rgb: np.ndarray) -> np.ndarray:
    """Underexpose by ~2.3 stops: a face that was fine becomes TOO_DARK."""
    return (rgb.astype(np.float32) * 0.2).astype(np.uint8)
