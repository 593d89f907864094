"""A corpus of bad and hostile inputs, generated here: each gets a typed answer, none hurts the server."""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from conftest import ServerProcess, encode
from ekyc.client import LivenessClient, LivenessError
from ekyc.v1 import liveness_pb2 as pb

ACCEPTABLE = {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}
MEMORY_GROWTH_LIMIT_MB = 60


def _png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png(width: int, height: int, rows: bytes, bad_crc: bool = False) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(rows)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat, 0xDEADBEEF if bad_crc else None)
            + _png_chunk(b"IEND", b""))


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _broken_huffman(jpeg: bytes) -> bytes:
    """Every DHT segment's code-length counts set to 255: no valid Huffman table is left."""
    data = bytearray(jpeg)
    start = data.find(b"\xff\xc4")
    while start != -1:
        for offset in range(start + 5, start + 21):
            data[offset] = 0xFF
        start = data.find(b"\xff\xc4", start + 21)
    return bytes(data)


def _exif_orientation(rgb: np.ndarray, value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return encode(rgb, "JPEG", exif=exif.tobytes())


def corpus(face_rgb: np.ndarray, face_jpeg: bytes) -> dict[str, bytes]:
    """Name -> image bytes: at least 25 kinds of bad, odd or hostile input."""
    rng = random.Random(7)
    small = Image.fromarray(face_rgb).resize((160, 180))
    png = _save(small, "PNG")
    height, width = face_rgb.shape[:2]
    border = np.full((height, width, 3), 90, np.uint8)
    border[:, : width // 2] = face_rgb[:, width // 2 :]  # the face cut by the left edge
    frames = [Image.fromarray(face_rgb).resize((120, 140)), Image.fromarray(face_rgb[::-1]).resize((120, 140))]
    animated_png = io.BytesIO()
    frames[0].save(animated_png, format="PNG", save_all=True, append_images=frames[1:], duration=100)
    return {
        "empty": b"",
        "random_1k": bytes(rng.getrandbits(8) for _ in range(1024)),
        "random_1m": os.urandom(1 << 20),
        "text": b"Hello, I am definitely a selfie.\n" * 20,
        "html": b"<html><body><img src=x onerror=alert(1)></body></html>",
        "jpeg_truncated": face_jpeg[: len(face_jpeg) // 3],
        "jpeg_header_only": face_jpeg[:600],
        "jpeg_broken_huffman": _broken_huffman(face_jpeg),
        "png_truncated": png[: len(png) // 2],
        "png_bad_crc": _png(64, 64, b"\x00" + b"\x80" * 64 * 3 * 64, bad_crc=True),
        "png_zero_size": _png(0, 0, b""),
        "png_1x1": _save(Image.new("RGB", (1, 1), (120, 80, 60)), "PNG"),
        "png_16bit_gray": _save(Image.fromarray(np.full((80, 80), 30000, np.uint16)), "PNG"),
        "jpeg_grayscale": _save(small.convert("L"), "JPEG"),
        "jpeg_cmyk": _save(small.convert("CMYK"), "JPEG"),
        "png_rgba": _save(small.convert("RGBA"), "PNG"),
        "png_palette": _save(small.convert("P"), "PNG"),
        "png_bomb_header": _png(60_000, 60_000, b"\x00" * 10),
        "exif_orientation_99": _exif_orientation(face_rgb, 99),
        "exif_orientation_0": _exif_orientation(face_rgb, 0),
        "gif": _save(small, "GIF"),
        "bmp": _save(small, "BMP"),
        "tiff": _save(small, "TIFF"),
        "png_animated": animated_png.getvalue(),
        "no_face": encode(np.full((480, 640, 3), 127, np.uint8)),
        "face_at_border": encode(border),
        "all_black": encode(np.zeros((480, 640, 3), np.uint8)),
        "all_white": encode(np.full((480, 640, 3), 255, np.uint8)),
        "tiny_noise": encode(np.random.default_rng(1).integers(0, 255, (24, 24, 3), dtype=np.uint8)),
        "huge_dimensions_small_file": _save(Image.new("L", (12_000, 12_000)), "PNG"),
    }


def classify(client: LivenessClient, image: bytes) -> str:
    """'QUALITY_FAILED', 'SUCCESS' or the status code name of the error."""
    try:
        response = client.verify(image)
    except LivenessError as error:
        assert error.details and "Traceback" not in error.details, error.details
        return error.code.name
    return pb.VerifyStatus.Name(response.status).removeprefix("VERIFY_STATUS_")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server_process():
    with ServerProcess() as server:
        server.wait_serving()
        yield server


def test_corpus_gets_typed_answers_and_the_server_stays_healthy(server_process, face_rgb, face_jpeg):
    inputs = corpus(face_rgb, face_jpeg)
    assert len(inputs) >= 25
    outcomes: dict[str, str] = {}
    with LivenessClient(server_process.target, timeout=30, max_message_bytes=64 << 20) as client:
        for _ in range(5):
            client.verify(face_jpeg)
        baseline = _rss_mb(server_process.process.pid)
        for round_ in range(3):
            for name, image in inputs.items():
                outcome = classify(client, image)
                assert outcome in ACCEPTABLE | {"QUALITY_FAILED", "SUCCESS"}, (name, outcome)
                assert outcomes.setdefault(name, outcome) == outcome, (name, outcome)
        outcomes["over_message_limit"] = classify(client, b"\xff\xd8" + b"\x00" * (11 << 20))
        outcomes["request_without_image"] = classify(client, b"")
        with pytest.raises(LivenessError) as raised:
            client.verify(face_jpeg, request_id="r" * 10_000)
        outcomes["oversized_request_id"] = raised.value.code.name
        assert client.health() == "SERVING"
        assert client.verify(face_jpeg).status == pb.VERIFY_STATUS_SUCCESS
        grown = _rss_mb(server_process.process.pid) - baseline
    assert outcomes["over_message_limit"] == "RESOURCE_EXHAUSTED"
    assert outcomes["png_bomb_header"] in ACCEPTABLE and outcomes["oversized_request_id"] == "INVALID_ARGUMENT"
    for name in ("empty", "random_1k", "text", "jpeg_truncated", "jpeg_broken_huffman", "png_bad_crc", "gif", "bmp",
                 "tiff", "png_zero_size"):
        assert outcomes[name] == "INVALID_ARGUMENT", (name, outcomes[name])
    for name in ("no_face", "all_black", "all_white"):
        assert outcomes[name] == "QUALITY_FAILED", (name, outcomes[name])
    assert grown < MEMORY_GROWTH_LIMIT_MB, f"RSS grew {grown:.0f} MB over the corpus"
    print(f"\ncorpus: {len(outcomes)} inputs: {dict(Counter(outcomes.values()))}; RSS growth {grown:.1f} MB")


def test_malformed_protobuf_is_invalid_argument_not_internal(server_process):
    with grpc.insecure_channel(server_process.target) as channel:
        for method in ("/ekyc.v1.LivenessService/Verify", "/ekyc.v1.LivenessService/CheckQuality",
                       "/ekyc.v1.LivenessService/CompareFaces"):
            call = channel.unary_unary(method, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
            with pytest.raises(grpc.RpcError) as raised:
                call(b"\x0a\xff\xff\xff\xff\x0f garbage that is not a message", timeout=10)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        unknown_field = pb.VerifyRequest(request_id="u").SerializeToString() + b"\xa0\x06\x01"  # field 100 = 1
        call = channel.unary_unary("/ekyc.v1.LivenessService/Verify", request_serializer=lambda raw: raw,
                                   response_deserializer=pb.VerifyResponse.FromString)
        with pytest.raises(grpc.RpcError) as raised:
            call(unknown_field, timeout=10)  # the unknown field is ignored; the empty image is the error
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in raised.value.details()


def test_corpus_as_references_gets_typed_answers(server_process, face_rgb, face_jpeg):
    """Every bad input as the reference image (Verify and CompareFaces) and as CompareFaces'
    image: a typed status naming which image, or a match status with reasons; never INTERNAL."""
    inputs = corpus(face_rgb, face_jpeg)
    with LivenessClient(server_process.target, timeout=30, max_message_bytes=64 << 20) as client:
        # An empty reference is no reference: Verify answers without a match.
        assert not client.verify(face_jpeg, reference_image=inputs["empty"]).HasField("match")
        for name, image in inputs.items():
            for call in (lambda: client.verify(face_jpeg, reference_image=image).match if image else
                         client.compare_faces(face_jpeg, image).match,
                         lambda: client.compare_faces(face_jpeg, image).match,
                         lambda: client.compare_faces(image, face_jpeg).match):
                try:
                    match = call()
                except LivenessError as error:
                    assert error.code.name in ACCEPTABLE, (name, error)
                    continue
                assert match.status in (pb.MATCH_STATUS_SUCCESS, pb.MATCH_STATUS_REFERENCE_REJECTED,
                                        pb.MATCH_STATUS_PROBE_REJECTED), (name, match)
        with pytest.raises(LivenessError) as raised:
            client.verify(face_jpeg, reference_image=inputs["random_1k"])
        assert raised.value.code.name == "INVALID_ARGUMENT" and raised.value.details.startswith("reference_image")
        assert client.health() == "SERVING"


def test_stream_with_bad_items_among_good_ones_answers_every_item(server_process, face_rgb, face_jpeg):
    inputs = corpus(face_rgb, face_jpeg)
    names = list(inputs)
    requests = []
    for index, name in enumerate(names):
        requests.append(pb.VerifyRequest(image=face_jpeg, request_id=f"good-{index}"))
        requests.append(pb.VerifyRequest(image=inputs[name], request_id=name))
    with LivenessClient(server_process.target, timeout=120) as client:
        responses = list(client.verify_stream(iter(requests), timeout=120))
        assert client.health() == "SERVING"
    assert [r.request_id for r in responses] == [r.request_id for r in requests]
    for response in responses:
        if response.request_id.startswith("good-"):
            assert response.result.status == pb.VERIFY_STATUS_SUCCESS
        elif response.HasField("error"):
            assert grpc.StatusCode.INTERNAL.value[0] != response.error.code and response.error.message
