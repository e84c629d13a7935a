"""OrderedWork: results in submission order whatever order the threads finish in, errors
raised where they are taken, no thread left running after the block."""

from __future__ import annotations

import threading
import time

import pytest

from carget.ordered import OrderedWork


def test_results_come_in_submission_order() -> None:
    def slow_for_small(n: int) -> int:
        time.sleep(0.001 * (10 - n))  # the first items finish last
        return n * n

    with OrderedWork(slow_for_small, 3, "t-order") as work:
        for n in range(10):
            work.submit(n)
        assert len(work) == 10
        assert [work.take() for _ in range(10)] == [n * n for n in range(10)]
        assert len(work) == 0


def test_an_error_is_raised_by_take_for_its_item_only() -> None:
    def fail_on_two(n: int) -> int:
        if n == 2:
            raise ValueError("two")
        return n

    with OrderedWork(fail_on_two, 2, "t-error") as work:
        for n in range(4):
            work.submit(n)
        assert work.take() == 0
        assert work.take() == 1
        with pytest.raises(ValueError, match="two"):
            work.take()
        assert work.take() == 3


def test_leaving_the_block_joins_the_threads_and_drops_what_has_not_started() -> None:
    started: list[int] = []
    gate = threading.Event()

    def wait_for_gate(n: int) -> int:
        started.append(n)
        gate.wait(5)
        return n

    before = {t.name for t in threading.enumerate()}
    with OrderedWork(wait_for_gate, 1, "t-close") as work:
        for n in range(5):
            work.submit(n)
        while not started:
            time.sleep(0.001)
        assert any(t.name.startswith("t-close") for t in threading.enumerate())
        gate.set()  # the running item finishes; the rest are dropped on the way out
    assert {t.name for t in threading.enumerate()} <= before
    assert len(started) < 5


def test_no_thread_starts_before_there_is_work() -> None:
    before = threading.active_count()
    with OrderedWork(abs, 4, "t-idle") as work:
        assert threading.active_count() == before
        work.submit(-1)
        assert work.take() == 1
        assert threading.active_count() == before + 1  # one item, one thread
