"""``carget cat``'s outputs: verified file bytes in order to stdout (or any binary file),
and the segments split ``cat`` gathers in memory while an earlier part is still being
written out (blocking, no trio)."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from ...digest import new_hasher
from ...errors import UnixFSError, UsageError
from ..types import BlockSink
from ..verifier import EntityStart, FileData, InnerNode, SymlinkEntry, VerifierEvent
from .disk import writing

__all__ = ["SegmentBuffer", "StdoutOutput"]


def _refuse_other(ev: VerifierEvent, on_block: BlockSink | None
               ) -> None:
    """What ``cat``'s outputs do with an event that is not file bytes: refuse anything but
    one file, pass inner blocks on to ``--car``."""
    if isinstance(ev, EntityStart) and ev.kind != "file":
        raise UsageError(f"{ev.cid} is a {ev.kind}: cat needs a file")
    if isinstance(ev, SymlinkEntry):
        raise UsageError("cat of a symlink: fetch its target instead")
    if isinstance(ev, InnerNode) and on_block is not None:
        on_block(ev.cid, ev.data)


class StdoutOutput:
    """Verified file bytes, in order, to a binary file such as stdout (``carget cat``)."""

    def __init__(self, out: BinaryIO, digest_algo: str | None = None) -> None:
        self.out = out
        self.hasher = new_hasher(digest_algo) if digest_algo else None
        self.pos = 0
        self.written = 0
        self.on_block: BlockSink | None = None

    def handle(self, events: list[VerifierEvent]) -> int:
        with writing("the output stream"):
            return self._handle(events)

    def _handle(self, events: list[VerifierEvent]) -> int:
        written = 0
        for ev in events:
            if isinstance(ev, FileData):
                if ev.path:
                    raise UsageError("cat needs a file, not a directory")
                if ev.offset != self.pos:
                    if ev.offset + len(ev.data) <= self.pos:
                        continue  # already written (a resumed request repeats a leaf)
                    raise UnixFSError(f"file bytes out of order at {ev.offset} "
                                      f"(expected {self.pos})")
                self.out.write(ev.data)
                if self.hasher is not None:
                    self.hasher.update(ev.data)
                self.pos += len(ev.data)
                written += len(ev.data)
                if self.on_block is not None:
                    self.on_block(ev.cid, ev.block())
            else:
                _refuse_other(ev, self.on_block)
        self.out.flush()
        self.written += written
        return written

    def write_bytes(self, data: bytes | memoryview) -> None:
        """Write file bytes verified elsewhere (a :class:`SegmentBuffer`), in order."""
        with writing("the output stream"):
            self.out.write(data)
            self.out.flush()
        if self.hasher is not None:
            self.hasher.update(data)
        self.pos += len(data)


class SegmentBuffer:
    """Verified bytes of ``[lo, hi)`` of a file, gathered in memory for ``carget cat``
    while an earlier part is still being written out (see :mod:`carget.fetcher.inorder`).

    :meth:`handle` runs on a request's writing thread; ``filled`` (bytes from ``lo`` that
    are in place) only grows, and the bytes before it never change, so the trio side may
    read them at any time. Leaves that reach outside ``[lo, hi)`` are clipped."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi
        self.buf = bytearray()  # allocated by start(): only started segments hold memory
        self.filled = 0
        self.written = 0
        self.on_block: BlockSink | None = None
        self.on_progress: Callable[[], None] | None = None

    def start(self, spare: list[bytearray]) -> None:
        """Give the segment its buffer (once) before a request fills it in: one from
        ``spare`` (buffers of segments already written out) if it is big enough."""
        if self.buf:
            return
        need = self.hi - self.lo
        for i, b in enumerate(spare):
            if len(b) >= need:
                self.buf = spare.pop(i)
                return
        self.buf = bytearray(need)

    def release(self, spare: list[bytearray]) -> None:
        """The bytes are written out: hand the buffer back for a later segment."""
        if self.buf:
            spare.append(self.buf)
        self.buf = bytearray()

    @property
    def ready(self) -> int:
        """Bytes from ``lo`` in place and within ``[lo, hi)`` (``hi`` may drop while a
        request is still filling in past it: another took over that part)."""
        return min(self.filled, self.hi - self.lo)

    @property
    def complete(self) -> bool:
        return self.filled >= self.hi - self.lo

    def handle(self, events: list[VerifierEvent]) -> int:
        placed = 0
        for ev in events:
            if isinstance(ev, FileData):
                if ev.path:
                    raise UsageError("cat needs a file, not a directory")
                at = self.lo + self.filled
                end = ev.offset + len(ev.data)
                if end <= at or ev.offset >= self.hi:
                    # before what is still missing (a repeated leaf), or past the end
                    # (another request took the rest over while this one ran on)
                    continue
                if ev.offset > at:
                    raise UnixFSError(f"file bytes out of order at {ev.offset} (expected {at})")
                take = min(end, self.hi) - at
                if take <= 0:
                    continue
                start = at - ev.offset
                self.buf[self.filled:self.filled + take] = ev.data[start:start + take]
                self.filled += take
                placed += take
                if self.on_block is not None:
                    self.on_block(ev.cid, ev.block())
            else:
                _refuse_other(ev, self.on_block)
        self.written += placed
        if placed and self.on_progress is not None:
            self.on_progress()
        return placed
