"""The compute pool: bounded admission, FIFO running slots, deadlines."""

from __future__ import annotations

import threading
import time

import pytest

from ekyc.server.compute import ComputePool, DeadlineExpiredError, FairSemaphore, OverloadedError


def test_fair_semaphore_serves_waiters_in_arrival_order():
    semaphore = FairSemaphore(1)
    assert semaphore.acquire()
    order: list[int] = []
    threads = []
    for index in range(5):
        thread = threading.Thread(target=lambda i=index: (semaphore.acquire(), order.append(i), semaphore.release()))
        thread.start()
        threads.append(thread)
        time.sleep(0.02)  # make the arrival order certain
    semaphore.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_fair_semaphore_times_out_and_keeps_its_count():
    semaphore = FairSemaphore(1)
    assert semaphore.acquire()
    assert semaphore.acquire(timeout=0.05) is False
    semaphore.release()
    assert semaphore.acquire(timeout=0.05) is True


def test_admission_beyond_capacity_is_refused_at_once():
    pool = ComputePool(threads=1, queue_size=1)
    gate = threading.Event()
    try:
        first = pool.submit(gate.wait, 5)
        second = pool.submit(gate.wait, 5)
        started = time.monotonic()
        with pytest.raises(OverloadedError, match="capacity"):
            pool.run(lambda: None)
        assert time.monotonic() - started < 0.5
        assert pool.admitted == 2
        gate.set()
        first.result(5), second.result(5)
        assert pool.run(lambda: 42) == 42
        assert pool.admitted == 0
    finally:
        gate.set()
        pool.shutdown()


def test_work_whose_deadline_passed_while_queued_is_not_computed():
    pool = ComputePool(threads=1, queue_size=4)
    gate = threading.Event()
    computed: list[str] = []
    try:
        blocker = pool.submit(gate.wait, 5)
        late = pool.submit(computed.append, "late", deadline=time.monotonic() + 0.05)
        time.sleep(0.1)
        gate.set()
        blocker.result(5)
        with pytest.raises(DeadlineExpiredError):
            late.result(5)
        assert computed == []
    finally:
        gate.set()
        pool.shutdown()
