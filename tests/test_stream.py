"""VerifyStream as a batch path: order, per-item errors, bounded work, cancellation; the CLI's batch mode."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import encode, flat_image
from ekyc.client import LivenessClient
from ekyc.v1 import liveness_pb2 as pb
from ekyc.v1 import liveness_pb2_grpc

CLIENT = str(Path(sys.executable).parent / "ekyc-client")


def _wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _stream_readers() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "stream-reader")


def test_parallel_stream_keeps_request_order_with_mixed_items(client, face_jpeg, face_rgb):
    small = encode(face_rgb[::2, ::2].copy())
    images = [face_jpeg, small, b"junk", flat_image()] * 10
    requests = [pb.VerifyRequest(image=image, request_id=f"id-{i}") for i, image in enumerate(images)]
    responses = list(client.verify_stream(iter(requests)))
    assert [r.request_id for r in responses] == [r.request_id for r in requests]
    kinds = [r.WhichOneof("outcome") for r in responses]
    assert kinds == ["result", "result", "error", "result"] * 10
    unary = client.verify(face_jpeg).liveness_score
    assert all(r.result.liveness_score == pytest.approx(unary) for r in responses[::4])


def test_stream_without_request_ids_still_answers_each_item(client, face_jpeg):
    responses = list(client.verify_stream(pb.VerifyRequest(image=face_jpeg) for _ in range(3)))
    assert len(responses) == 3 and all(r.HasField("result") for r in responses)


def test_a_flood_never_exceeds_the_compute_capacity(server, target, face_jpeg):
    capacity = server.compute.capacity
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.compute.admitted)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with LivenessClient(target) as client:
            responses = list(client.verify_stream(pb.VerifyRequest(image=face_jpeg, request_id=str(i)) for i in range(120)))
    finally:
        done.set()
        sampler.join()
    assert len(responses) == 120
    assert 0 < peak <= capacity
    assert peak <= server.service.stream_window


def test_a_client_that_stops_reading_does_not_wedge_the_server(server, target, face_jpeg):
    channel = grpc.insecure_channel(target)
    stub = liveness_pb2_grpc.LivenessServiceStub(channel)
    sent = 0

    def endless():
        nonlocal sent
        while True:
            sent += 1
            yield pb.VerifyStreamRequest(request=pb.VerifyRequest(image=face_jpeg, request_id=str(sent)))

    call = stub.VerifyStream(endless())  # never read
    try:
        time.sleep(1.0)
        assert server.compute.admitted <= server.service.stream_window
        with LivenessClient(target, timeout=10) as other:
            assert other.verify(face_jpeg).status == pb.VERIFY_STATUS_SUCCESS
    finally:
        call.cancel()
        channel.close()
    assert _wait_until(lambda: server.compute.admitted == 0), "cancelled work still holds the pool"
    assert _wait_until(lambda: _stream_readers() == 0), "the stream's reader thread did not end"


def test_cancelling_a_stream_frees_its_work(server, target, face_jpeg):
    with LivenessClient(target) as client:
        stream = client.verify_stream(pb.VerifyRequest(image=face_jpeg, request_id=str(i)) for i in range(10_000))
        for index, _ in enumerate(stream):
            if index == 5:
                break
        stream.close()
    assert _wait_until(lambda: server.compute.admitted == 0)
    assert _wait_until(lambda: _stream_readers() == 0)
    with LivenessClient(target) as client:
        assert client.health() == "SERVING"


@pytest.fixture()
def folder(tmp_path, face_jpeg) -> Path:
    root = tmp_path / "batch"
    (root / "sub").mkdir(parents=True)
    for index in range(6):
        (root / f"face{index}.jpg").write_bytes(face_jpeg)
    (root / "sub" / "wall.png").write_bytes(flat_image())
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return root


def run_client(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_stream_cli_walks_folders_writes_csv_and_summarises(target, folder, tmp_path):
    out = tmp_path / "results.csv"
    result = run_client("--server", target, "verify", str(folder), "--stream", "--output", str(out))
    assert result.returncode == 1  # the broken file is an error, and errors outrank the rest
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 8
    by_name = {Path(row["path"]).name: row for row in rows}
    assert by_name["broken.jpg"]["error_code"] == "INVALID_ARGUMENT"
    assert by_name["wall.png"]["status"] == "QUALITY_FAILED" and by_name["wall.png"]["reasons"] == "NO_FACE"
    assert {by_name[f"face{i}.jpg"]["status"] for i in range(6)} == {"SUCCESS"}
    assert "summary: 8 images" in result.stderr and "error 1" in result.stderr and "NO_FACE 1" in result.stderr
    assert "img/s" not in result.stderr  # no progress bar when stderr is not a terminal
    assert result.stdout == ""


def test_stream_cli_json_lines_match_the_unary_answers(target, folder, tmp_path):
    (folder / "sub" / "broken.jpg").unlink()
    out = tmp_path / "results.jsonl"
    streamed = run_client("--server", target, "verify", str(folder), "--stream", "--output", str(out), "--progress", "on")
    unary = run_client("--server", target, "verify", str(folder), "--json")
    assert streamed.returncode == unary.returncode != 1
    assert "img" in streamed.stderr  # progress forced on
    streamed_records = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["path"])
    unary_records = sorted((json.loads(line) for line in unary.stdout.splitlines()), key=lambda r: r["path"])
    assert [r["path"] for r in streamed_records] == [r["path"] for r in unary_records]
    for streamed_record, unary_record in zip(streamed_records, unary_records):
        assert streamed_record["status"] == unary_record["status"]
        assert streamed_record["liveness_score"] == pytest.approx(unary_record["liveness_score"], abs=1e-6)


@pytest.mark.parametrize("mode", [["--stream"], []], ids=["stream", "unary"])
def test_interrupting_a_batch_keeps_what_was_written_and_counts_only_that(target, face_jpeg, tmp_path, mode):
    """Ctrl-C ends the client promptly (under any load: run with busy CPUs too), and the summary
    counts exactly the results the output file holds."""
    root = tmp_path / "many"
    root.mkdir()
    for index in range(3000):
        (root / f"{index:05d}.jpg").write_bytes(face_jpeg)
    out = tmp_path / "partial.jsonl"
    process = subprocess.Popen(
        [CLIENT, "--server", target, "verify", str(root), *mode, "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert _wait_until(lambda: out.exists() and out.read_text().count("\n") >= 10, timeout=60)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    lines = out.read_text().splitlines()
    assert 10 <= len(lines) < 3000
    assert all(json.loads(line)["status"] == "VERIFY_STATUS_SUCCESS" for line in lines)
    summary = re.search(r"summary: (\d+) images", stderr)
    assert summary and int(summary.group(1)) == len(lines), stderr
