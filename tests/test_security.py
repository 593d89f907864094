"""Who may call the service: TLS, mutual TLS, API keys; what the logs never contain."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import ServerProcess, start_server
from ekyc.client import LivenessClient, LivenessError
from ekyc.v1 import liveness_pb2 as pb

CLIENT = str(Path(sys.executable).parent / "ekyc-client")
GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, cert, key=None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


def _issue(subject: str, key, issuer_name, issuer_key, *, ca: bool = False, server: bool = False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate, and a stranger CA."""
    root = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _issue("ekyc test CA", ca_key, _name("ekyc test CA"), ca_key, ca=True)
    _write(root / "ca", ca, ca_key)
    server_key = _key()
    _write(root / "server", _issue("localhost", server_key, ca.subject, ca_key, server=True), server_key)
    client_key = _key()
    _write(root / "client", _issue("onboarding-backend", client_key, ca.subject, ca_key), client_key)
    other_key = _key()
    other = _issue("stranger CA", other_key, _name("stranger CA"), other_key, ca=True)
    _write(root / "stranger", other, other_key)
    stranger_client_key = _key()
    _write(root / "stranger-client", _issue("mallory", stranger_client_key, other.subject, other_key), stranger_client_key)
    return root


def test_tls_serves_clients_that_trust_the_ca_and_only_them(pki, face_jpeg):
    server, port = start_server(security__tls_cert=str(pki / "server.crt"), security__tls_key=str(pki / "server.key"))
    target = f"127.0.0.1:{port}"
    try:
        with LivenessClient(target, tls_ca=str(pki / "ca.crt")) as client:
            assert client.verify(face_jpeg).status == pb.VERIFY_STATUS_SUCCESS
            assert client.health() == "SERVING"
        with LivenessClient(target, timeout=5) as plaintext:
            with pytest.raises(LivenessError) as raised:
                plaintext.health()
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE
        with LivenessClient(target, timeout=5, tls_ca=str(pki / "stranger.crt")) as wrong_ca:
            with pytest.raises(LivenessError) as raised:
                wrong_ca.health()
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(pki, face_jpeg):
    server, port = start_server(
        security__tls_cert=str(pki / "server.crt"), security__tls_key=str(pki / "server.key"),
        security__tls_client_ca=str(pki / "ca.crt"),
    )
    target = f"127.0.0.1:{port}"
    try:
        with LivenessClient(target, tls_ca=str(pki / "ca.crt"), tls_cert=str(pki / "client.crt"),
                            tls_key=str(pki / "client.key")) as client:
            assert client.verify(face_jpeg).status == pb.VERIFY_STATUS_SUCCESS
        for cert, key in ((None, None), (pki / "stranger-client.crt", pki / "stranger-client.key")):
            with LivenessClient(target, timeout=5, tls_ca=str(pki / "ca.crt"), tls_cert=cert and str(cert),
                                tls_key=key and str(key)) as refused:
                with pytest.raises(LivenessError) as raised:
                    refused.health()
                assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_cli_speaks_tls_and_mtls(pki, face_path):
    server, port = start_server(
        security__tls_cert=str(pki / "server.crt"), security__tls_key=str(pki / "server.key"),
        security__tls_client_ca=str(pki / "ca.crt"),
    )
    try:
        result = subprocess.run(
            [CLIENT, "--server", f"localhost:{port}", "--tls-ca", str(pki / "ca.crt"), "--tls-cert",
             str(pki / "client.crt"), "--tls-key", str(pki / "client.key"), "verify", str(face_path), "--json"],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode in (0, 2), result.stderr
        assert json.loads(result.stdout)["status"] == "VERIFY_STATUS_SUCCESS"
        missing = subprocess.run(
            [CLIENT, "--server", f"localhost:{port}", "--tls-ca", str(pki / "nope.crt"), "health"],
            capture_output=True, text=True, timeout=60,
        )
        assert missing.returncode == 1 and "cannot read CA file" in missing.stderr and "Traceback" not in missing.stderr
    finally:
        server.stop(0)


@pytest.fixture()
def keys_file(tmp_path) -> Path:
    path = tmp_path / "keys.txt"
    hashed = hashlib.sha256(b"second-key-kept-as-digest").hexdigest()
    path.write_text(f"# onboarding backend\nfirst-plain-key\n{hashed}\n\n")
    return path


def test_api_keys_plain_and_hashed_are_accepted_others_are_unauthenticated(keys_file, face_jpeg):
    server, port = start_server(security__api_keys_file=str(keys_file))
    target = f"127.0.0.1:{port}"
    try:
        for key in ("first-plain-key", "second-key-kept-as-digest"):
            with LivenessClient(target, api_key=key) as client:
                assert client.verify(face_jpeg).status == pb.VERIFY_STATUS_SUCCESS
                assert len(list(client.verify_stream([pb.VerifyRequest(image=face_jpeg)]))) == 1
        digest = hashlib.sha256(b"second-key-kept-as-digest").hexdigest()
        for key in (None, "wrong-key", digest, "first-plain-key2", "FIRST-PLAIN-KEY"):
            with LivenessClient(target, api_key=key) as client:
                for call in (lambda c: c.verify(face_jpeg), lambda c: c.check_quality(face_jpeg),
                             lambda c: list(c.verify_stream([pb.VerifyRequest(image=face_jpeg)]))):
                    with pytest.raises(LivenessError) as raised:
                        call(client)
                    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED, key
                assert client.health() == "SERVING"  # health stays open for load balancers
    finally:
        server.stop(0)


def test_api_keys_from_environment_and_reflection_switch(face_jpeg):
    env = {"EKYC_API_KEYS": "alpha-key, beta-key"}
    with ServerProcess(env=env) as open_reflection:
        open_reflection.wait_serving()
        with LivenessClient(open_reflection.target, api_key="beta-key") as client:
            assert client.verify(face_jpeg).status == pb.VERIFY_STATUS_SUCCESS
        listing = subprocess.run([GRPCURL, "-plaintext", open_reflection.target, "list"],
                                 capture_output=True, text=True, timeout=60)
        assert "ekyc.v1.LivenessService" in listing.stdout  # reflection needs no key
    with ServerProcess("--no-reflection", env=env) as closed:
        closed.wait_serving()
        listing = subprocess.run([GRPCURL, "-plaintext", closed.target, "list"], capture_output=True, text=True,
                                 timeout=60)
        assert listing.returncode != 0 and "ekyc.v1.LivenessService" not in listing.stdout


def test_keys_images_and_scores_never_reach_the_logs(face_jpeg, keys_file):
    secret = "first-plain-key"
    with ServerProcess("--api-keys-file", str(keys_file)) as server:
        server.wait_serving()
        with LivenessClient(server.target, api_key=secret) as client:
            response = client.verify(face_jpeg, request_id="privacy-1")
            client.check_quality(face_jpeg, request_id="privacy-2")
            list(client.verify_stream([pb.VerifyRequest(image=face_jpeg, request_id="privacy-3")]))
        with LivenessClient(server.target, api_key="guess-" + secret) as stranger:
            with pytest.raises(LivenessError):
                stranger.verify(face_jpeg)
        server.process.terminate()
        server.rest_of_log()
        stderr = "".join(server.stderr_lines)
    text = json.dumps(server.log) + stderr
    ours = json.dumps(server.log)  # the JSON log; stderr holds MediaPipe's own start-up lines
    assert "privacy-1" in text  # the request was logged ...
    assert secret not in text and "Bearer" not in text  # ... but never the key,
    assert face_jpeg[200:232].hex() not in text and face_jpeg[200:232].decode("latin-1") not in text  # nor the image,
    score = f"{response.liveness_score:.4f}"
    assert score not in text and "liveness_score" not in ours  # nor the score,
    assert "face_box" not in ours and "landmark" not in ours and "yaw" not in ours  # nor the face's geometry
    assert any(entry.get("code") == "UNAUTHENTICATED" for entry in server.log)


def test_unreadable_keys_file_and_half_tls_config_stop_the_server(tmp_path, pki):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ekyc-server"), "--port", "0", "--api-keys-file", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "cannot read API keys file" in result.stderr
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ekyc-server"), "--port", "0", "--tls-cert", str(pki / "server.crt")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "tls_cert and security.tls_key go together" in result.stderr


def test_rate_limit_per_client_refuses_the_excess_with_a_retry_hint(face_jpeg):
    server, port = start_server(limits__rate_limit_per_minute=6.0, limits__rate_limit_burst=3)
    try:
        codes = []
        with LivenessClient(f"127.0.0.1:{port}") as client:
            for _ in range(5):
                try:
                    client.check_quality(face_jpeg)
                    codes.append("OK")
                except LivenessError as error:
                    codes.append(error.code.name)
                    assert "retry in" in error.details
            streamed = list(client.verify_stream([pb.VerifyRequest(image=face_jpeg, request_id="s")]))
        assert codes[:3] == ["OK"] * 3 and set(codes[3:]) == {"RESOURCE_EXHAUSTED"}
        assert streamed[0].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    finally:
        server.stop(0)


def test_stream_longer_than_the_limit_ends_after_answering_the_allowed_items(face_jpeg):
    server, port = start_server(limits__max_stream_items=3)
    try:
        received = []
        with LivenessClient(f"127.0.0.1:{port}") as client:
            with pytest.raises(LivenessError) as raised:
                for response in client.verify_stream(pb.VerifyRequest(image=face_jpeg, request_id=str(i)) for i in range(6)):
                    received.append(response.request_id)
        assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 3 items" in raised.value.details
        assert received == ["0", "1", "2"]
    finally:
        server.stop(0)
