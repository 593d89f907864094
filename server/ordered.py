"""A stream's items on the ComputePool, at most a window of them at once, answered in order.

A reader thread takes a window permit, reads one item, prepares it and submits its work to
the pool (waiting for a place: backpressure); the consumer takes the outcomes in item order
and returns the permit once it has one. So a flood of items, or a consumer that stops
reading, holds at most ``window`` items in memory and in the pool. No gRPC here: the service
layer (server/service.py) turns items and outcomes into answers.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Callable, Generic, Iterator, TypeVar

from ekyc.errors import EkycError
from ekyc.server.compute import ComputePool, OverloadedError

Item = TypeVar("Item")
POLL_S = 0.2
_END = object()  # the items ran out: every one was answered
_TOO_LONG = object()
_STOPPED = object()


class StreamTooLongError(EkycError):
    """A stream carried more items than the configured limit."""


class OrderedWindow(Generic[Item]):
    """Runs the work of each item of a stream on ``pool``, at most ``window`` at once, and
    yields ``(item, outcome)`` in item order; the outcome is the work's result or the
    exception that preparing or computing it raised.

    ``stop`` (set by the caller when its client goes away, and by ``run`` when it ends) ends
    the run; ``completed`` tells afterwards whether every item was answered. ``deadline``
    (a ``time.monotonic()`` instant) applies to every item's work. More than ``max_items``
    items (0: no limit) raise StreamTooLongError after the earlier items' outcomes.
    """

    def __init__(
        self,
        pool: ComputePool,
        window: int,
        stop: threading.Event | None = None,
        deadline: float | None = None,
        max_items: int = 0,
        poll_s: float = POLL_S,
    ):
        self.pool = pool
        self.window = max(1, window)
        self.stop = stop if stop is not None else threading.Event()
        self.deadline = deadline
        self.max_items = max_items
        self.poll_s = poll_s
        self.completed = False

    def run(
        self, items: Iterator[Item], prepare: Callable[[Item], Callable[[], object]]
    ) -> Iterator[tuple[Item, object]]:
        """``prepare(item)`` runs in the reader thread: it validates the item (an exception
        becomes the item's outcome) and returns the work to compute on the pool."""
        permits = threading.BoundedSemaphore(self.window)
        pending: queue.SimpleQueue = queue.SimpleQueue()
        reader = threading.Thread(
            target=self._admit, args=(iter(items), prepare, permits, pending), daemon=True, name="stream-reader"
        )
        reader.start()
        try:
            while True:
                entry = self._next(pending)
                if entry is _END:
                    self.completed = True
                    return
                if entry is None:
                    return
                if entry is _TOO_LONG:
                    raise StreamTooLongError(
                        f"a stream may carry at most {self.max_items} items; open a new stream for the rest"
                    )
                item, outcome = entry
                if isinstance(outcome, Future):
                    outcome = self._result(outcome)
                    if outcome is _STOPPED:
                        return
                permits.release()
                yield item, outcome
        finally:
            self.stop.set()
            _cancel_pending(pending)

    def _admit(self, items, prepare, permits, pending) -> None:
        """Reader thread: permit, item, prepared work submitted, (item, future or error) queued."""
        count = 0
        try:
            while self._acquire(permits):
                try:
                    item = next(items)
                except StopIteration:
                    permits.release()
                    pending.put(_END)
                    return
                count += 1
                if self.max_items and count > self.max_items:
                    pending.put(_TOO_LONG)
                    return
                try:
                    outcome = self._submit_waiting(prepare(item))
                except Exception as error:  # noqa: BLE001 - this item's answer
                    outcome = error
                if outcome is None:
                    return
                pending.put((item, outcome))
        except Exception:  # noqa: BLE001 - reading failed: the client went away; nothing to answer
            self.stop.set()
        finally:
            pending.put(None)

    def _submit_waiting(self, work: Callable[[], object]) -> Future | None:
        """Wait for a pool place (backpressure), giving up (None) when the run stops."""
        while not self.stop.is_set():
            try:
                return self.pool.submit(work, deadline=self.deadline, wait=self.poll_s)
            except OverloadedError:
                continue
        return None

    def _result(self, future: Future):
        """The future's result or exception; _STOPPED (the future cancelled) when the run stops."""
        while True:
            try:
                return future.result(timeout=self.poll_s)
            except TimeoutError:
                if self.stop.is_set():
                    future.cancel()
                    return _STOPPED
            except Exception as error:  # noqa: BLE001 - the item's outcome
                return error

    def _next(self, pending: queue.SimpleQueue):
        while True:
            try:
                return pending.get(timeout=self.poll_s)
            except queue.Empty:
                if self.stop.is_set():
                    return None

    def _acquire(self, permits: threading.BoundedSemaphore) -> bool:
        while not self.stop.is_set():
            if permits.acquire(timeout=self.poll_s):
                return True
        return False


def _cancel_pending(pending: queue.SimpleQueue) -> None:
    while True:
        try:
            entry = pending.get_nowait()
        except queue.Empty:
            return
        if isinstance(entry, tuple) and isinstance(entry[1], Future):
            entry[1].cancel()
