"""Operating points: a profile per request or from config, and the UNCERTAIN review band."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from conftest import start_server
from ekyc.client import LivenessClient, LivenessError
from ekyc.paths import DEFAULT_MODEL
from ekyc.v1 import liveness_pb2 as pb

CLIENT = str(Path(sys.executable).parent / "ekyc-client")


@pytest.fixture(scope="module")
def profiled_model(tmp_path_factory) -> Path:
    """The bundled model with metadata naming three profiles; 'review' sends every score to review."""
    root = tmp_path_factory.mktemp("profiled")
    model = root / "liveness.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    metadata = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    metadata["profiles"] = {
        "strict": {"threshold": 0.05, "review_band": None},
        "balanced": {"threshold": 0.5, "review_band": None},
        "lenient": {"threshold": 0.999, "review_band": None},
        "review": {"threshold": 0.5, "review_band": [0.0, 1.0001]},
    }
    metadata["default_profile"] = "balanced"
    metadata["threshold"] = 0.5
    model.with_suffix(".json").write_text(json.dumps(metadata))
    return model


@pytest.fixture(scope="module")
def target(profiled_model):
    server, port = start_server(model__path=str(profiled_model))
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_each_profile_applies_its_own_threshold_and_says_so(target, face_jpeg):
    with LivenessClient(target) as client:
        default = client.verify(face_jpeg)
        assert default.profile == "balanced" and default.threshold == pytest.approx(0.5)
        score = default.liveness_score
        for name, threshold in (("strict", 0.05), ("lenient", 0.999)):
            response = client.verify(face_jpeg, profile=name)
            assert response.profile == name and response.threshold == pytest.approx(threshold)
            assert response.liveness_score == pytest.approx(score)
            assert response.is_live == (score < threshold)
            expected = pb.LIVENESS_DECISION_LIVE if score < threshold else pb.LIVENESS_DECISION_SPOOF
            assert response.decision == expected


def test_scores_in_the_review_band_are_uncertain_not_live(target, face_jpeg, tmp_path, face_path):
    with LivenessClient(target) as client:
        response = client.verify(face_jpeg, profile="review")
        assert response.decision == pb.LIVENESS_DECISION_UNCERTAIN and not response.is_live
        streamed = list(client.verify_stream([pb.VerifyRequest(image=face_jpeg, profile="review")]))
        assert streamed[0].result.decision == pb.LIVENESS_DECISION_UNCERTAIN
    result = subprocess.run([CLIENT, "--server", target, "verify", str(face_path), "--profile", "review"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 4 and "UNCERTAIN (review)" in result.stdout


def test_unknown_profile_is_invalid_argument_naming_the_choices(target, face_jpeg):
    with LivenessClient(target) as client:
        with pytest.raises(LivenessError) as raised:
            client.verify(face_jpeg, profile="paranoid")
        assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "balanced" in raised.value.details and "strict" in raised.value.details
        item = list(client.verify_stream([pb.VerifyRequest(image=face_jpeg, profile="paranoid")]))[0]
        assert item.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_config_picks_the_default_profile_or_a_fixed_threshold(profiled_model, face_jpeg):
    server, port = start_server(model__path=str(profiled_model), model__profile="strict")
    try:
        with LivenessClient(f"127.0.0.1:{port}") as client:
            assert client.verify(face_jpeg).profile == "strict"
    finally:
        server.stop(0)
    server, port = start_server(model__path=str(profiled_model), model__threshold=0.3)
    try:
        with LivenessClient(f"127.0.0.1:{port}") as client:
            response = client.verify(face_jpeg)
            assert response.profile == "configured" and response.threshold == pytest.approx(0.3)
            assert client.verify(face_jpeg, profile="lenient").threshold == pytest.approx(0.999)
    finally:
        server.stop(0)
