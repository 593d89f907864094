"""ekyc-client as a user runs it: output formats, exit codes, clean errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import darken, flat_image, start_server

CLIENT = str(Path(sys.executable).parent / "ekyc-client")


def run_client(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLIENT, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def accepting_server():
    """Threshold 1.0: every scored face is live, whatever the model says."""
    server, port = start_server(model__threshold=1.0)
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture(scope="module")
def rejecting_server():
    """Threshold 0.0: every scored face is a spoof."""
    server, port = start_server(model__threshold=0.0)
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture()
def faceless(tmp_path) -> Path:
    path = tmp_path / "wall.png"
    path.write_bytes(flat_image())
    return path


def test_verify_json_prints_every_field_and_the_path(rejecting_server, face_path):
    result = run_client("--server", rejecting_server, "verify", str(face_path), "--json")
    assert result.returncode == 2, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["path"] == str(face_path)
    assert record["is_live"] is False  # printed although it is the default value
    assert record["status"] == "VERIFY_STATUS_SUCCESS"
    for field in ("liveness_score", "confidence", "threshold", "model_version", "quality", "request_id"):
        assert field in record
    assert record["quality"]["scores"]["face_count"] == 1


def test_live_images_exit_zero_with_human_output(accepting_server, face_path):
    result = run_client("--server", accepting_server, "verify", str(face_path), str(face_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("LIVE") == 2 and str(face_path) in result.stdout


def test_quality_failure_exits_three_and_spoof_outranks_it(rejecting_server, accepting_server, face_path, faceless):
    quality_only = run_client("--server", accepting_server, "verify", str(face_path), str(faceless))
    assert quality_only.returncode == 3
    assert "QUALITY_FAILED (NO_FACE)" in quality_only.stdout
    mixed = run_client("--server", rejecting_server, "verify", str(faceless), str(face_path))
    assert mixed.returncode == 2


def test_no_quality_flag_skips_the_gate(accepting_server, face_path, tmp_path):
    from PIL import Image
    import numpy as np

    dark = tmp_path / "dark.jpg"
    Image.fromarray(darken(np.asarray(Image.open(face_path).convert("RGB")))).save(dark)
    gated = run_client("--server", accepting_server, "verify", str(dark), "--json")
    ungated = run_client("--server", accepting_server, "verify", str(dark), "--no-quality", "--json")
    assert gated.returncode == 3 and json.loads(gated.stdout)["status"] == "VERIFY_STATUS_QUALITY_FAILED"
    assert ungated.returncode == 0 and json.loads(ungated.stdout)["status"] == "VERIFY_STATUS_SUCCESS"


def test_check_quality_exit_codes_and_json(target, face_path, faceless):
    passed = run_client("--server", target, "check-quality", str(face_path), "--json")
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["quality"]["passed"] is True
    failed = run_client("--server", target, "check-quality", str(face_path), str(faceless))
    assert failed.returncode == 3
    assert "PASSED" in failed.stdout and "FAILED (NO_FACE)" in failed.stdout


def test_unreadable_and_invalid_files_exit_one_without_traceback(target, face_path, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = run_client(
        "--server", target, "verify", str(tmp_path / "missing.jpg"), str(text), str(face_path), "--json"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert "missing.jpg: cannot read file" in errors[0]
    assert "notes.txt: INVALID_ARGUMENT" in errors[1]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(tmp_path / "missing.jpg"), str(text), str(face_path)]
    assert records[1]["error"]["code"] == "INVALID_ARGUMENT"
    assert "status" in records[2]  # the good image is still verified


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_is_one_line_and_exit_one(face_path):
    result = run_client("--server", f"127.0.0.1:{_free_port()}", "--timeout", "3", "verify", str(face_path), str(face_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "UNAVAILABLE" in result.stderr
    health = run_client("--server", f"127.0.0.1:{_free_port()}", "--timeout", "3", "health")
    assert health.returncode == 1 and "Traceback" not in health.stderr
    assert len(health.stderr.strip().splitlines()) == 1


def test_health_and_server_from_environment(target):
    result = run_client("health", env={"EKYC_SERVER": target})
    assert result.returncode == 0
    assert result.stdout.strip() == "SERVING"


def test_usage_errors_exit_one_not_the_spoof_code():
    result = run_client("verify")
    assert result.returncode == 1 and "usage" in result.stderr.lower()
    assert run_client("--help").returncode == 0


def test_folders_are_walked_for_every_format_the_server_decodes(accepting_server, face_rgb, tmp_path):
    """WebP was skipped by the client's folder walk although the server accepts it."""
    from conftest import encode

    root = tmp_path / "formats"
    (root / "nested").mkdir(parents=True)
    (root / "face.jpg").write_bytes(encode(face_rgb, "JPEG"))
    (root / "nested" / "face.WEBP").write_bytes(encode(face_rgb, "WEBP", quality=90))
    (root / "face.png").write_bytes(encode(face_rgb, "PNG"))
    (root / "notes.txt").write_text("not an image")
    result = run_client("--server", accepting_server, "verify", str(root), "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(r["path"]).name for r in records) == ["face.WEBP", "face.jpg", "face.png"]
    assert all(r["status"] == "VERIFY_STATUS_SUCCESS" and r["is_live"] for r in records)
