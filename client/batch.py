"""One batch over several VerifyStreams: ``ekyc-client verify ... --stream --connections N``.

Each of N channels (N HTTP/2 connections) carries one VerifyStream at a time, so that a load
balancer that balances per call or per connection (an ALB, Envoy) spreads the batch over its
backends. Images are dealt to whichever stream has room (at most ``window`` unanswered per
stream), so a faster backend takes more of them. A stream that fails for transport reasons
(UNAVAILABLE: a backend went away; CANCELLED or INTERNAL without our asking: the connection
was reset) gives its unanswered images back; they go out again on the next stream that has
room, a new one on the same channel or another channel's. Verification is idempotent, and an
image is reported only when its answer arrives: each image is reported exactly once.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import grpc

from ekyc.client.client import LivenessClient, LivenessError
from ekyc.v1 import liveness_pb2 as pb

# A stream that ends with one of these lost its connection or its backend, not its images.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
                             grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED})
# Codes that every stream would meet: stop the batch.
FATAL_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                         grpc.StatusCode.UNIMPLEMENTED})


@dataclass
class Item:
    """One image of the batch: its name for the output and how to read its bytes."""

    index: int
    name: str
    read: Callable[[], bytes]
    attempts: int = 0
    data: bytes | None = field(default=None, repr=False)


class BatchUnavailable(Exception):
    """Every stream failed again and again (or the server refused the caller): the batch stops."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class SourceFailed(Exception):
    """Listing the images failed (an S3 error): the batch stops; ``error`` is the cause."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class StreamBatch:
    """Deal ``items`` over one VerifyStream per client; report each answer or error once.

    ``on_result(item, VerifyResponse)`` and ``on_error(item, message, code_name)`` are called
    from worker threads. ``max_attempts``: streams an image may be sent on before it is
    reported as failed. ``stop``: set it to end the batch early (Ctrl-C).
    """

    def __init__(
        self,
        clients: list[LivenessClient],
        items: Iterator[Item],
        make_request: Callable[[Item, bytes, str], pb.VerifyRequest],
        on_result: Callable[[Item, pb.VerifyResponse], None],
        on_error: Callable[[Item, str, str], None],
        window: int = 8,
        max_attempts: int = 3,
        stop: threading.Event | None = None,
        max_stream_failures: int = 5,
        backoff_s: float = 0.2,
    ):
        self._clients = clients
        self._source = iter(items)
        self._make_request = make_request
        self._on_result = on_result
        self._on_error = on_error
        self.window = max(1, window)
        self.max_attempts = max(1, max_attempts)
        self.stop = stop or threading.Event()
        self._max_failures = max_stream_failures
        self._backoff_s = backoff_s
        self._lock = threading.Condition()
        self._source_lock = threading.Lock()
        self._retry: collections.deque[Item] = collections.deque()
        self._exhausted = False
        self._outstanding = 0  # taken from the source, not yet reported
        self._workers_alive = 0
        self._fatal: Exception | None = None
        self.streams_opened = 0
        self.streams_failed = 0
        self.resent = 0

    # ---------------------------------------------------------------- work queue

    def _next_item(self) -> Item | None:
        """A retried image first, else the next one of the source; None when there is none now."""
        with self._lock:
            if self._retry:
                return self._retry.popleft()
            if self._exhausted:
                return None
        with self._source_lock:  # one reader of the source at a time, outside the main lock:
            try:                 # listing S3 may take a while
                item = next(self._source)
            except StopIteration:
                item = None
            except Exception as error:  # noqa: BLE001 - the batch stops with it
                item = None
                with self._lock:
                    self._fatal = self._fatal or SourceFailed(error)
                    self.stop.set()
            with self._lock:  # counted before another reader can find the source exhausted
                if item is None:
                    self._exhausted = True
                    self._lock.notify_all()
                else:
                    self._outstanding += 1
        return item

    def _finished(self, item: Item) -> None:
        item.data = None
        with self._lock:
            self._outstanding -= 1
            self._lock.notify_all()

    def _give_back(self, items: list[Item], code: grpc.StatusCode, details: str) -> None:
        """A failed stream's unanswered images, oldest first, go out again. A stream answers in
        order, so only the oldest one can have broken it: it alone is charged the attempt, and
        an image that breaks every stream it is sent on ends as an error without taking the
        images sent after it down with it."""
        for index, item in enumerate(sorted(items, key=lambda i: i.index)):
            if index:
                item.attempts -= 1
            if item.attempts >= self.max_attempts:
                self._report_error(item, f"{code.name}: {details} (sent {item.attempts} times)", code.name)
                continue
            with self._lock:
                self._retry.append(item)
                self.resent += 1
                self._lock.notify_all()

    def _put_back(self, item: Item) -> None:
        """An image taken but never sent goes back to the front of the queue."""
        with self._lock:
            self._retry.appendleft(item)
            self._lock.notify_all()

    def _all_done(self) -> bool:
        return self._exhausted and not self._retry and self._outstanding == 0

    def _report_error(self, item: Item, message: str, code: str) -> None:
        try:
            self._on_error(item, message, code)
        finally:
            self._finished(item)

    # ---------------------------------------------------------------- streams

    def run(self) -> None:
        """Run the batch to the end; raises BatchUnavailable when it could not finish."""
        threads = [threading.Thread(target=self._worker, args=(client,), name=f"stream-{n}", daemon=True)
                   for n, client in enumerate(self._clients)]
        with self._lock:
            self._workers_alive = len(threads)
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        if self._fatal is not None:
            raise self._fatal

    def _wait_for_work(self) -> bool:
        """Block until there is something to send (True) or nothing will come (False)."""
        with self._lock:
            while not self.stop.is_set() and self._fatal is None:
                if self._retry or not self._exhausted:
                    return True
                if self._all_done():
                    return False
                self._lock.wait(0.2)  # other streams still have images that may come back
        return False

    def _worker(self, client: LivenessClient) -> None:
        failures = 0
        try:
            while self._wait_for_work():
                code, details = self._one_stream(client)
                if code is None:
                    failures = 0
                    continue
                if code in FATAL_CODES:
                    with self._lock:
                        self._fatal = self._fatal or BatchUnavailable(code, details)
                        self._lock.notify_all()
                    return
                failures += 1
                if failures >= self._max_failures:
                    return
                self.stop.wait(min(self._backoff_s * 2 ** (failures - 1), 2.0))
        finally:
            with self._lock:
                self._workers_alive -= 1
                last = self._workers_alive == 0
                self._lock.notify_all()
            if last and not self.stop.is_set() and self._fatal is None and not self._all_done():
                self._fatal = BatchUnavailable(grpc.StatusCode.UNAVAILABLE, "every stream failed; images are left")

    def _one_stream(self, client: LivenessClient) -> tuple[grpc.StatusCode | None, str]:
        """One VerifyStream until it ends; returns (None, "") or the code it failed with, after
        giving its unanswered images back."""
        inflight: dict[str, Item] = {}
        guard = threading.Lock()  # inflight and ended change together
        slots = threading.Semaphore(self.window)
        ended = threading.Event()

        def requests() -> Iterator[pb.VerifyRequest]:
            while not ended.is_set() and not self.stop.is_set():
                if not slots.acquire(timeout=0.2):
                    continue
                item = self._next_item()
                if item is None:
                    slots.release()
                    return  # nothing to send now: half-close, the stream ends with its answers
                if item.data is None:
                    try:
                        item.data = item.read()
                    except Exception as error:  # noqa: BLE001 - reported as this image's error
                        slots.release()
                        self._report_error(item, f"cannot read: {getattr(error, 'strerror', None) or error}", "CLIENT_ERROR")
                        continue
                with guard:
                    if ended.is_set():  # the stream failed meanwhile: this image was never sent
                        self._put_back(item)
                        return
                    item.attempts += 1
                    inflight[str(item.index)] = item
                yield self._make_request(item, item.data, str(item.index))

        def unanswered() -> list[Item]:
            with guard:
                ended.set()
                left = sorted(inflight.values(), key=lambda i: i.index)
                inflight.clear()
            return left

        self.streams_opened += 1
        try:
            for response in client.verify_stream(requests()):
                with guard:
                    item = inflight.pop(response.request_id, None)
                if item is None:
                    continue  # not ours (cannot happen with a conforming server)
                slots.release()
                if response.HasField("error"):
                    code = _code_name(response.error.code)
                    self._report_error(item, f"{code}: {response.error.message}", code)
                else:
                    try:
                        self._on_result(item, response.result)
                    finally:
                        self._finished(item)
            left = unanswered()
            if left:  # the server ended the stream without answering them: send them again
                self._give_back(left, grpc.StatusCode.UNAVAILABLE, "the stream ended before their answers")
                return grpc.StatusCode.UNAVAILABLE, "the stream ended early"
            return None, ""
        except LivenessError as error:
            self.streams_failed += 1
            left = unanswered()
            if self.stop.is_set():
                for item in left:
                    self._finished(item)
                return error.code, error.details
            if error.code in RETRYABLE_CODES:
                self._give_back(left, error.code, error.details)
            else:
                for item in left:
                    self._report_error(item, f"{error.code.name}: {error.details}", error.code.name)
            return error.code, error.details
        finally:
            ended.set()


def _code_name(number: int) -> str:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.name
    return "UNKNOWN"
