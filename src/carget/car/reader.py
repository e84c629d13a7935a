"""Blocking CAR readers over files and stdin (v1 or v2), built on the sans-IO decoder.

:class:`CarReader` streams: the header, then every block, verified (on a pool of worker
threads when ``jobs > 1``: hashlib releases the GIL, so two cores hash two blocks at once).
From a regular file (verifying, with one job too) the workers also read: this thread only
walks the section heads (a small ``pread`` each) and hands out runs of whole sections,
which each worker maps (``mmap``: no copy out of the page cache; ``pread`` where that
fails) and verifies, so the work runs on every core. Whatever the walk does not accept as
an ordinary section (a bad length, a CID that does not parse, a section past the end) and
the end of the CAR go back to the decoder at that offset, so every error is the decoder's.
:class:`CarBlockStore` gives random access by CID over a seekable file: through a CARv2
index when the file has one, else through an index of section offsets built by one scan;
stdin is spooled to a temporary file first. Blocks read by CID are verified again (the file
may have changed, an index may lie).
"""

from __future__ import annotations

import io
import mmap
import os
import stat
import sys
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Final

from ..cid import CID, IDENTITY, Block, decode_varint, read_cid
from ..errors import (
    CARError,
    CIDDecodeError,
    InputError,
    UsageError,
    VerificationError,
)
from ..ordered import OrderedWork
from .decoder import CAR_END, DEFAULT_LIMITS, NEED_DATA, CarDecoder, CarLimits, verify_block
from .header import CarHeader
from .index import MultihashIndex, decode_index

__all__ = ["READ_CHUNK", "CarBlockStore", "CarReader", "open_car_input", "open_car_store"]

#: bytes per read: big enough that sections straddling two reads (copied once by the
#: decoder) are a few percent of the bytes at 256 KiB blocks, small enough for RSS
READ_CHUNK: Final = 4 << 20
#: an index bigger than this is refused instead of read into memory
MAX_INDEX_BYTES: Final = 1 << 30
#: bytes of whole sections a worker reads and verifies in one go (a bigger section goes
#: alone): large enough that per-run hand-offs vanish, small for RSS (2 x jobs in flight)
RUN_BYTES: Final = 4 << 20
#: madvise hint for a mapped run (Linux, BSD; None elsewhere)
_WILLNEED: int | None = getattr(mmap, "MADV_WILLNEED", None)
#: bytes read to parse a section's length and CID (more only for a longer CID)
_HEAD_PEEK: Final = 80
#: the first read, which most often holds the header and little else: from a regular file
#: the workers read the rest, so a full READ_CHUNK here is ~1.5 ms of copying before they
#: start (a bigger header takes more reads, as the decoder asks)
_FIRST_READ: Final = 64 << 10

#: a run of sections: (file offset, bytes, [(section offset, data start in the run,
#: data length, CID)...])
_Run = tuple[int, int, list[tuple[int, int, int, CID]]]


def identity_data(cid: CID) -> bytes | None:
    """The bytes an identity CID carries (None for a hashed CID). Local rather than from
    carget.unixfs.node so that `car verify` does not import the UnixFS codecs at start-up."""
    mh = cid.multihash
    if mh[0] != IDENTITY:
        return None
    length, pos = decode_varint(mh, 1)
    return mh[pos : pos + length]


def _regular_fd(f: BinaryIO) -> int | None:
    """``f``'s descriptor when it is an unbuffered regular file (positioned reads are then
    safe), else None: stdin, pipes, in-memory streams go through the decoder alone."""
    if not isinstance(f, io.FileIO):
        return None
    fd = f.fileno()
    try:
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None


def _section_head(fd: int, off: int, end: int, limits: CarLimits) -> tuple[int, int, CID] | None:
    """(section bytes with its length prefix, where the block data starts in them, CID) of
    the section at ``off`` when it is an ordinary one that ends by ``end``; None for
    anything else (the decoder then says what is wrong with it)."""
    head = os.pread(fd, _HEAD_PEEK, off)
    try:
        length, p = decode_varint(head, 0)
        if not 0 < length <= limits.section or off + p + length > end:
            return None
        try:
            cid, q = read_cid(head, p)
        except IndexError:
            if len(head) >= p + length:
                return None
            head = os.pread(fd, p + length, off)  # a long CID (an identity one)
            cid, q = read_cid(head, p)
        q -= p
        if q > length:  # the CID runs past its section
            return None
    except (IndexError, CIDDecodeError, UsageError):
        return None
    if limits.block is not None and length - q > limits.block:
        return None
    return p + length, p + q, cid


