"""Worker threads that run one function over submitted items and hand the results back in
submission order (what a ``ThreadPoolExecutor`` plus a deque of futures gives, without
importing ``concurrent.futures``, whose ``logging`` import is ~2.5 ms of every start-up of
``car verify``).

    with OrderedWork(verify_run, jobs=2, name="carget-verify") as work:
        work.submit(run)
        ...
        result = work.take()  # the oldest item's result (or its exception, raised here)

Threads start with the first items (none for a block that submits nothing). Leaving the
``with`` block stops the workers: items not yet started are dropped, the ones
running finish, and the threads are joined, so no thread outlives the block.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["OrderedWork"]

T = TypeVar("T")
R = TypeVar("R")


class _Job(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = threading.Lock()  # held until the job has run (or was dropped)
        self.done.acquire()


class OrderedWork(Generic[T, R]):
    """``fn`` over submitted items on ``jobs`` threads; :meth:`take` returns the results
    in submission order. A context manager (see the module doc)."""

    def __init__(self, fn: Callable[[T], R], jobs: int, name: str) -> None:
        self._fn = fn
        self._todo: queue.SimpleQueue[_Job[T, R] | None] = queue.SimpleQueue()
        self._pending: deque[_Job[T, R]] = deque()
        self._stopped = False
        self._jobs = max(1, jobs)
        self._name = name
        self._threads: list[threading.Thread] = []  # started as items come, up to jobs

    def __len__(self) -> int:
        """Items submitted and not yet taken."""
        return len(self._pending)

    def submit(self, item: T) -> None:
        job: _Job[T, R] = _Job(item)
        self._pending.append(job)
        self._todo.put(job)
        if len(self._threads) < self._jobs:
            t = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def take(self) -> R:
        """The result for the oldest item not yet taken, waiting for it; what ``fn``
        raised for it is raised here."""
        job = self._pending.popleft()
        job.done.acquire()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]  # set when error is None

    def _work(self) -> None:
        while (job := self._todo.get()) is not None:
            try:
                if not self._stopped:
                    job.result = self._fn(job.item)
            except BaseException as exc:  # handed to take(), in the caller's thread
                job.error = exc
            finally:
                job.done.release()

    def close(self) -> None:
        """Drop what has not started, let what runs finish, join the threads."""
        self._stopped = True
        for _ in self._threads:
            self._todo.put(None)
        for t in self._threads:
            t.join()
        self._pending.clear()

    def __enter__(self) -> OrderedWork[T, R]:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
