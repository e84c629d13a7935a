"""Sans-IO CAR decoder, h11-style: ``feed`` bytes in, take events out, EOF is its own call.

One decoder serves a file, stdin and an HTTP body alike::

    dec = CarDecoder()                      # verify=True: every block's multihash is checked
    for chunk in body:
        dec.feed(chunk)
        while (ev := dec.next_event()) is not NEED_DATA:
            ...                             # a CarHeader first, then Blocks
    dec.feed_eof()
    while (ev := dec.next_event()) is not CAR_END:
        ...                                 # raises CARError if the stream stopped mid-section

CARv1 and CARv2 are read transparently: for CARv2 the pragma and fixed header are checked,
bytes up to the data offset are skipped, the CARv1 payload is decoded, and the index after
it is skipped (random access by index is :mod:`carget.car.reader`'s job). The header event
has ``version`` 2 and the roots of the inner CARv1 header.

Buffering: fed buffers are kept by reference and parsed in place; only a section that
straddles two fed buffers is copied, once, into a buffer of exactly its size. So feeding
large buffers costs no copies, feeding tiny ones is linear, and a block's ``data`` is a
read-only memoryview that stays valid for as long as it is referenced (it pins its buffer).
Never mutate a bytearray after feeding it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from ..cid import CID, IDENTITY, Block, decode_varint, read_cid
from ..errors import (
    CARError,
    CIDDecodeError,
    HashMismatch,
    LimitExceeded,
    UsageError,
    VerificationError,
)
from .header import (
    CARV2_HEADER_SIZE,
    CARV2_PRAGMA,
    CarHeader,
    CarV2Header,
    decode_header,
    decode_v2_header,
)

__all__ = [
    "CAR_END",
    "DEFAULT_LIMITS",
    "MAX_BLOCK_TRUSTLESS",
    "MAX_HEADER",
    "MAX_SECTION",
    "NEED_DATA",
    "TRUSTLESS_LIMITS",
    "CarDecoder",
    "CarLimits",
    "Event",
    "decode_car",
    "verify_block",
]

#: go-car's DefaultMaxAllowedHeaderSize: "don't OOM" on a hostile header length
MAX_HEADER: Final = 32 << 20
#: go-car's DefaultMaxAllowedSectionSize: a length prefix above it is refused before
#: anything is allocated (a prefix of 2^60 costs nothing)
MAX_SECTION: Final = 8 << 20
#: the trustless-gateway spec: implementations should not accept blocks above 2 MiB
MAX_BLOCK_TRUSTLESS: Final = 2 << 20
#: a varint is at most 9 bytes in multiformats (63 bits); one more byte tells it is too long
_VARINT_PEEK: Final = 10
#: bytes of a section made contiguous at a time to read its CID when the bytes at hand
#: end inside it (a CIDv1 with a 64-byte digest is 68 bytes)
_CID_PEEK: Final = 128


@dataclass(frozen=True, slots=True)
class CarLimits:
    """Named limits: ``header`` and ``section`` cap length prefixes; ``block`` (None: no
    extra cap) caps a block's bytes, e.g. :data:`MAX_BLOCK_TRUSTLESS` for gateway streams."""

    header: int = MAX_HEADER
    section: int = MAX_SECTION
    block: int | None = None


DEFAULT_LIMITS: Final = CarLimits()
TRUSTLESS_LIMITS: Final = CarLimits(block=MAX_BLOCK_TRUSTLESS)


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: ``next_event`` has nothing complete: feed more bytes (or call ``feed_eof``)
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: the stream ended cleanly after ``feed_eof`` (on a section boundary)
CAR_END: Final = _Sentinel("CAR_END")

Event = CarHeader | Block | _Sentinel

# decoder states
_HEADER, _V2_HEADER, _SKIP_TO_PAYLOAD, _SECTIONS, _TRAILER, _DONE = range(6)


def verify_block(cid: CID, data: bytes | memoryview, offset: int | None = None) -> None:
    """Check ``data`` against ``cid``'s multihash (sha2-256 straight through hashlib; an
    identity CID must carry exactly ``data``).

    Raises :class:`HashMismatch` when it does not match, :class:`VerificationError` for a
    hash function carget cannot compute.
    """
    mh = cid.multihash
    if mh[0] == 0x12 and mh[1] == 0x20 and len(mh) == 34:
        if hashlib.sha256(data).digest() == mh[2:]:
            return
    elif mh[0] == IDENTITY:
        length, p = decode_varint(mh, 1)
        if length == len(mh) - p and mh[p:] == data:
            return
    else:
        try:
            cid.verify(data)
            return
        except UsageError as exc:
            raise VerificationError(f"cannot verify block {cid}: {exc}") from None
    where = f" (section at byte {offset})" if offset is not None else ""
    raise HashMismatch(f"block {cid} does not match its hash{where}")