def _map_run(fd: int, start: int, size: int) -> memoryview | None:
    """The run's bytes mapped from the page cache (no copy), or None when the file is now
    shorter than the run (touching a page past its end would be SIGBUS) or cannot be
    mapped. The view keeps the mapping alive; it is unmapped when the last view goes."""
    if os.fstat(fd).st_size < start + size:
        return None
    base = start - start % mmap.ALLOCATIONGRANULARITY
    try:
        m = mmap.mmap(fd, size + start - base, offset=base, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # a file system without mmap
        return None
    if _WILLNEED is not None:
        m.madvise(_WILLNEED)
    return memoryview(m)[start - base :]


def _read_verify_run(fd: int, run: _Run) -> tuple[bytes | memoryview, int, Exception | None]:
    """Map (else read) a run of sections and verify its blocks in order: (the bytes, how
    many blocks are good, the first one's error or None)."""
    start, size, sections = run
    data: bytes | memoryview | None = _map_run(fd, start, size)
    if data is None:
        data = os.pread(fd, size, start)
        while len(data) < size:  # a regular file reads short only at its end
            more = os.pread(fd, size - len(data), start + len(data))
            if not more:
                break
            data += more
    view = memoryview(data)
    for i, (sec_off, at, n, cid) in enumerate(sections):
        if at + n > len(data):
            return data, i, CARError("stream ends inside the section", sec_off)
        try:
            verify_block(cid, view[at : at + n], sec_off)
        except VerificationError as exc:
            return data, i, exc
    return data, len(sections), None


def _verify_at(job: tuple[Block, int]) -> None:
    """verify_block for a block and its section's offset."""
    block, offset = job
    verify_block(block.cid, block.data, offset)


@contextmanager
def open_car_input(path: str) -> Iterator[BinaryIO]:
    """Open ``path`` for reading ("-" is stdin). Raises :class:`InputError`."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb", buffering=0)
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    with f:
        if os.path.isdir(path):
            raise InputError(f"{path} is a directory, not a CAR file")
        yield f


class CarReader:
    """Stream a CAR: ``header`` then :meth:`blocks` (each verified unless ``verify`` is
    False). Raises what :class:`CarDecoder` raises, and :class:`InputError` for reads."""

    def __init__(self, f: BinaryIO, verify: bool = True, limits: CarLimits = DEFAULT_LIMITS,
                 jobs: int = 1) -> None:
        self._f = f
        self.verify = verify
        self.jobs = max(1, jobs)
        # with a pool the decoder leaves hashing to the workers
        self._dec = CarDecoder(verify=verify and self.jobs == 1, limits=limits)
        self._header: CarHeader | None = None
        self._ended = False  # the file is read to its end
        self._walked = 0  # how far the workers' path has read (see _preading)
        self._read_size = _FIRST_READ  # READ_CHUNK after the first read
        self.bytes_read = 0
        self.section_offset = 0  # absolute offset of the last block's section

    def _fill(self) -> bool:
        try:
            chunk = self._f.read(self._read_size)
            self._read_size = READ_CHUNK
        except OSError as exc:
            raise InputError(f"cannot read CAR: {exc.strerror or exc}") from None
        if not chunk:
            self._ended = True
            self._dec.feed_eof()
            return False
        self.bytes_read += len(chunk)
        self._dec.feed(chunk)
        return True

    def _events(self) -> Iterator[CarHeader | Block]:
        dec = self._dec
        while True:
            ev = dec.next_event()
            if ev is NEED_DATA:
                self._fill()
                continue
            if ev is CAR_END:
                return
            assert isinstance(ev, CarHeader | Block)
            if isinstance(ev, Block):
                self.section_offset = dec.section_offset
            yield ev

    @property
    def header(self) -> CarHeader:
        if self._header is None:
            for ev in self._events():
                if isinstance(ev, CarHeader):
                    self._header = ev
                    break
        assert self._header is not None
        return self._header

    def blocks(self) -> Iterator[Block]:
        """Every block in file order, verified. A block's ``data`` is a read-only
        memoryview that pins its read buffer: copy it if you keep many."""
        _ = self.header
        fd = _regular_fd(self._f) if self.verify else None
        if fd is not None and not self._ended:
            # one job too: its worker maps and hashes while this thread walks the heads
            yield from self._preading(fd)
        if self.jobs == 1 or not self.verify:
            for ev in self._events():
                assert isinstance(ev, Block)
                yield ev
            return
        yield from self._pooled()

    def _runs(self, fd: int, off: int, end: int) -> Iterator[_Run]:
        """Runs of ordinary sections from ``off``; stops before the first section that is
        not one, or at ``end``. ``self._walked`` is then the offset after the last run."""
        limits = self._dec.limits
        start, size = off, 0
        sections: list[tuple[int, int, int, CID]] = []
        while off < end:
            head = _section_head(fd, off, end, limits)
            if head is None:
                break
            total, at, cid = head
            if sections and size + total > RUN_BYTES:
                yield start, size, sections
                start, size, sections = off, 0, []
            sections.append((off, size + at, total - at, cid))
            size += total
            off += total
            self._walked = off
        if sections:
            yield start, size, sections

    def _preading(self, fd: int) -> Iterator[Block]:
        """Blocks of the ordinary sections from the decoder's offset on, read and verified
        by the workers; then hands the decoder the rest of the file from where the walk
        stopped (the end, the CARv2 index, or a section it did not accept)."""
        dec = self._dec
        self._walked = start = dec.offset
        size = os.fstat(fd).st_size
        end = min(size, dec.payload_end if dec.payload_end is not None else size)
        depth = 2 * self.jobs
        submitted: deque[_Run] = deque()  # in step with the work's own queue

        def verify_run(run: _Run) -> tuple[bytes | memoryview, int, Exception | None]:
            return _read_verify_run(fd, run)

        with OrderedWork(verify_run, self.jobs, "carget-verify") as work:
            runs = self._runs(fd, start, end)
            while True:
                run = next(runs, None)
                if run is not None:
                    work.submit(run)
                    submitted.append(run)
                    if len(submitted) <= depth:
                        continue
                if not submitted:
                    break
                _, _, sections = submitted.popleft()
                data, good, error = work.take()
                view = memoryview(data)
                for sec_off, at, n, cid in sections[:good]:
                    self.section_offset = sec_off
                    yield Block(cid, view[at : at + n])
                if error is not None:
                    raise error
        # the decoder takes over where the walk stopped: it reports what is wrong there,
        # or checks the end (and skips a CARv2 index) as it would have anyway
        dec.resume_at(self._walked)
        self._f.seek(self._walked)
        self.bytes_read = self._walked

    def _pooled(self) -> Iterator[Block]:
        pending: deque[Block] = deque()  # in step with the work's own queue
        depth = 4 * self.jobs
        with OrderedWork(_verify_at, self.jobs, "carget-verify") as work:
            for ev in self._events():
                assert isinstance(ev, Block)
                work.submit((ev, self.section_offset))
                pending.append(ev)
                while len(pending) > depth:
                    work.take()
                    yield pending.popleft()
            while pending:
                work.take()
                yield pending.popleft()


class CarBlockStore:
    """Random access by CID over a seekable CAR file (v1 or v2).

    ``get(cid)`` returns the verified bytes, or None when the CAR lacks the block: a
    :class:`~carget.blocksource.BlockSource`, as the UnixFS exporter wants.
    """

    def __init__(self, f: BinaryIO, limits: CarLimits = DEFAULT_LIMITS,
                 use_index: bool = True) -> None:
        self._f = f
        self.limits = limits
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        self.size = size
        reader = CarReader(f, verify=False, limits=limits)
        self.header = reader.header
        self._offsets: dict[bytes, int] = {}
        self._index: MultihashIndex | None = None
        self._base = 0
        v2 = self.header.v2
        if v2 is not None:
            self._base = v2.data_offset
            if v2.data_offset + v2.data_size > size:
                raise CARError(f"CARv2 data size runs past the end of the file ({size} bytes)",
                               11)
            if use_index and v2.index_offset:
                self._index = self._load_index(v2.index_offset)
                return
        # no index: one scan records where each section starts (blocks verified later)
        for block in reader.blocks():
            self._offsets.setdefault(block.cid.bytes, reader.section_offset)

    def _load_index(self, at: int) -> MultihashIndex:
        if at >= self.size:
            raise CARError(f"CARv2 index offset {at} is past the end of the file", 11)
        n = self.size - at
        if n > MAX_INDEX_BYTES:
            raise CARError(f"CARv2 index of {n} bytes is too big", at)
        self._f.seek(at)
        return decode_index(self._f.read(n), at)

    def _read_section(self, offset: int, cid: CID) -> bytes | None:
        f = self._f
        f.seek(offset)
        head = f.read(10 + len(cid.bytes))
        try:
            length, p = decode_varint(head, 0)
            found, end = read_cid(head, p)
        except (IndexError, CIDDecodeError, UsageError):
            raise CARError("section at an indexed offset does not parse", offset) from None
        if found != cid:
            return None
        if length > self.limits.section:
            raise CARError(f"section of {length} bytes exceeds the limit", offset)
        f.seek(offset + end)
        data = f.read(length - (end - p))
        if len(data) != length - (end - p):
            raise CARError("section runs past the end of the file", offset)
        verify_block(cid, data, offset)
        return data

    @property
    def indexed(self) -> bool:
        """True when blocks are found through the file's CARv2 index (no scan was made)."""
        return self._index is not None

    def locate(self, multihash: bytes) -> list[int]:
        """File offsets of the sections the index (or the scan) lists for ``multihash``
        (a candidate each: an index may lie, so read and check the section there). Uses
        no file access."""
        if self._index is not None:
            return [self._base + rel for rel in self._index.find(multihash)]
        return [off for raw, off in self._offsets.items() if raw.endswith(multihash)]

    def __contains__(self, cid: CID) -> bool:
        if identity_data(cid) is not None:
            return True
        if self._index is not None:
            return bool(self._index.find(cid.multihash))
        return cid.bytes in self._offsets

    def get(self, cid: CID) -> bytes | None:
        """The block's bytes, verified, or None when the CAR lacks it (a
        :class:`~carget.blocksource.BlockSource`). Raises :class:`HashMismatch` /
        :class:`CARError` when the file is bad."""
        inline = identity_data(cid)
        if inline is not None:
            return inline
        if self._index is not None:
            for rel in self._index.find(cid.multihash):
                data = self._read_section(self._base + rel, cid)
                if data is not None:
                    return data
        else:
            off = self._offsets.get(cid.bytes)
            if off is not None:
                data = self._read_section(off, cid)
                if data is not None:
                    return data
        return None

    def cids(self) -> list[CID]:
        """CIDs of the indexed blocks (scan order without an index)."""
        if self._index is None:
            return [CID.from_bytes(b) for b in self._offsets]
        out = []
        f = self._f
        for _code, _digest, rel in self._index.items():
            f.seek(self._base + rel)
            head = f.read(80)
            _, p = decode_varint(head, 0)
            out.append(read_cid(head, p)[0])
        return out


@contextmanager
def open_car_store(path: str, limits: CarLimits = DEFAULT_LIMITS) -> Iterator[CarBlockStore]:
    """A :class:`CarBlockStore` over ``path``; "-" spools stdin to a temporary file first.
    Raises :class:`InputError` for unreadable paths and the decoder's errors."""
    if path == "-":
        import tempfile  # only stdin is spooled (~4 ms of start-up for every car command)

        with tempfile.TemporaryFile(prefix="carget-stdin-") as spool:
            src = sys.stdin.buffer
            while chunk := src.read(READ_CHUNK):
                spool.write(chunk)
            spool.seek(0)
            yield CarBlockStore(spool)
        return
    with open_car_input(path) as f:
        yield CarBlockStore(f)
