"""A bounded hand-off between two threads that every wait can stop (no trio here).

A request's pipeline runs on three worker threads (receive, verify, write) joined by
these channels; when trio cancels the request, the stop flag ends every wait within
:data:`~carget.fetcher.http.STOP_POLL` seconds, so no thread outlives its run.
"""

from __future__ import annotations

import threading
import time
from queue import Empty, SimpleQueue
from typing import Any, Final, Generic, TypeVar

from .http import STOP_POLL

__all__ = ["Channel", "Stopped"]

_T = TypeVar("_T")


class Stopped(Exception):
    """A request's threads were told to stop (the run was cancelled)."""


#: put into a channel by :meth:`Channel.wake`
_WAKE: Final = object()


class Channel(Generic[_T]):
    """A bounded hand-off between two threads, made of two C-level ``SimpleQueue``s (items,
    and room tokens). ``queue.Queue`` runs a Python-level Condition on every put and get:
    GIL time that the hashing thread, back from a block's SHA-256, then waits for.

    Every wait looks at ``stop`` each :data:`~carget.fetcher.http.STOP_POLL` seconds and
    raises :class:`Stopped` once it is set, so no thread outlives a cancelled run."""

    def __init__(self, depth: int, stop: threading.Event) -> None:
        self._items: SimpleQueue[_T] = SimpleQueue()
        self._room: SimpleQueue[None] = SimpleQueue()
        self._stop = stop
        for _ in range(depth):
            self._room.put(None)

    def _wait(self, queue: SimpleQueue[Any]) -> Any:
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                return queue.get(timeout=STOP_POLL)
            except Empty:
                continue

    def put(self, item: _T) -> None:
        self._wait(self._room)
        self._items.put(item)

    def get(self) -> _T:
        item: _T = self._wait(self._items)
        if item is _WAKE:
            raise Stopped
        self._room.put(None)
        return item

    def wake(self) -> None:
        """After ``stop`` is set: end the waits blocked on this channel now rather than
        at their next look at the flag (a cancelled race waited STOP_POLL on them)."""
        self._items.put(_WAKE)  # type: ignore[arg-type]
        self._room.put(None)

    def get_within(self, seconds: float) -> _T | None:
        """:meth:`get`, or None after ``seconds`` (raises :class:`Stopped` as soon as
        ``stop`` is set, as every wait here does)."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stop.is_set():
                raise Stopped
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                item: _T = self._items.get(timeout=min(left, STOP_POLL))
            except Empty:
                continue
            if item is _WAKE:
                raise Stopped
            self._room.put(None)
            return item

