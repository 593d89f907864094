"""Publishing the model to S3 and loading it back: ekyc-train publish + ekyc.model_store.

S3 is moto's in-process fake (``mock_aws``); the server test resolves the published model
from S3 and starts a real ekyc-server on it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")
from moto import mock_aws  # noqa: E402

from conftest import start_server  # noqa: E402
from ekyc.client import LivenessClient  # noqa: E402
from ekyc.paths import DEFAULT_MODEL  # noqa: E402
from ekyc.errors import ModelLoadError  # noqa: E402
from ekyc.model_store import resolve_model  # noqa: E402
from ekyc.training.publish import PublishError, publish  # noqa: E402

BUCKET = "ekyc-models"


@pytest.fixture()
def aws_env(monkeypatch):
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "EKYC_S3_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture()
def s3(aws_env):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture()
def model_copy(tmp_path) -> Path:
    """The bundled model and its metadata, copied (publish reads both)."""
    target = tmp_path / "model" / "liveness.onnx"
    target.parent.mkdir()
    shutil.copy(DEFAULT_MODEL, target)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), target.with_suffix(".json"))
    return target


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_paths_pass_through(tmp_path):
    assert resolve_model(str(tmp_path / "m.onnx")) == tmp_path / "m.onnx"
    assert resolve_model("models/liveness.onnx") == Path("models/liveness.onnx")


def test_publish_then_resolve_round_trip(s3, model_copy, tmp_path):
    report = tmp_path / "liveness-test.md"
    report.write_text("# report\n")
    manifest = publish(model_copy, f"s3://{BUCKET}/models/liveness", [report])
    version = json.loads(model_copy.with_suffix(".json").read_text())["version"]
    base = f"models/liveness/{version}"
    assert manifest["model_uri"] == f"s3://{BUCKET}/{base}/liveness.onnx"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {f"{base}/liveness.onnx", f"{base}/liveness.json", f"{base}/reports/liveness-test.md",
                    f"{base}/manifest.json"}
    head = s3.head_object(Bucket=BUCKET, Key=f"{base}/liveness.onnx")
    assert head["Metadata"]["sha256"] == _sha(model_copy)
    listed = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{base}/manifest.json")["Body"].read())
    assert {o["key"]: o["sha256"] for o in listed["objects"]}[f"{base}/liveness.onnx"] == _sha(model_copy)

    cache = tmp_path / "cache"
    local = resolve_model(manifest["model_uri"], cache_dir=cache)
    assert local == cache / BUCKET / base / "liveness.onnx"
    assert local.read_bytes() == model_copy.read_bytes()
    assert local.with_suffix(".json").read_text() == model_copy.with_suffix(".json").read_text()
    # downloaded once: the second call is served from the cache, even with S3 gone
    s3.delete_object(Bucket=BUCKET, Key=f"{base}/liveness.onnx")
    assert resolve_model(manifest["model_uri"], cache_dir=cache) == local
    # the same bytes again are a no-op; other bytes under the same version are refused
    again = publish(model_copy, f"s3://{BUCKET}/models/liveness", [report])
    assert [o["uploaded"] for o in again["objects"]] == [True, False, False]  # the deleted .onnx was re-uploaded
    report.write_text("# changed\n")
    with pytest.raises(PublishError, match="immutable"):
        publish(model_copy, f"s3://{BUCKET}/models/liveness", [report])


def test_cache_dir_from_environment(s3, model_copy, tmp_path, monkeypatch):
    manifest = publish(model_copy, f"s3://{BUCKET}/m")
    monkeypatch.setenv("EKYC_MODEL_CACHE", str(tmp_path / "envcache"))
    local = resolve_model(manifest["model_uri"])
    assert local.is_relative_to(tmp_path / "envcache") and local.is_file()


def test_hash_mismatch_is_refused_and_leaves_nothing(s3, model_copy, tmp_path):
    manifest = publish(model_copy, f"s3://{BUCKET}/m")
    key = manifest["model_uri"].split(f"s3://{BUCKET}/", 1)[1]
    s3.put_object(Bucket=BUCKET, Key=key, Body=model_copy.read_bytes()[:-10] + b"tampered!!")
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match="sha256 mismatch") as raised:
        resolve_model(manifest["model_uri"], cache_dir=cache)
    assert "\n" not in str(raised.value)
    assert not list(cache.rglob("*.onnx")) and not list(cache.rglob("*.json"))


def test_a_corrupted_cache_is_downloaded_again(s3, model_copy, tmp_path):
    manifest = publish(model_copy, f"s3://{BUCKET}/m")
    cache = tmp_path / "cache"
    local = resolve_model(manifest["model_uri"], cache_dir=cache)
    local.write_bytes(b"garbage")
    assert resolve_model(manifest["model_uri"], cache_dir=cache).read_bytes() == model_copy.read_bytes()


def test_missing_objects_and_bad_uris_are_one_line_errors(s3, tmp_path):
    with pytest.raises(ModelLoadError, match="model not found: s3://ekyc-models/nope/liveness"):
        resolve_model(f"s3://{BUCKET}/nope/liveness.onnx", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="bucket not found|not found"):
        resolve_model("s3://no-such-bucket/x/liveness.onnx", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match=r"\.onnx"):
        resolve_model(f"s3://{BUCKET}/x/liveness.json", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="s3://bucket/key"):
        resolve_model("s3://just-a-bucket", cache_dir=tmp_path)


def test_metadata_without_hash_is_refused(s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="m/liveness.onnx", Body=b"onnx")
    s3.put_object(Bucket=BUCKET, Key="m/liveness.json", Body=json.dumps({"version": "x"}).encode())
    with pytest.raises(ModelLoadError, match="onnx.sha256"):
        resolve_model(f"s3://{BUCKET}/m/liveness.onnx", cache_dir=tmp_path)


def test_unreachable_s3_is_a_clear_error(aws_env, monkeypatch, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("EKYC_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelLoadError, match="cannot reach S3") as raised:
        resolve_model(f"s3://{BUCKET}/m/liveness.onnx", cache_dir=tmp_path)
    assert "\n" not in str(raised.value)


def test_publish_refuses_stale_metadata(s3, model_copy):
    meta = json.loads(model_copy.with_suffix(".json").read_text())
    meta["onnx"]["sha256"] = "0" * 64
    model_copy.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(PublishError, match="re-export"):
        publish(model_copy, f"s3://{BUCKET}/m")


def test_publish_cli(s3, model_copy, capsys):
    from ekyc.training.cli import main

    assert main(["publish", str(model_copy), f"s3://{BUCKET}/cli"]) == 0
    out = capsys.readouterr().out
    assert "ekyc-server --model s3://ekyc-models/cli/" in out
    assert main(["publish", str(model_copy), "not-s3"]) == 1
    assert "s3://bucket/prefix" in capsys.readouterr().err


def test_server_serves_the_model_resolved_from_s3(s3, model_copy, tmp_path, face_jpeg):
    """Publish a model with its own version, resolve it from S3, serve it, and Verify reports that version."""
    meta = json.loads(model_copy.with_suffix(".json").read_text())
    meta["version"] = "liveness-from-s3-test"
    model_copy.with_suffix(".json").write_text(json.dumps(meta))
    manifest = publish(model_copy, f"s3://{BUCKET}/served")
    local = resolve_model(manifest["model_uri"], cache_dir=tmp_path / "cache")
    server, port = start_server(model__path=str(local))
    try:
        with LivenessClient(f"127.0.0.1:{port}", timeout=30) as client:
            response = client.verify(face_jpeg)
        assert response.model_version == "liveness-from-s3-test"
        assert 0.0 <= response.liveness_score <= 1.0
    finally:
        server.stop(0)
