"""ekyc-server --model s3://...: the model comes from the operator's bucket (moto offline)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from conftest import start_server
from ekyc.client import LivenessClient
from ekyc.server.app import StartupError
from ekyc.paths import DEFAULT_MODEL
from ekyc.models.liveness import ModelMetadata


@pytest.fixture()
def aws(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("EKYC_MODEL_CACHE", str(tmp_path / "cache"))
    with mock_aws():
        yield boto3.client("s3", region_name="eu-west-1")


def test_server_starts_from_an_s3_model_and_serves_it(aws, face_jpeg, tmp_path):
    aws.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    aws.upload_file(str(DEFAULT_MODEL), "models", "liveness/v9/liveness.onnx")
    aws.upload_file(str(DEFAULT_MODEL.with_suffix(".json")), "models", "liveness/v9/liveness.json")
    server, port = start_server(model__path="s3://models/liveness/v9/liveness.onnx")
    try:
        with LivenessClient(f"127.0.0.1:{port}") as client:
            response = client.verify(face_jpeg)
        assert response.model_version == ModelMetadata.load(DEFAULT_MODEL.with_suffix(".json")).version
        assert (tmp_path / "cache" / "models" / "liveness" / "v9" / "liveness.onnx").is_file()
    finally:
        server.stop(0)


def test_missing_s3_model_stops_the_start_with_a_clear_error(aws):
    aws.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    with pytest.raises(StartupError) as raised:
        start_server(model__path="s3://models/nothing/here.onnx")
    assert "model not found: s3://models/nothing/here" in str(raised.value)


def test_unreachable_s3_is_a_one_line_error_and_exit_2(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "EKYC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "eu-west-1", "EKYC_MODEL_CACHE": str(tmp_path)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ekyc-server"), "--host", "127.0.0.1", "--port", "0",
         "--model", "s3://models/liveness/v1/liveness.onnx"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ekyc-server: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert '"event":"serving"' not in result.stdout
