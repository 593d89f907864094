"""The proto contract: buf lint, generated code up to date, runtime versions compatible."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ekyc.v1 import liveness_pb2, liveness_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "client" / "generated"


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed; `make test` installs it"
    return found


def test_buf_lint_passes():
    result = subprocess.run([_tool("buf"), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_catches_a_violation(tmp_path):
    """The lint configuration is live: a service without the Service suffix fails."""
    (tmp_path / "protos" / "ekyc" / "v1").mkdir(parents=True)
    (tmp_path / "buf.yaml").write_text((ROOT / "buf.yaml").read_text())
    shutil.copytree(ROOT / "third_party", tmp_path / "third_party")
    (tmp_path / "protos" / "ekyc" / "v1" / "bad.proto").write_text(
        'syntax = "proto3";\npackage ekyc.v1;\nmessage Ping {}\nservice Liveness { rpc Go(Ping) returns (Ping); }\n'
    )
    result = subprocess.run([_tool("buf"), "lint"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SERVICE_SUFFIX" in result.stdout + result.stderr or "Service" in result.stdout


def test_no_breaking_change_since_the_contract_was_first_committed():
    """buf breaking (FILE rules) against the oldest commit of the proto that git can see."""
    found = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "protos/ekyc/v1/liveness.proto"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert found.returncode == 0, found.stderr
    commits = found.stdout.split()
    assert commits, "the proto is not in git history"
    # The protos module against the same folder then: third_party/ (the googleapis imports) came later.
    against = f".git#ref={commits[-1]},subdir=protos"
    result = subprocess.run([_tool("buf"), "breaking", "protos", "--against", against], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_changed_field(tmp_path):
    """The breaking check is live: the contract with a field's type changed fails it."""
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copytree(ROOT / "third_party", tmp_path / "third_party")
    (tmp_path / "buf.yaml").write_text((ROOT / "buf.yaml").read_text())
    proto = tmp_path / "protos" / "ekyc" / "v1" / "liveness.proto"
    text = proto.read_text()
    assert "int32 face_count = 4;" in text
    proto.write_text(text.replace("int32 face_count = 4;", "int64 face_count = 4;"))
    result = subprocess.run([_tool("buf"), "breaking", "protos", "--against", str(ROOT / "protos")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "face_count" in result.stdout + result.stderr


def test_vendored_googleapis_protos_are_the_runtime_packages_copies():
    """buf and protoc read third_party/googleapis; at run time the generated code imports
    google.api from googleapis-common-protos: the two must be the same files."""
    from google.api import annotations_pb2

    installed = Path(annotations_pb2.__file__).parent
    vendored = sorted((ROOT / "third_party" / "googleapis" / "google" / "api").glob("*.proto"))
    assert [p.name for p in vendored] == ["annotations.proto", "http.proto"]
    for path in vendored:
        assert path.read_bytes() == (installed / path.name).read_bytes(), f"{path.name} differs from the installed copy"


def test_every_rpc_has_an_http_binding():
    from google.api import annotations_pb2

    service = liveness_pb2.DESCRIPTOR.services_by_name["LivenessService"]
    for method in service.methods:
        assert method.GetOptions().HasExtension(annotations_pb2.http), f"{method.name} has no google.api.http"


def test_generated_code_is_fresh(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from generate_protos import generate
    finally:
        sys.path.pop(0)
    fresh = generate(tmp_path)
    assert fresh, "protoc wrote nothing"
    for path in fresh:
        relative = path.relative_to(tmp_path)
        committed = GENERATED / relative
        assert committed.exists(), f"{relative} is not committed; run `make protos`"
        assert committed.read_bytes() == path.read_bytes(), f"{relative} is stale; run `make protos`"


def test_grpcio_is_at_least_the_generating_version():
    generated = tuple(int(p) for p in liveness_pb2_grpc.GRPC_GENERATED_VERSION.split("."))
    installed = tuple(int(p) for p in importlib.metadata.version("grpcio").split(".")[:3])
    assert installed >= generated
    requirement = next(
        r for r in importlib.metadata.requires("ekyc") if r.startswith("grpcio>=")
    )
    pinned = tuple(int(p) for p in requirement.split(">=")[1].split(".")[:3])
    assert pinned >= generated, f"pyproject pins {requirement}, stubs need {generated}"


def test_service_has_its_four_rpcs():
    service = liveness_pb2.DESCRIPTOR.services_by_name["LivenessService"]
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {"CheckQuality", "Verify", "VerifyStream", "CompareFaces"}
    stream = methods["VerifyStream"]
    assert stream.client_streaming and stream.server_streaming
    compare = methods["CompareFaces"]
    assert not compare.client_streaming and not compare.server_streaming
    assert compare.output_type.fields_by_name["match"].message_type.name == "FaceMatch"
