"""Verified blocks to a caller's callback instead of files (``fetch_blocks``): stand-ins
for the file and tree outputs that keep no bytes, only what is in place (blocking,
thread-safe)."""

from __future__ import annotations

import threading

from ...cid import CID
from ...errors import UnixFSError
from ..split import gaps, merge_ranges
from ..types import BlockSink
from ..verifier import EntityStart, FileData, InnerNode, SymlinkEntry, VerifierEvent
from .tree import Missing, TreeLedger, Under

__all__ = ["BlockFileOutput", "BlockTreeOutput", "SinkFailed", "give_events"]


class SinkFailed(Exception):
    """Carries the sink's own exception past the fetcher's failover (which would take a
    carget error for a gateway's fault) up to ``fetch_blocks``, which raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _give(sink: BlockSink, cid: CID, data: bytes | memoryview) -> None:
    if cid.is_identity:
        return
    try:
        sink(cid, data)
    except Exception as exc:
        raise SinkFailed(exc) from exc


def give_events(sink: BlockSink, events: list[VerifierEvent]) -> None:
    """Hand the blocks among ``events`` to ``sink`` (raises :class:`SinkFailed`)."""
    for ev in events:
        if isinstance(ev, FileData):
            _give(sink, ev.cid, ev.block())
        elif isinstance(ev, InnerNode):
            _give(sink, ev.cid, ev.data)


class BlockFileOutput:
    """The bytes ``[lo, hi)`` of a file of ``size`` bytes, as blocks into a sink: the file
    strategy's output (:class:`~carget.fetcher.file.RangedOutput`) with no file. Only
    the verified ranges are kept, merged, so memory stays flat however big the file."""

    def __init__(self, sink: BlockSink, size: int, lo: int, hi: int) -> None:
        self.sink = sink
        self.size = size
        self.lo = lo
        self.hi = hi
        self.written = 0
        self.digesting = False
        self._done: list[tuple[int, int]] = []  # merged
        self._lock = threading.Lock()

    def handle(self, events: list[VerifierEvent]) -> int:
        placed = 0
        got: list[tuple[int, int]] = []
        for ev in events:
            if isinstance(ev, FileData):
                end = ev.offset + len(ev.data)
                if end > self.size:
                    raise UnixFSError(f"leaf {ev.cid} ends at {end}, past the file's {self.size}")
                _give(self.sink, ev.cid, ev.block())
                a, b = max(ev.offset, self.lo), min(end, self.hi)
                if a < b:
                    got.append((a, b))
                placed += len(ev.data)
            elif isinstance(ev, InnerNode):
                _give(self.sink, ev.cid, ev.data)
        with self._lock:
            self.written += placed
            if got:
                self._done = merge_ranges(self._done + got)
        return placed

    def missing(self) -> list[tuple[int, int]]:
        """The parts of ``[lo, hi)`` not yet handed over."""
        with self._lock:
            return gaps(self._done, self.lo, self.hi)

    def covered(self) -> bool:
        """Every byte of ``[lo, hi)`` is handed over."""
        return not self.missing()


class BlockTreeOutput:
    """A whole entity (a tree, a symlink, a non-UnixFS DAG) as blocks into a sink: the
    tree strategy's output with no files. Its :class:`TreeLedger` says what a failed
    answer left missing, so the next one asks only for that."""

    def __init__(self, sink: BlockSink) -> None:
        self.sink = sink
        self.ledger = TreeLedger()
        self.written = 0
        self._lock = threading.Lock()

    def handle(self, events: list[VerifierEvent]) -> int:
        placed = 0
        with self._lock:  # one answer at a time, but keep the ledger whole regardless
            for ev in events:
                if isinstance(ev, FileData):
                    self.ledger.got_leaf(ev.path, ev.offset, len(ev.data))
                    _give(self.sink, ev.cid, ev.block())
                    placed += len(ev.data)
                elif isinstance(ev, EntityStart):
                    self.ledger.start(ev)
                elif isinstance(ev, SymlinkEntry):
                    self.ledger.symlinks.add(ev.path)
                else:
                    self.ledger.directory(ev)
                    _give(self.sink, ev.cid, ev.data)
            self.written += placed
        return placed

    def remaining(self, path: str, cid: CID) -> list[Missing]:
        with self._lock:
            return self.ledger.remaining(path, cid)

    def in_place(self, path: str, cid: CID) -> frozenset[tuple[str, CID]]:
        with self._lock:
            return self.ledger.in_place(path, cid)

    def file_bytes(self) -> int:
        with self._lock:
            return self.ledger.file_bytes()

    def under(self, prefix: str) -> Under:
        return Under(self, prefix)
