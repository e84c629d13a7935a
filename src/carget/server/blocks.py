"""What the server serves from: block sources in layers, and how an answer waits for a
block that is not there yet.

Every store behind the server — local files and CARs (:mod:`.store`), the disk cache
(:mod:`.cache`), and whatever fills the cache (an upstream fetcher) — is a
:class:`~carget.blocksource.BlockSource` (``get(cid) -> bytes | None``) with the few extras
that let an answer go out without copies (:class:`ServedSource`). :class:`Layers` stacks
them, first hit wins: local store, then cache.

Waiting is sans-IO on the planning and body side: planning over :class:`Waiting` raises
:class:`NeedBlock` for a block a source could still get; a body generator yields a
:class:`Need` marker. The trio side awaits the :class:`Waiter` (the cache's
``wait_for``) and plans again, or resumes the generator. A waiter that says the block can
never come raises a :class:`~carget.errors.CargetError`: a status before any byte, a cut
connection after.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..blocksource import BlockSource
from ..cid import CID, RAW

__all__ = [
    "SPAN_FILES",
    "SPAN_MIN",
    "FileSpan",
    "Layers",
    "Need",
    "NeedBlock",
    "ServedSource",
    "Waiter",
    "Waiting",
    "Want",
]

#: blocks smaller than this are copied into the body rather than sent with sendfile
SPAN_MIN = 64 * 1024
#: open files kept per answer for sendfile: a chunk holds at most SPAN_FILES parts, half
#: of them spans, so 16 spans of SPAN_MIN make a whole 1 MiB write; the server counts
#: these descriptors (plus one for a block read) against its process-wide budget
SPAN_FILES = 32


class FileSpan:
    """Bytes that live in a file: ``head + file[offset:offset + length] + tail``, with the
    file open (``fd``, owned by the answer's open-file cache). ``check(fd)`` says whether
    the file still holds what was verified (None: it cannot change, as the cache's packs,
    which are only appended to)."""

    __slots__ = ("_check", "fd", "head", "length", "offset", "tail")

    def __init__(self, fd: int, offset: int, length: int, head: bytes = b"",
                 tail: bytes = b"", check: Callable[[int], bool] | None = None) -> None:
        self.fd = fd
        self.offset = offset
        self.length = length
        self.head = head
        self.tail = tail
        self._check = check

    def unchanged(self) -> bool:
        """True while the file still holds the bytes that were verified."""
        return True if self._check is None else self._check(self.fd)

    def part(self, skip: int, length: int) -> FileSpan:
        """``length`` bytes of the file range from ``skip`` on, without head and tail."""
        return FileSpan(self.fd, self.offset + skip, length, check=self._check)

    def joined(self, other: FileSpan) -> FileSpan | None:
        """This span and ``other`` as one, when ``other`` goes on right where this one ends
        in the same open file under the same check, with no head or tail between them (a
        file's leaves cached back to back in a pack): one ``sendfile`` for both. None when
        it does not."""
        if (other.fd != self.fd or self.tail or other.head
                or other.offset != self.offset + self.length or other._check != self._check):
            return None
        return FileSpan(self.fd, self.offset, self.length + other.length, self.head,
                        other.tail, self._check)

    def read(self) -> bytes:
        """The span's bytes (tests, and clients that are not plain sockets)."""
        return self.head + os.pread(self.fd, self.length, self.offset) + self.tail


class ServedSource(BlockSource, Protocol):
    """A block source the server can send from without copies."""

    def size(self, cid: CID, /) -> int | None:
        """The block's length, or None when absent."""
        ...

    def is_leaf(self, cid: CID, /) -> bool:
        """True when the block is known to have no links without reading it."""
        ...

    def read_into(self, cid: CID, buf: memoryview, /) -> int:
        """Write the block into ``buf``; its length. KeyError when absent."""
        ...

    def open_span(self, cid: CID, fds: dict[str, int], /) -> FileSpan | None:
        """The block as a span of a file (``fds``: the answer's open files by path), or
        None when it is small, in memory or absent."""
        ...

    def data_span(self, cid: CID, fds: dict[str, int], /) -> FileSpan | None:
        """For a file leaf: a span of exactly its UnixFS bytes (no framing) when they lie
        whole in a file, else None."""
        ...

    def in_memory(self, cid: CID, /) -> bytes | None:
        """The block if held in memory (no copy), else None."""
        ...


class Layers:
    """Several served sources as one: each call goes to the first that has the block."""

    def __init__(self, layers: Sequence[ServedSource]) -> None:
        self.layers = tuple(layers)

    def _owner(self, cid: CID) -> ServedSource | None:
        for layer in self.layers:
            if layer.size(cid) is not None:
                return layer
        return None

    def get(self, cid: CID, /) -> bytes | None:
        for layer in self.layers:
            data = layer.get(cid)
            if data is not None:
                return data
        return None

    def size(self, cid: CID, /) -> int | None:
        for layer in self.layers:
            n = layer.size(cid)
            if n is not None:
                return n
        return None

    def is_leaf(self, cid: CID, /) -> bool:
        if cid.codec == RAW:
            return True
        owner = self._owner(cid)
        return owner is not None and owner.is_leaf(cid)

    def read_into(self, cid: CID, buf: memoryview, /) -> int:
        owner = self._owner(cid)
        if owner is None:
            raise KeyError(cid)
        return owner.read_into(cid, buf)

    def open_span(self, cid: CID, fds: dict[str, int], /) -> FileSpan | None:
        owner = self._owner(cid)
        return None if owner is None else owner.open_span(cid, fds)

    def data_span(self, cid: CID, fds: dict[str, int], /) -> FileSpan | None:
        owner = self._owner(cid)
        return None if owner is None else owner.data_span(cid, fds)

    def in_memory(self, cid: CID, /) -> bytes | None:
        owner = self._owner(cid)
        return None if owner is None else owner.in_memory(cid)


@dataclass(frozen=True, slots=True)
class Want:
    """What an answer is after, so that a filler can fetch whole runs, not block by block:
    the content path's root and segments, the file byte range (inclusive) if any, and the
    ``dag-scope`` it needs ("entity": a file's bytes, a directory's own blocks; "all":
    everything under it, for a CAR of the whole DAG)."""

    root: CID
    segments: tuple[str, ...] = ()
    byte_range: tuple[int, int] | None = None
    scope: str = "entity"


@dataclass(frozen=True, slots=True)
class Need:
    """Yielded by a body generator: send nothing more until ``cid`` can be read."""

    cid: CID


class NeedBlock(Exception):
    """Raised by planning over :class:`Waiting` when a block is absent but may come."""

    def __init__(self, cid: CID, want: Want | None = None) -> None:
        super().__init__(f"waiting for block {cid}")
        self.cid = cid
        #: what the block is for, when the planner knows better than the request target
        #: (a directory's index.html)
        self.want = want


class Waiting:
    """A served source for planning: a missing block raises :class:`NeedBlock` instead of
    reading as absent."""

    def __init__(self, source: ServedSource) -> None:
        self.source = source

    def get(self, cid: CID, /) -> bytes | None:
        data = self.source.get(cid)
        if data is None:
            raise NeedBlock(cid)
        return data

    def is_leaf(self, cid: CID, /) -> bool:
        return self.source.is_leaf(cid)

    def has(self, cid: CID) -> bool:
        """Whether the block is there now (no wait)."""
        return cid.is_identity or self.source.size(cid) is not None


class Waiter(Protocol):
    """Something that can make a block arrive (the cache, filled by an upstream)."""

    async def wait_for(self, cid: CID, want: Want | None = None) -> None:
        """Return once ``cid`` can be read from the served source. Raises a
        :class:`~carget.errors.CargetError` when it never can (not found upstream, a
        network error, a timeout)."""
        ...
