"""CAR headers: the CARv1 DAG-CBOR header and the CARv2 pragma + fixed 40-byte header.

The CARv1 header is read with a small strict CBOR reader rather than the ``dag_cbor``
package: it runs once per stream on bytes from strangers, so it must be cheap to import,
bounded in depth, and fail only with :class:`CARError`.

CARv2 (ipld/specs ``carv2``): the 11-byte pragma ``0a a1 67 76 65 72 73 69 6f 6e 02`` is a
CARv1-style header ``{"version": 2}``; 40 bytes follow: 16 bytes of characteristics, then
data offset, data size and index offset as little-endian u64.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ..cid import CID
from ..errors import CARError, CIDDecodeError, UsageError

__all__ = [
    "CARV2_HEADER_SIZE",
    "CARV2_PRAGMA",
    "CarHeader",
    "CarV2Header",
    "decode_header",
    "decode_v2_header",
    "encode_v2_header",
]

CARV2_PRAGMA: Final = bytes.fromhex("0aa16776657273696f6e02")
#: characteristics (16) + data offset, data size, index offset (8 each)
CARV2_HEADER_SIZE: Final = 40

#: CBOR nesting we follow in a header; a real one nests 3 deep (map, array, tag)
_MAX_DEPTH: Final = 16
_TAG_CID: Final = 42


@dataclass(frozen=True, slots=True)
class CarV2Header:
    """The fixed CARv2 header (offsets are from the start of the file)."""

    characteristics: bytes  # 16 bytes, kept verbatim (go-car: bit 0 of Hi = fully indexed)
    data_offset: int
    data_size: int
    index_offset: int


@dataclass(frozen=True, slots=True)
class CarHeader:
    """The first event of a CAR: ``version`` 1 or 2, the payload's roots, and for CARv2
    the fixed header (``v2``)."""

    version: int
    roots: tuple[CID, ...]
    v2: CarV2Header | None = None


class _Reader:
    """Strict CBOR reader over one header's bytes (definite lengths only, as DAG-CBOR)."""

    __slots__ = ("base", "buf", "pos")

    def __init__(self, buf: bytes, base: int) -> None:
        self.buf = buf
        self.pos = 0
        self.base = base

    def fail(self, msg: str) -> CARError:
        return CARError(f"bad CAR header: {msg}", self.base + self.pos)

    def _arg(self, info: int) -> int:
        if info < 24:
            return info
        if info > 27:
            raise self.fail("indefinite or reserved CBOR length")
        n = 1 << (info - 24)
        end = self.pos + n
        if end > len(self.buf):
            raise self.fail("truncated CBOR")
        v = int.from_bytes(self.buf[self.pos : end], "big")
        self.pos = end
        return v

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise self.fail("truncated CBOR")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def value(self, depth: int = 0) -> object:
        if depth > _MAX_DEPTH:
            raise self.fail("CBOR nested too deep")
        if self.pos >= len(self.buf):
            raise self.fail("truncated CBOR")
        ib = self.buf[self.pos]
        self.pos += 1
        major, info = ib >> 5, ib & 31
        if major == 7:
            simple = {20: False, 21: True, 22: None}
            if info in simple:
                return simple[info]
            if info in (25, 26, 27):
                self._take(1 << (info - 24))
                return 0.0
            raise self.fail(f"unsupported CBOR simple value {info}")
        arg = self._arg(info)
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self._take(arg)
        if major == 3:
            try:
                return self._take(arg).decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("invalid UTF-8 in CBOR text") from None
        if major == 4:
            if arg > len(self.buf):
                raise self.fail("CBOR array longer than the header")
            return [self.value(depth + 1) for _ in range(arg)]
        if major == 5:
            if arg > len(self.buf):
                raise self.fail("CBOR map longer than the header")
            out: dict[object, object] = {}
            for _ in range(arg):
                k = self.value(depth + 1)
                if not isinstance(k, str):
                    raise self.fail("CBOR map key is not text")
                if k in out:
                    raise self.fail(f"duplicate key {k!r}")
                out[k] = self.value(depth + 1)
            return out
        # major 6: tags; DAG-CBOR has only tag 42 (CID)
        if arg != _TAG_CID:
            raise self.fail(f"unsupported CBOR tag {arg}")
        at = self.pos
        raw = self.value(depth + 1)
        if not isinstance(raw, bytes) or not raw or raw[0] != 0:
            raise CARError("bad CAR header: CID tag without 0x00-prefixed bytes", self.base + at)
        try:
            return CID.from_bytes(raw[1:])
        except (CIDDecodeError, IndexError, UsageError) as exc:
            raise CARError(f"bad CAR header: root CID does not parse: {exc}",
                           self.base + at) from None


def decode_header(body: bytes, offset: int = 0) -> tuple[int, tuple[CID, ...]]:
    """Decode a CAR header body (the DAG-CBOR map after the length varint).

    Returns ``(version, roots)``; a version-2 header (the CARv2 pragma) has no roots.
    Raises :class:`CARError` (with ``offset`` added to positions) for anything else.
    """
    r = _Reader(body, offset)
    value = r.value()
    if r.pos != len(body):
        raise CARError("bad CAR header: trailing bytes", offset + r.pos)
    if not isinstance(value, dict):
        raise CARError("bad CAR header: not a map", offset)
    version = value.get("version")
    if version == 2:
        return 2, ()
    if version != 1:
        raise CARError(f"unsupported CAR version {version!r}", offset)
    roots = value.get("roots")
    if not isinstance(roots, list) or not all(isinstance(c, CID) for c in roots):
        raise CARError("bad CAR header: roots is not a list of CIDs", offset)
    return 1, tuple(c for c in roots if isinstance(c, CID))


def decode_v2_header(raw: bytes | memoryview, offset: int = 11) -> CarV2Header:
    """Decode the fixed 40-byte CARv2 header. Raises :class:`CARError` when its offsets
    cannot be right (the payload starting inside the header)."""
    raw = bytes(raw)
    characteristics = raw[:16]
    data_offset, data_size, index_offset = struct.unpack("<QQQ", raw[16:40])
    if data_offset < len(CARV2_PRAGMA) + CARV2_HEADER_SIZE:
        raise CARError(f"CARv2 data offset {data_offset} points inside the header", offset)
    if index_offset and index_offset < data_offset + data_size:
        raise CARError(f"CARv2 index offset {index_offset} points inside the payload", offset)
    return CarV2Header(characteristics, data_offset, data_size, index_offset)


def encode_v2_header(h: CarV2Header) -> bytes:
    """Pragma + the fixed 40-byte header."""
    return (CARV2_PRAGMA + h.characteristics.ljust(16, b"\0")[:16]
            + struct.pack("<QQQ", h.data_offset, h.data_size, h.index_offset))
