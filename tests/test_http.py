"""The HTTP/JSON API: routes from the annotations, the three body forms, parity with gRPC,
errors and statuses, the size limit, API keys, rate limits, health and the OpenAPI document.

Every test talks to a real uvicorn on a loopback port in front of a real server with the
bundled models.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import json_format
from PIL import Image

from conftest import DATA_DIR, encode, manifest_rows, packaged_face_path
from ekyc.client import LivenessClient, LivenessError
from ekyc.server.gateway import HTTP_STATUS, SECURITY_HEADERS, http_bindings, to_json_dict
from ekyc.v1 import liveness_pb2 as pb
from httpkit import SERVICE, start_http

JSON_ERROR_KEYS = {"code", "message"}


@pytest.fixture(scope="module")
def http():
    """ekyc-server (in-process) serving gRPC and HTTP, loaded."""
    endpoint = start_http()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="module")
def target(http) -> str:
    """The same server's gRPC address."""
    return http.target


@pytest.fixture(scope="module")
def base(http) -> str:
    return http.base


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == JSON_ERROR_KEYS, body
    assert body["code"] == code, body
    assert body["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


# ------------------------------------------------------------------------------ routes


def test_every_annotated_binding_is_served_and_nothing_else(http):
    """The app's API routes are exactly the google.api.http bindings of the descriptors."""
    bindings = http_bindings(SERVICE)
    expected = {(b.verb, b.path) for b in bindings}
    assert ("POST", "/v1/liveness:verify") in expected and ("POST", "/v1/liveness") in expected
    assert ("POST", "/v1/quality:check") in expected
    assert {b.method.name for b in bindings} == {m.name for m in SERVICE.methods}
    served = set()
    for route in http.gateway.app().app.routes:
        if getattr(route, "path", "").startswith("/v1/"):
            served |= {(verb, route.path) for verb in route.methods if verb != "HEAD"}
    assert served == expected


def test_a_new_annotated_rpc_is_served_without_gateway_changes(tmp_path):
    """A service the gateway has never seen (built at run time, with its own annotation) gets
    its route, its request decoding and its response encoding from the descriptors alone."""
    from google.api import annotations_pb2, http_pb2
    from google.protobuf import descriptor_pb2, descriptor_pool

    from ekyc.server.gateway import Gateway
    from ekyc.server.http_server import HttpServer

    pool = descriptor_pool.DescriptorPool()
    for module in (descriptor_pb2, http_pb2, annotations_pb2):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        pool.Add(file)
    file = descriptor_pb2.FileDescriptorProto(name="echo.proto", package="test.v1", syntax="proto3",
                                              dependency=["google/api/annotations.proto"])
    message = file.message_type.add(name="EchoRequest")
    message.field.add(name="photo", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name="photo")
    message.field.add(name="times", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name="times")
    reply = file.message_type.add(name="EchoReply")
    reply.field.add(name="size", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name="size")
    service = file.service.add(name="EchoService")
    method = service.method.add(name="Echo", input_type=".test.v1.EchoRequest", output_type=".test.v1.EchoReply")
    method.options.Extensions[annotations_pb2.http].post = "/v1/echo:measure"
    method.options.Extensions[annotations_pb2.http].body = "*"
    pool.Add(file)
    echo = pool.FindServiceByName("test.v1.EchoService")

    from ekyc.server.gateway import message_class

    reply_class = message_class(echo.methods_by_name["Echo"].output_type)

    class EchoServicer:
        def Echo(self, request, context):
            return reply_class(size=len(request.photo) * request.times)

    http = HttpServer(Gateway(EchoServicer(), echo, is_serving=lambda: True, web_dir=None).app(), "127.0.0.1", 0)
    port = http.start()
    try:
        response = requests.post(f"http://127.0.0.1:{port}/v1/echo:measure?times=3", data=b"12345",
                                 headers={"Content-Type": "image/png"}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json() == {"size": 15}
        response = requests.post(f"http://127.0.0.1:{port}/v1/echo:measure", json={"photo": b64(b"ab"), "times": 2},
                                 timeout=30)
        assert response.json() == {"size": 4}
    finally:
        http.stop(0)


# ------------------------------------------------------------------------------ bodies and parity


def test_json_multipart_and_raw_bodies_give_the_grpc_answer(base, target, face_jpeg):
    with LivenessClient(target, timeout=60) as client:
        expected = to_json_dict(client.verify(face_jpeg, request_id="same", profile="strict"))
    answers = {
        "json": requests.post(f"{base}/v1/liveness:verify", timeout=60,
                              json={"image": b64(face_jpeg), "requestId": "same", "profile": "strict"}),
        "json proto names": requests.post(f"{base}/v1/liveness", timeout=60,
                                          json={"image": b64(face_jpeg), "request_id": "same", "profile": "strict"}),
        "multipart": requests.post(f"{base}/v1/liveness:verify", timeout=60,
                                   files={"image": ("selfie.jpg", face_jpeg, "image/jpeg")},
                                   data={"requestId": "same", "profile": "strict"}),
        "raw": requests.post(f"{base}/v1/liveness?requestId=same&profile=strict", data=face_jpeg, timeout=60,
                             headers={"Content-Type": "image/jpeg"}),
    }
    for form, response in answers.items():
        assert response.status_code == 200, (form, response.text)
        assert response.json() == expected, form
    assert expected["status"] == "VERIFY_STATUS_SUCCESS" and expected["profile"] == "strict"


def test_multipart_form_fields_reach_the_request(base, face_jpeg):
    """A form field sets its field: the quality gate off means no quality verdict is enforced."""
    dark = encode((np.asarray(Image.open(io.BytesIO(face_jpeg)).convert("RGB")) * 0.08).astype(np.uint8))
    gated = requests.post(f"{base}/v1/liveness:verify", files={"image": ("d.jpg", dark, "image/jpeg")}, timeout=60)
    assert gated.json()["status"] == "VERIFY_STATUS_QUALITY_FAILED"
    ungated = requests.post(f"{base}/v1/liveness:verify", files={"image": ("d.jpg", dark, "image/jpeg")},
                            data={"enableQualityChecks": "false"}, timeout=60)
    assert ungated.json()["status"] == "VERIFY_STATUS_SUCCESS"


def parity_images() -> list[tuple[str, bytes]]:
    """20 real images across the shared data's setups (live and spoof); without the data,
    variants of the packaged portrait (crops, scales, light) and a flat image."""
    if DATA_DIR is not None:
        rows = manifest_rows("test")
        by_group: dict[tuple, list] = {}
        for row in sorted(rows, key=lambda r: r["path"]):
            by_group.setdefault((row["source"], row["label"]), []).append(row)
        picked, groups = [], sorted(by_group)
        index = 0
        while len(picked) < 20:
            group = by_group[groups[index % len(groups)]]
            step = index // len(groups)
            picked.append(group[(step * 7919) % len(group)])
            index += 1
        return [(row["path"], (DATA_DIR / row["path"]).read_bytes()) for row in picked]
    rgb = np.asarray(Image.open(packaged_face_path()).convert("RGB"))
    height, width = rgb.shape[:2]
    variants = [("packaged", packaged_face_path().read_bytes())]
    for factor in (0.1, 0.6, 1.3):
        variants.append((f"light x{factor}", encode(np.clip(rgb * factor, 0, 255).astype(np.uint8))))
    for crop in (0.6, 0.8):
        h, w = int(height * crop), int(width * crop)
        variants.append((f"crop {crop}", encode(np.ascontiguousarray(rgb[:h, (width - w) // 2:(width + w) // 2]))))
    variants.append(("mirrored", encode(np.ascontiguousarray(rgb[:, ::-1]))))
    variants.append(("flat", encode(np.full((480, 640, 3), 128, np.uint8), "PNG")))
    return variants


def test_parity_grpc_and_http_give_equal_proto3_json_field_by_field(base, target):
    images = parity_images()
    if DATA_DIR is not None:
        assert len(images) == 20
    compared = 0
    with LivenessClient(target, timeout=60) as client:
        for index, (name, data) in enumerate(images):
            request_id = f"parity-{index}"
            via_grpc = to_json_dict(client.verify(data, request_id=request_id))
            via_http = requests.post(f"{base}/v1/liveness:verify", json={"image": b64(data), "requestId": request_id},
                                     timeout=60)
            assert via_http.status_code == 200, (name, via_http.text)
            http_json = via_http.json()
            assert set(http_json) == set(via_grpc), name
            for field in via_grpc:
                assert http_json[field] == via_grpc[field], (name, field)
            # the JSON decodes back into the same message
            assert json_format.ParseDict(http_json, pb.VerifyResponse()) == json_format.ParseDict(
                via_grpc, pb.VerifyResponse())
            compared += 1
    assert compared == len(images)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "name, kwargs, status, code",
    [
        ("non-image", {"data": b"this is not an image", "headers": {"Content-Type": "image/jpeg"}}, 400,
         "INVALID_ARGUMENT"),
        ("broken JSON", {"data": b'{"image": ', "headers": {"Content-Type": "application/json"}}, 400,
         "INVALID_ARGUMENT"),
        ("unknown field", {"json": {"image": "", "colour": "red"}}, 400, "INVALID_ARGUMENT"),
        ("bad base64", {"json": {"image": "@@@"}}, 400, "INVALID_ARGUMENT"),
        ("wrong type", {"json": {"enableQualityChecks": "maybe"}}, 400, "INVALID_ARGUMENT"),
        ("unknown profile", {"params": {"profile": "paranoid"}, "data": b"x",
                             "headers": {"Content-Type": "image/jpeg"}}, 400, "INVALID_ARGUMENT"),
        ("long request id", {"json": {"requestId": "r" * 500}}, 400, "INVALID_ARGUMENT"),
        ("unknown query field", {"params": {"colour": "red"}, "data": b"x", "headers": {"Content-Type": "image/png"}},
         400, "INVALID_ARGUMENT"),
        ("text body", {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "INVALID_ARGUMENT"),
        ("multipart file for a text field", {"files": {"profile": ("p.jpg", b"x", "image/jpeg")}}, 400,
         "INVALID_ARGUMENT"),
        ("bad Grpc-Timeout", {"json": {}, "headers": {"Grpc-Timeout": "soon"}}, 400, "INVALID_ARGUMENT"),
    ],
)
def test_bad_requests_get_a_status_and_a_json_error(base, name, kwargs, status, code):
    response = requests.post(f"{base}/v1/liveness:verify", timeout=60, **kwargs)
    body = assert_error(response, status, code)
    assert len(body["message"]) < 500


def test_a_deadline_that_passed_is_504(base, face_jpeg):
    response = requests.post(f"{base}/v1/liveness:verify", data=face_jpeg, timeout=60,
                             headers={"Content-Type": "image/jpeg", "Grpc-Timeout": "1n"})
    assert_error(response, 504, "DEADLINE_EXCEEDED")


def test_unknown_paths_and_verbs(base):
    assert_error(requests.get(f"{base}/v1/nothing", timeout=30), 404, "NOT_FOUND")
    assert_error(requests.get(f"{base}/v1/liveness:verify", timeout=30), 405, "UNIMPLEMENTED")


def test_status_table_is_the_usual_one():
    """The mapping the issue names; the responses above show it in use."""
    usual = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
             "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        expected = usual.get(code.name)
        if expected is not None:
            assert HTTP_STATUS[code] == expected, code
        else:
            assert HTTP_STATUS[code] >= 400, code


def test_every_response_carries_the_security_headers(base):
    for response in (requests.get(f"{base}/", timeout=30), requests.get(f"{base}/healthz", timeout=30),
                     requests.post(f"{base}/v1/quality:check", data=b"x", headers={"Content-Type": "image/png"},
                                   timeout=30)):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)


# ------------------------------------------------------------------------------ size limit


@pytest.fixture(scope="module")
def small_limit():
    """A server taking at most 300 kB per request."""
    endpoint = start_http(server__max_message_bytes=300_000)
    yield endpoint
    endpoint.stop()


def _raw_request(port: int, head: bytes, body: bytes = b"", wait: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head + body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_a_declared_oversize_body_is_refused_before_it_is_sent(small_limit):
    """Content-Length beyond the limit: 413 at once, though the body never comes."""
    head = (b"POST /v1/liveness:verify HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 50000000\r\n\r\n")
    started = time.monotonic()
    answer = _raw_request(small_limit.server.http_port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("form", ["raw", "json", "multipart"])
def test_a_streamed_oversize_body_is_refused(small_limit, form):
    big = b"\xff" * 600_000

    def chunks():  # no Content-Length: chunked transfer, counted as it arrives
        for start in range(0, len(big), 16384):
            yield big[start:start + 16384]

    url = f"{small_limit.base}/v1/liveness:verify"
    if form == "raw":
        response = requests.post(url, data=chunks(), headers={"Content-Type": "image/jpeg"}, timeout=60)
    elif form == "json":
        response = requests.post(url, data=json.dumps({"image": b64(big)}).encode(), timeout=60,
                                 headers={"Content-Type": "application/json"})
    else:
        response = requests.post(url, files={"image": ("big.jpg", big, "image/jpeg")}, timeout=60)
    assert_error(response, 413, "RESOURCE_EXHAUSTED")


def test_a_body_under_the_limit_still_works(small_limit, face_jpeg):
    assert len(face_jpeg) < 300_000
    response = requests.post(f"{small_limit.base}/v1/quality:check", data=face_jpeg,
                             headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------------------ keys, limits, health


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """API keys on and a rate limit of 3 requests (then 1 a minute) per client."""
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text("key-main\nkey-limited\n")
    endpoint = start_http(security__api_keys_file=str(keys), limits__rate_limit_per_minute=1.0,
                          limits__rate_limit_burst=3)
    yield endpoint, endpoint.target
    endpoint.stop()


def test_api_keys_guard_the_api_not_the_page_or_health(guarded, face_jpeg):
    endpoint, _ = guarded
    url = f"{endpoint.base}/v1/quality:check"
    missing = requests.post(url, data=face_jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert_error(missing, 401, "UNAUTHENTICATED")
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = requests.post(url, data=face_jpeg, timeout=60,
                          headers={"Content-Type": "image/jpeg", "Authorization": "Bearer nope"})
    assert_error(wrong, 401, "UNAUTHENTICATED")
    right = requests.post(url, data=face_jpeg, timeout=60,
                          headers={"Content-Type": "image/jpeg", "Authorization": "Bearer key-main"})
    assert right.status_code == 200, right.text
    assert requests.get(f"{endpoint.base}/healthz", timeout=30).status_code == 200
    assert requests.get(f"{endpoint.base}/", timeout=30).status_code == 200
    assert requests.get(f"{endpoint.base}/openapi.json", timeout=30).status_code == 200


def test_rate_limit_is_shared_with_grpc(guarded, face_jpeg):
    """One bucket per client across both transports: two gRPC calls and one HTTP call use
    the burst of 3; the next HTTP call is 429, and so is the next gRPC call."""
    endpoint, grpc_target = guarded
    headers = {"Content-Type": "image/jpeg", "Authorization": "Bearer key-limited"}
    with LivenessClient(grpc_target, timeout=60, api_key="key-limited") as client:
        client.check_quality(face_jpeg)
        client.check_quality(face_jpeg)
        first = requests.post(f"{endpoint.base}/v1/quality:check", data=face_jpeg, headers=headers, timeout=60)
        assert first.status_code == 200, first.text
        refused = requests.post(f"{endpoint.base}/v1/quality:check", data=face_jpeg, headers=headers, timeout=60)
        body = assert_error(refused, 429, "RESOURCE_EXHAUSTED")
        assert "retry" in body["message"]
        with pytest.raises(LivenessError) as caught:
            client.check_quality(face_jpeg)
        assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_healthz_follows_grpc_health_and_the_api_is_503_until_loaded(face_jpeg):
    endpoint = start_http(load=False)
    server = endpoint.server
    try:
        loading = requests.get(f"{endpoint.base}/healthz", timeout=30)
        assert loading.status_code == 503 and loading.json() == {"status": "NOT_SERVING"}
        early = requests.post(f"{endpoint.base}/v1/liveness:verify", data=face_jpeg,
                              headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert_error(early, 503, "UNAVAILABLE")
        server.load()
        serving = requests.get(f"{endpoint.base}/healthz", timeout=30)
        assert serving.status_code == 200 and serving.json() == {"status": "SERVING"}
        server.health.enter_graceful_shutdown()
        assert requests.get(f"{endpoint.base}/healthz", timeout=30).status_code == 503
    finally:
        endpoint.stop()


# ------------------------------------------------------------------------------ stream


def test_verify_stream_over_http_is_ndjson_in_order_with_item_errors(base, face_jpeg):
    items = [{"request": {"image": b64(face_jpeg), "requestId": "a"}},
             {"request": {"image": b64(b"not an image"), "requestId": "b"}},
             {"request": {"image": b64(face_jpeg), "requestId": "c", "profile": "lenient"}}]
    body = "".join(json.dumps(item) + "\n" for item in items).encode()
    response = requests.post(f"{base}/v1/liveness:verifyStream", data=body, timeout=120,
                             headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["requestId"] for line in lines] == ["a", "b", "c"]
    assert lines[0]["result"]["status"] == "VERIFY_STATUS_SUCCESS"
    assert lines[1]["error"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert lines[2]["result"]["profile"] == "lenient"


def test_a_line_that_is_not_json_ends_the_stream_with_an_error_line(base, face_jpeg):
    body = (json.dumps({"request": {"image": b64(face_jpeg), "requestId": "a"}}) + "\n{not json\n").encode()
    response = requests.post(f"{base}/v1/liveness:verifyStream", data=body, timeout=120,
                             headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["requestId"] == "a" and "result" in lines[0]
    assert lines[-1]["code"] == "INVALID_ARGUMENT" and "line 2" in lines[-1]["message"]
    assert len(lines) == 2


# ------------------------------------------------------------------------------ the documented examples


def _curl_examples(path: Path) -> list[str]:
    """The shell commands of ``path``'s sh blocks that call the API on localhost:8080."""
    commands, block, current = [], False, ""
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            block = line.strip() == "```sh"
            continue
        if not block:
            continue
        line = line.split("  #")[0]  # a trailing comment
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += line
        if stripped.endswith("|"):  # a pipeline goes on on the next line
            current += " "
            continue
        if "localhost:8080" in current:
            commands.append(current)
        current = ""
    return commands


def test_the_curl_examples_of_the_readme_and_docs_work(http, tmp_path, face_jpeg):
    import shutil
    import subprocess

    from conftest import ROOT

    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is missing (Debian: apt-get install curl)")
    (tmp_path / "selfie.jpg").write_bytes(face_jpeg)
    (tmp_path / "id.jpg").write_bytes(face_jpeg)  # a reference: the same face
    (tmp_path / "photos").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "photos" / name).write_bytes(face_jpeg)
    commands = _curl_examples(ROOT / "README.md") + _curl_examples(ROOT / "docs" / "http.md")
    assert len(commands) >= 8, commands
    port = str(http.server.http_port)
    for command in commands:
        command = command.replace("localhost:8080", f"127.0.0.1:{port}")
        result = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, (command, result.stderr)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert lines, command
        for answer in lines:
            assert not ({"code", "message"} == set(answer)), (command, answer)


# ------------------------------------------------------------------------------ OpenAPI


def test_openapi_document_is_valid_and_generated_from_the_contract(base):
    from openapi_spec_validator import validate

    document = requests.get(f"{base}/openapi.json", timeout=30).json()
    validate(document)
    bindings = http_bindings(SERVICE)
    assert {(path, verb.upper()) for path, ops in document["paths"].items() for verb in ops} == {
        (b.path, b.verb) for b in bindings}
    schemas = document["components"]["schemas"]
    for binding in bindings:
        operation = document["paths"][binding.path][binding.verb.lower()]
        request_schema = schemas[binding.method.input_type.full_name]
        assert set(request_schema["properties"]) == {f.json_name for f in binding.method.input_type.fields}
        if not binding.streaming:
            content = operation["requestBody"]["content"]
            assert content["application/json"]["schema"]["$ref"].endswith(binding.method.input_type.full_name)
            assert "multipart/form-data" in content and "image/*" in content
    verify = schemas["ekyc.v1.VerifyResponse"]
    assert set(verify["properties"]) == {f.json_name for f in pb.VerifyResponse.DESCRIPTOR.fields}
    # descriptions come from the proto comments
    assert "spoof" in verify["properties"]["livenessScore"]["description"]
    assert schemas["ekyc.v1.QualityReport"]["properties"]["reasons"]["items"]["enum"] == [
        v.name for v in pb.QualityReason.DESCRIPTOR.values]
