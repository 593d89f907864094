"""ekyc.client.batch.StreamBatch: one batch over several streams, each image reported once.

The real ekyc-server cannot be told to fail a stream half-way on demand, so these tests run
the client against a real gRPC server whose VerifyStream breaks as told: it answers each
item at once (no model) and aborts chosen streams after some answers. tests/test_fleet.py
does the same against real servers behind Envoy, stopped with SIGTERM.
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
import pytest

from ekyc.client import LivenessClient
from ekyc.client.batch import BatchUnavailable, Item, SourceFailed, StreamBatch
from ekyc.v1 import liveness_pb2 as pb
from ekyc.v1 import liveness_pb2_grpc


class BreakingService(liveness_pb2_grpc.LivenessServiceServicer):
    """Answers every item (its request id echoed); ``plan(stream_number)`` says after how many
    answers that stream is aborted, and with which code (None: never)."""

    def __init__(self, plan=lambda n: None, poison: str | None = None):
        self.plan = plan
        self.poison = poison  # an item whose stream always breaks (UNAVAILABLE) on arrival
        self.streams = 0
        self.answered: list[str] = []
        self._lock = threading.Lock()

    def VerifyStream(self, request_iterator, context):
        with self._lock:
            self.streams += 1
            number = self.streams
        rule = self.plan(number)
        for count, item in enumerate(request_iterator):
            if rule is not None and count >= rule[0]:
                context.abort(rule[1], "broken on purpose")
            if item.request.request_id == self.poison:
                context.abort(grpc.StatusCode.UNAVAILABLE, "this item breaks every stream")
            with self._lock:
                self.answered.append(item.request.request_id)
            yield pb.VerifyStreamResponse(request_id=item.request.request_id,
                                          result=pb.VerifyResponse(request_id=item.request.request_id, is_live=True))


@pytest.fixture()
def serve():
    servers = []

    def start(service: BreakingService) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(16), options=[("grpc.so_reuseport", 0)])
        liveness_pb2_grpc.add_LivenessServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)


def run_batch(target: str, count: int, connections: int = 3, read=None, **options):
    clients = [LivenessClient(target, own_connection=True) for _ in range(connections)]
    results, errors = [], []
    lock = threading.Lock()

    def on_result(item, response):
        assert response.request_id == str(item.index)
        with lock:
            results.append(item.name)

    def on_error(item, message, code):
        with lock:
            errors.append((item.name, code))

    items = (Item(i, f"image-{i}", read or (lambda i=i: f"bytes-{i}".encode())) for i in range(count))
    batch = StreamBatch(clients, items, lambda item, data, rid: pb.VerifyRequest(image=data, request_id=rid),
                        on_result, on_error, backoff_s=0.01, **options)
    try:
        batch.run()
    finally:
        for client in clients:
            client.close()
    return batch, results, errors


def test_every_image_is_answered_once_over_several_streams(serve):
    service = BreakingService()
    batch, results, errors = run_batch(serve(service), 200, connections=4)
    assert sorted(results) == sorted(f"image-{i}" for i in range(200)) and not errors
    assert batch.streams_opened >= 4 and batch.streams_failed == 0 and batch.resent == 0
    assert len(service.answered) == 200


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL])
def test_a_broken_stream_s_images_go_out_again_on_another(serve, code):
    # The first three streams break after 5 answers each.
    service = BreakingService(plan=lambda n: (5, code) if n <= 3 else None)
    batch, results, errors = run_batch(serve(service), 120, connections=3)
    assert sorted(results) == sorted(f"image-{i}" for i in range(120)), "lost or repeated"
    assert not errors
    assert batch.streams_failed == 3 and batch.resent > 0
    # Sent again only what was never answered: the server answered each image at most once
    # more than the client reports (an answer lost with its stream is computed twice).
    assert len(service.answered) >= 120


def test_an_image_that_breaks_every_stream_is_reported_not_lost(serve):
    service = BreakingService(poison="7")
    batch, results, errors = run_batch(serve(service), 30, connections=2, max_attempts=3)
    assert errors == [("image-7", "UNAVAILABLE")]
    assert sorted(results) == sorted(f"image-{i}" for i in range(30) if i != 7)


def test_a_refused_caller_stops_the_batch(serve):
    service = BreakingService(plan=lambda n: (0, grpc.StatusCode.UNAUTHENTICATED))
    with pytest.raises(BatchUnavailable) as raised:
        run_batch(serve(service), 20, connections=2)
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_server_that_is_gone_stops_the_batch_after_retries():
    with pytest.raises(BatchUnavailable) as raised:
        run_batch("127.0.0.1:1", 5, connections=2, max_stream_failures=2)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_an_unreadable_image_is_its_own_error(serve):
    def read(i=None):
        raise OSError(2, "No such file or directory")

    items_ok = BreakingService()
    target = serve(items_ok)
    clients = [LivenessClient(target, own_connection=True) for _ in range(2)]
    results, errors = [], []
    items = [Item(i, f"image-{i}", (lambda i=i: b"x") if i != 3 else read) for i in range(10)]
    StreamBatch(clients, iter(items), lambda item, data, rid: pb.VerifyRequest(image=data, request_id=rid),
                lambda item, response: results.append(item.name),
                lambda item, message, code: errors.append((item.name, code, message))).run()
    for client in clients:
        client.close()
    assert [(name, code) for name, code, _ in errors] == [("image-3", "CLIENT_ERROR")]
    assert "No such file" in errors[0][2] and len(results) == 9


def test_a_failing_listing_stops_the_batch_with_its_error(serve):
    def items():
        yield Item(0, "image-0", lambda: b"x")
        raise OSError("listing failed")

    clients = [LivenessClient(serve(BreakingService()), own_connection=True)]
    with pytest.raises(SourceFailed) as raised:
        StreamBatch(clients, items(), lambda item, data, rid: pb.VerifyRequest(image=data, request_id=rid),
                    lambda *a: None, lambda *a: None).run()
    clients[0].close()
    assert "listing failed" in str(raised.value.error)
