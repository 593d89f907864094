"""The ordered-window stream executor on a real ComputePool, without gRPC."""

from __future__ import annotations

import random
import threading
import time

import pytest

from ekyc.server.compute import ComputePool
from ekyc.server.ordered import OrderedWindow, StreamTooLongError


@pytest.fixture()
def pool():
    pool = ComputePool(threads=3, queue_size=4)
    yield pool
    pool.shutdown()


def _readers() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "stream-reader")


def _wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


def test_outcomes_come_in_item_order_whatever_order_the_work_ends_in(pool):
    delays = [random.Random(7).uniform(0.0, 0.03) for _ in range(40)]

    def prepare(index: int):
        return lambda: (time.sleep(delays[index]), index * index)[1]

    window = OrderedWindow(pool, window=6)
    outcomes = list(window.run(iter(range(40)), prepare))
    assert outcomes == [(i, i * i) for i in range(40)]
    assert window.completed


def test_at_most_a_window_of_items_is_read_ahead_of_the_consumer(pool):
    read = 0

    def items():
        nonlocal read
        for index in range(100):
            read += 1
            yield index

    window = OrderedWindow(pool, window=4)
    outcomes = window.run(items(), lambda index: (lambda: index))
    assert next(outcomes) == (0, 0)
    time.sleep(0.3)  # the reader would run far ahead if nothing held it
    assert read <= 1 + 4
    window.stop.set()
    list(outcomes)  # the run ends once stopped
    assert _wait_until(lambda: pool.admitted == 0 and _readers() == 0)


def test_a_failing_item_is_answered_with_its_error_and_the_rest_go_on(pool):
    def prepare(item):
        if item == "bad request":
            raise ValueError("unusable")
        return lambda: 1 / item

    outcomes = list(OrderedWindow(pool, window=3).run(iter([1, "bad request", 0, 4]), prepare))
    assert [item for item, _ in outcomes] == [1, "bad request", 0, 4]
    assert outcomes[0][1] == 1.0 and outcomes[3][1] == 0.25
    assert isinstance(outcomes[1][1], ValueError) and isinstance(outcomes[2][1], ZeroDivisionError)


def test_items_past_the_limit_end_the_run_after_the_earlier_outcomes(pool):
    window = OrderedWindow(pool, window=2, max_items=3)
    received = []
    with pytest.raises(StreamTooLongError, match="at most 3 items"):
        for item, outcome in window.run(iter(range(10)), lambda i: (lambda: i)):
            received.append(outcome)
    assert received == [0, 1, 2] and not window.completed


def test_stopping_cancels_queued_work_and_ends_the_reader(pool):
    gate = threading.Event()
    started = []

    def prepare(index):
        return lambda: (started.append(index), gate.wait(5))

    window = OrderedWindow(pool, window=5)
    outcomes = window.run(iter(range(1000)), prepare)
    consumer = threading.Thread(target=lambda: list(outcomes))
    consumer.start()
    assert _wait_until(lambda: len(started) >= 3)
    window.stop.set()  # the caller went away
    gate.set()
    consumer.join(5)
    assert not consumer.is_alive()
    assert not window.completed
    assert _wait_until(lambda: pool.admitted == 0 and _readers() == 0)
    assert len(started) <= 5


def test_an_item_source_that_fails_ends_the_run_quietly(pool):
    def items():
        yield 1
        raise ConnectionError("the client went away")

    window = OrderedWindow(pool, window=2)
    assert list(window.run(items(), lambda i: (lambda: i))) in ([(1, 1)], [])
    assert not window.completed
    assert _wait_until(lambda: _readers() == 0)
