"""``--car``: every verified block of a run, once each, in arrival order, to a CAR file
written atomically (blocking, thread-safe)."""

from __future__ import annotations

import threading
from contextlib import ExitStack

from ...cid import CID
from ...errors import CargetError, OutputError

__all__ = ["CarSink"]


class CarSink:
    """``--car``: every verified block, in arrival order, behind a lock (threads)."""

    def __init__(self, path: str) -> None:
        from ...car.writer import open_car_writer

        self.path = path
        self._stack = ExitStack()
        self._writer = self._stack.enter_context(open_car_writer(path))
        self._lock = threading.Lock()
        self._seen: set[CID] = set()

    def set_root(self, cid: CID) -> None:
        self._writer.set_roots([cid])

    def __call__(self, cid: CID, data: bytes | memoryview) -> None:
        from ...cid import Block

        with self._lock:
            if cid not in self._seen and not cid.is_identity:
                self._seen.add(cid)
                try:
                    self._writer.write_block(Block(cid, bytes(data)))
                except OSError as exc:
                    raise self._error(exc) from None

    def close(self, ok: bool) -> None:
        """Finish the CAR (``ok``) or throw it away; a second call does nothing."""
        stack, self._stack = self._stack, ExitStack()
        if ok:
            try:
                stack.close()  # the last buffered blocks go out here
            except OSError as exc:
                raise self._error(exc) from None
        else:
            try:
                stack.__exit__(CargetError, CargetError("aborted"), None)
            except OSError:
                pass  # its flush failed: it is thrown away all the same (atomic_file)

    def _error(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self.path}: {exc.strerror or exc}")