class CarDecoder:
    """Incremental CAR (v1 and v2) decoder. See the module docstring for the protocol.

    ``verify`` (default True) checks every block's multihash before returning it; pass
    False only when the caller verifies (e.g. on a thread pool) or trusts the bytes.
    """

    def __init__(self, verify: bool = True, limits: CarLimits = DEFAULT_LIMITS) -> None:
        self.verify = verify
        self.limits = limits
        self._cur: memoryview = memoryview(b"")
        self._pos = 0
        self._base = 0  # absolute offset of _cur[0]
        self._queue: deque[bytes | bytearray | memoryview] = deque()
        self._queued = 0
        self._small: bytearray | None = None  # last queue item, ours, still growable
        self._eof = False
        self._state = _HEADER
        self._v2: CarV2Header | None = None
        self._payload_end: int | None = None
        self._error: Exception | None = None
        self.header: CarHeader | None = None
        #: absolute offset of the section of the last Block returned (for indexes)
        self.section_offset = 0
        #: a section whose length and CID are read, waiting for its block's bytes: (CID,
        #: section start, block length), its header consumed (see _section)
        self._pending: tuple[CID, int, int] | None = None

    # --- input ------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes. Large buffers are kept by reference (not copied); small ones are
        coalesced. Raises :class:`UsageError` after :meth:`feed_eof`."""
        if self._eof:
            raise UsageError("CarDecoder.feed() after feed_eof()")
        n = len(data)
        if not n:
            return
        if n < 4096:  # coalesce small pieces so byte-by-byte feeding stays cheap
            if self._small is not None and self._queue and self._queue[-1] is self._small:
                self._small += data
            else:
                self._small = bytearray(data)
                self._queue.append(self._small)
        else:
            self._small = None
            self._queue.append(data)
        self._queued += n

    def feed_eof(self) -> None:
        """Say the input has ended; ``next_event`` then raises :class:`CARError` if it
        stopped mid-header or mid-section, and returns :data:`CAR_END` otherwise."""
        self._eof = True

    @property
    def offset(self) -> int:
        """Absolute stream offset of the first byte not yet consumed (a section counts
        as consumed once its block is returned)."""
        if self._pending is not None:
            return self._pending[1]
        return self._base + self._pos

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet consumed."""
        return self._base + self._pos - self.offset + len(self._cur) - self._pos + self._queued

    @property
    def payload_end(self) -> int | None:
        """Where the sections must end: a CARv2's data offset plus data size (None for a
        CARv1, whose sections run to the end of the stream)."""
        return self._payload_end

    def resume_at(self, offset: int) -> None:
        """Drop every byte fed and go on parsing sections at absolute ``offset``, the
        caller having consumed the sections before it by other means (a reader that
        parallelises the reads of a seekable file); feed bytes from ``offset`` on next.

        Raises :class:`UsageError` before the header is through, after :meth:`feed_eof`,
        after an error, or for an offset behind the bytes already consumed.
        """
        if (self._state != _SECTIONS or offset < self.offset or self._error is not None
                or self._eof):
            raise UsageError("CarDecoder.resume_at() outside the sections, or backwards")
        self._cur = memoryview(b"")
        self._pos = 0
        self._base = offset
        self._queue.clear()
        self._queued = 0
        self._small = None
        self._pending = None

    # --- buffer management ------------------------------------------------------------

    def _pop(self) -> memoryview:
        chunk = self._queue.popleft()
        if chunk is self._small:
            self._small = None
        self._queued -= len(chunk)
        return memoryview(chunk).toreadonly()

    def _ensure(self, n: int) -> bool:
        """Make ``n`` bytes from ``_pos`` contiguous in ``_cur``; False if not yet fed.

        Merging happens only once enough bytes are queued, so every byte is copied at most
        once (and only bytes of a section that straddles two fed buffers)."""
        avail = len(self._cur) - self._pos
        if avail >= n:
            return True
        if avail + self._queued < n:
            return False
        if avail == 0:  # zero-copy: move on to the next fed buffer
            self._base += self._pos
            self._cur = self._pop()
            self._pos = 0
            if len(self._cur) >= n:
                return True
            avail = len(self._cur)
        # one copy into a buffer of exactly n bytes (a bytearray grown piece by piece
        # was copied again as it grew)
        parts = [self._cur[self._pos :]]
        got = len(parts[0])
        while got < n:
            chunk = self._pop()
            take = n - got
            if len(chunk) > take:
                parts.append(chunk[:take])
                rest = chunk[take:]
                self._queue.appendleft(rest)
                self._queued += len(rest)
                got = n
            else:
                parts.append(chunk)
                got += len(chunk)
        self._base += self._pos
        self._pos = 0
        self._cur = memoryview(b"".join(parts))
        return True

    def _available(self) -> int:
        return len(self._cur) - self._pos + self._queued

    def _discard(self, upto: int | None) -> bool:
        """Drop bytes until absolute offset ``upto`` (None: everything fed). True when
        reached."""
        while True:
            here = self._base + self._pos
            if upto is not None and here >= upto:
                return True
            avail = len(self._cur) - self._pos
            step = avail if upto is None else min(avail, upto - here)
            self._pos += step
            if self._pos < len(self._cur):
                continue
            if not self._queue:
                return upto is None
            self._base += self._pos
            self._cur = self._pop()
            self._pos = 0

    def _read_varint(self, what: str) -> tuple[int, int] | None:
        """(value, byte length) of the varint at ``_pos``, or None until more is fed."""
        if not self._ensure(min(_VARINT_PEEK, self._available())) or self._available() == 0:
            return None
        try:
            value, end = decode_varint(self._cur, self._pos)
        except IndexError:
            if self._eof:
                raise CARError(f"truncated: the CAR ends inside the {what} length",
                               self.offset) from None
            return None
        except CIDDecodeError as exc:
            raise CARError(f"bad {what} length: {exc}", self.offset) from None
        return value, end - self._pos

    # --- events -----------------------------------------------------------------------

    def next_event(self) -> Event:
        """The next :class:`CarHeader` or :class:`Block`, or :data:`NEED_DATA`, or
        :data:`CAR_END` after :meth:`feed_eof`.

        Raises :class:`CARError` for a malformed stream (``offset`` says where),
        :class:`LimitExceeded` for a length over a limit, :class:`HashMismatch` for a block
        that does not match its CID. After an error, every call raises it again.
        """
        if self._error is not None:
            raise self._error
        try:
            while True:
                ev = self._step()
                if ev is not None:
                    return ev
        except (CARError, VerificationError) as exc:
            self._error = exc
            raise

    def events(self) -> Iterator[CarHeader | Block]:
        """Every complete event available now (stops at NEED_DATA or CAR_END)."""
        while True:
            ev = self.next_event()
            if isinstance(ev, _Sentinel):
                return
            yield ev

    def _step(self) -> Event | None:
        state = self._state
        if state == _SECTIONS:
            return self._section()
        if state == _HEADER:
            return self._header()
        if state == _V2_HEADER:
            if not self._ensure(CARV2_HEADER_SIZE):
                return self._starved("CARv2 header")
            raw = self._cur[self._pos : self._pos + CARV2_HEADER_SIZE]
            self._v2 = decode_v2_header(raw, self.offset)
            self._pos += CARV2_HEADER_SIZE
            self._payload_end = self._v2.data_offset + self._v2.data_size
            self._state = _SKIP_TO_PAYLOAD
            return None
        if state == _SKIP_TO_PAYLOAD:
            assert self._v2 is not None
            if not self._discard(self._v2.data_offset):
                if self._eof:
                    raise CARError(f"CARv2 data offset {self._v2.data_offset} is past the end "
                                   f"of the file", self.offset)
                return NEED_DATA
            self._state = _HEADER
            return None
        if state == _TRAILER:
            self._discard(None)
            if not self._eof:
                return NEED_DATA
            assert self._v2 is not None
            if self._v2.index_offset and self._v2.index_offset >= self.offset:
                raise CARError(f"CARv2 index offset {self._v2.index_offset} is past the end "
                               f"of the file ({self.offset} bytes)", self.offset)
            self._state = _DONE
            return CAR_END
        return CAR_END

    def _starved(self, what: str) -> _Sentinel:
        if self._eof:
            raise CARError(f"truncated: the CAR ends inside the {what}", self.offset)
        return NEED_DATA

    def _header(self) -> Event | None:
        start = self.offset
        if self._available() == 0:
            if self._eof:
                raise CARError("empty CAR: no header", start)
            return NEED_DATA
        got = self._read_varint("header")
        if got is None:
            return self._starved("header")
        length, hlen = got
        if self._ensure(hlen + 1) and not 0xA0 <= self._cur[self._pos + hlen] <= 0xBF:
            # a CAR header (and a CARv2 pragma) is a DAG-CBOR map right after its length
            raise CARError("not a CAR: it does not start with a CAR header", start)
        if length == 0:
            raise CARError("CAR header length is zero", start)
        if length > self.limits.header:
            raise LimitExceeded(f"CAR header of {length} bytes exceeds the limit of "
                                f"{self.limits.header}", start)
        if self._payload_end is not None and start + hlen + length > self._payload_end:
            raise CARError("CARv1 header runs past the CARv2 data size", start)
        if not self._ensure(hlen + length):
            return self._starved("header")
        body = bytes(self._cur[self._pos + hlen : self._pos + hlen + length])
        version, roots = decode_header(body, start + hlen)
        if version == 2:
            if self._v2 is not None or start != 0:
                raise CARError("CARv2 pragma inside a CARv2 payload", start)
            if bytes(self._cur[self._pos : self._pos + hlen + length]) != CARV2_PRAGMA:
                raise CARError("CARv2 pragma is not in its canonical form", start)
            self._pos += hlen + length
            self._state = _V2_HEADER
            return None
        self._pos += hlen + length
        self._state = _SECTIONS
        self.header = CarHeader(2 if self._v2 else 1, roots, self._v2)
        return self.header

    def _section(self) -> Event | None:
        """A section in two steps: its length and CID, then its block. The block is
        made contiguous on its own, so a block that starts a fed buffer (a chunked HTTP
        answer that sends each section's length and CID in one chunk and the block in
        the next, as kubo's gateway does) is returned without a copy."""
        if self._pending is None:
            ev = self._section_head()
            if self._pending is None:
                return ev
        cid, start, size = self._pending
        if not self._ensure(size):
            return self._starved("section")
        pos = self._pos
        data = self._cur[pos : pos + size]
        if self.verify:
            verify_block(cid, data, start)
        self._pos = pos + size
        self._pending = None
        self.section_offset = start
        return Block(cid, data)

    def _section_head(self) -> Event | None:
        """Read a section's length and CID and check them against the limits, and set
        ``_pending``; else return what comes instead (None: the state changed)."""
        start = self._base + self._pos
        end_of_payload = self._payload_end
        if end_of_payload is not None and start >= end_of_payload:
            self._state = _TRAILER
            return None
        if len(self._cur) == self._pos and not self._queued:
            if not self._eof:
                return NEED_DATA
            if end_of_payload is not None:
                raise CARError(f"CARv2 data size runs past the end of the file "
                               f"(payload should end at byte {end_of_payload})", start)
            self._state = _DONE
            return CAR_END
        got = self._read_varint("section")
        if got is None:
            return self._starved("section length")
        length, hlen = got
        if length == 0:
            raise CARError("zero-length CAR section", start)
        if length > self.limits.section:
            raise LimitExceeded(f"CAR section of {length} bytes exceeds the limit of "
                                f"{self.limits.section}", start)
        total = hlen + length
        if end_of_payload is not None and start + total > end_of_payload:
            raise CARError("CAR section runs past the CARv2 data size", start)
        # the CID from the bytes at hand when they hold it (~36 bytes for sha2-256), so
        # a block that starts the next fed buffer stays there; else a little more, the
        # whole section only for a CID that is still not whole
        avail = len(self._cur) - self._pos
        peek = min(total, avail if avail > hlen else hlen + _CID_PEEK)
        while True:
            if not self._ensure(peek):
                return self._starved("section")
            pos = self._pos
            try:
                cid, clen = read_cid(self._cur[pos + hlen : pos + peek], 0)
                break
            except (IndexError, CIDDecodeError, UsageError) as exc:
                if peek < total:  # judged on the whole section, as if read at once
                    peek = min(total, peek + _CID_PEEK) if isinstance(exc, IndexError) else total
                    continue
                if isinstance(exc, IndexError):
                    raise CARError("CID runs past the end of its section", start) from None
                raise CARError(f"bad CID in section: {exc}", start) from None
        size = length - clen
        block_limit = self.limits.block
        if block_limit is not None and size > block_limit:
            raise LimitExceeded(f"block {cid} of {size} bytes exceeds the limit of "
                                f"{block_limit}", start)
        self._pos = pos + hlen + clen
        self._pending = (cid, start, size)
        return None


def decode_car(data: bytes | bytearray | memoryview, verify: bool = True,
               limits: CarLimits = DEFAULT_LIMITS) -> tuple[CarHeader, list[Block]]:
    """Decode a whole CAR held in memory: its header and blocks.

    Raises what :meth:`CarDecoder.next_event` raises.
    """
    dec = CarDecoder(verify=verify, limits=limits)
    dec.feed(data)
    dec.feed_eof()
    blocks: list[Block] = []
    header: CarHeader | None = None
    while True:
        ev = dec.next_event()
        if ev is CAR_END:
            break
        if isinstance(ev, CarHeader):
            header = ev
        elif isinstance(ev, Block):
            blocks.append(ev)
    assert header is not None
    return header, blocks
