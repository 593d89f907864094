"""The client installs light, and every import name lives under the ekyc namespace."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"onnxruntime", "opencv-python", "opencv-python-headless", "opencv-contrib-python", "mediapipe", "torch", "torchvision"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("ekyc-*.whl")
    return found


def test_client_install_resolves_without_heavy_packages(wheel, tmp_path):
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q", "--report", str(report), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"grpcio", "protobuf", "grpcio-health-checking", "ekyc"} <= names
    assert not names & HEAVY, names & HEAVY
    assert "boto3" not in names  # only with the s3 extra


def test_wheel_has_only_the_ekyc_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    assert {top for top in tops if not top.endswith(".dist-info")} == {"ekyc"}
    for module in ("ekyc/v1/liveness_pb2.py", "ekyc/v1/liveness_pb2.pyi", "ekyc/v1/liveness_pb2_grpc.py",
                   "ekyc/client/cli.py", "ekyc/server/default.toml"):
        assert module in names, module


def test_client_imports_without_server_dependencies(tmp_path):
    """Import the client with onnxruntime, cv2, mediapipe, numpy, torch and boto3 (the s3
    extra, imported only for s3:// addresses) made unimportable."""
    code = (
        "import sys\n"
        "for name in ('onnxruntime', 'cv2', 'mediapipe', 'torch', 'numpy', 'PIL', 'boto3', 'botocore'):\n"
        "    sys.modules[name] = None\n"
        "from ekyc.client import LivenessClient\n"
        "from ekyc.client.cli import main\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_s3_extra_adds_boto3_to_the_client_install(wheel, tmp_path):
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q", "--report", str(report),
         f"ekyc[s3] @ {wheel.as_uri()}"],
        check=True, capture_output=True, timeout=300,
    )
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"boto3", "grpcio", "ekyc"} <= names and not names & HEAVY, names
