"""ekyc-server as a process: graceful SIGTERM under load, and start-up faults."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ServerProcess
from ekyc.client import LivenessClient, LivenessError
from ekyc.paths import DEFAULT_MODEL
from ekyc.v1 import liveness_pb2 as pb

SERVER = str(Path(sys.executable).parent / "ekyc-server")


def test_sigterm_turns_health_off_finishes_in_flight_work_and_exits_zero(face_jpeg):
    items, gap_s, drain_s = 40, 0.05, 0.5
    with ServerProcess(env={"EKYC_SERVER_SHUTDOWN_DRAIN_S": str(drain_s)}) as server:
        server.wait_serving()
        received: list[pb.VerifyStreamResponse] = []
        first = threading.Event()
        failure: list[Exception] = []
        finished_at: list[float] = []

        def stream():
            try:
                with LivenessClient(server.target, timeout=60) as client:
                    def paced():
                        for i in range(items):
                            yield pb.VerifyRequest(image=face_jpeg, request_id=str(i))
                            time.sleep(gap_s)

                    for response in client.verify_stream(paced(), timeout=60):
                        received.append(response)
                        finished_at.append(time.monotonic())
                        first.set()
            except Exception as exc:  # noqa: BLE001 - reported below
                failure.append(exc)
                first.set()

        worker = threading.Thread(target=stream)
        worker.start()
        assert first.wait(30), "no stream response arrived"
        server.process.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        with LivenessClient(server.target, timeout=5) as client:
            deadline = time.monotonic() + 1.0
            status = client.health()
            while status == "SERVING" and time.monotonic() < deadline:
                time.sleep(0.05)
                status = client.health()
        assert status == "NOT_SERVING"
        worker.join(60)
        assert not failure, failure
        assert [r.request_id for r in received] == [str(i) for i in range(items)]
        assert all(r.WhichOneof("outcome") == "result" for r in received)
        # The stream was still running when the server stopped accepting new RPCs.
        assert finished_at[-1] > signalled_at + drain_s
        assert server.process.wait(timeout=30) == 0
        events = [entry["event"] for entry in server.rest_of_log()]
        # The stream's own "rpc" line may fall between these: check their order, and the end.
        assert [e for e in events if e in ("signal", "stopping", "stopped")] == ["signal", "stopping", "stopped"]
        assert events[-1] == "stopped", events[-5:]


def test_new_rpcs_after_shutdown_are_refused_cleanly(face_jpeg):
    with ServerProcess(env={"EKYC_SERVER_SHUTDOWN_DRAIN_S": "0"}) as server:
        server.wait_serving()
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=30) == 0
        with LivenessClient(server.target, timeout=2) as client:
            with pytest.raises(LivenessError) as raised:
                client.verify(face_jpeg)
        assert raised.value.code.name in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def _run_server(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [SERVER, "--host", "127.0.0.1", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("ekyc-server: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_missing_model_is_a_one_line_error(tmp_path):
    line = _one_line_error(_run_server("--port", "0", "--model", str(tmp_path / "nope.onnx")))
    assert "model file not found" in line


def test_truncated_model_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(DEFAULT_MODEL.read_bytes()[:5000])
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), broken.with_suffix(".json"))
    line = _one_line_error(_run_server("--port", "0", "--model", str(broken)))
    assert "cannot be loaded" in line


def test_model_without_metadata_is_a_one_line_error(tmp_path):
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(DEFAULT_MODEL, lonely)
    line = _one_line_error(_run_server("--port", "0", "--model", str(lonely)))
    assert "metadata not found" in line


def test_bad_config_value_is_a_one_line_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[compute]\nqueue_size = -1\n")
    line = _one_line_error(_run_server("--port", "0", "--config", str(config)))
    assert "compute.queue_size" in line
    env_line = _one_line_error(_run_server("--port", "0", env={"EKYC_QUALITY_MIN_SHARPNESS": "sharp"}))
    assert "EKYC_QUALITY_MIN_SHARPNESS" in env_line


def test_port_in_use_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line_error(_run_server("--port", str(port)))
    assert "in use" in line


def test_model_of_the_wrong_shape_is_a_one_line_error(tmp_path):
    import json

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["spoof_probability"], axes=[1, 2, 3], keepdims=0)],
        "wrong-shape",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 64, 64, 3])],
        [helper.make_tensor_value_info("spoof_probability", TensorProto.FLOAT, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "wrong.onnx"
    onnx.save(model, path)
    metadata = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    metadata.pop("inputs", None)  # one input named "image"...
    metadata["crop"] = {"size": 128, "scale": 1.2, "border": "replicate"}  # ...said to be 128x128
    path.with_suffix(".json").write_text(json.dumps(metadata))
    result = _run_server("--port", "0", "--model", str(path))
    line = _one_line_error(result)
    assert "does not match its metadata crop size" in line
    assert '"event":"serving"' not in result.stdout  # never reported SERVING


def test_unknown_config_key_from_a_file_is_a_one_line_error(tmp_path):
    config = tmp_path / "typo.toml"
    config.write_text("[limits]\nmax_stream_itemz = 5\n")
    line = _one_line_error(_run_server("--port", "0", "--config", str(config)))
    assert "unknown key limits.max_stream_itemz" in line
