"""Protocol Buffers wire format: just enough to read and write dag-pb and UnixFS by hand.

Hand-written because dag-pb's canonical form orders PBNode fields Links (2) before Data (1),
which no protobuf library emits, and because strict decoding must reject what a protobuf
library would silently accept (duplicate fields, wrong wire types, trailing junk).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..cid import encode_varint
from ..errors import DecodeError

__all__ = ["VARINT", "LEN", "I32", "I64", "iter_fields", "key", "len_field", "read_varint"]

VARINT = 0
I64 = 1
LEN = 2
I32 = 5

Buffer = bytes | bytearray | memoryview


def key(field: int, wire: int) -> bytes:
    return encode_varint((field << 3) | wire)


def len_field(field: int, payload: bytes) -> bytes:
    return key(field, LEN) + encode_varint(len(payload)) + payload


def read_varint(buf: Buffer, pos: int, end: int, err: type[DecodeError]) -> tuple[int, int]:
    """Read a protobuf varint (up to 64 bits) in ``buf[pos:end]``."""
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise err("truncated varint", start)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if pos - start > 1 and b == 0:
                raise err("varint is not minimally encoded", start)
            if result >= 1 << 64:
                raise err("varint overflows 64 bits", start)
            return result, pos
        shift += 7
        if shift >= 70:
            raise err("varint too long", start)


def iter_fields(
    buf: Buffer, pos: int, end: int, err: type[DecodeError]
) -> Iterator[tuple[int, int, int | memoryview, int]]:
    """Yield ``(field number, wire type, value, offset)`` for each field in ``buf[pos:end]``.

    LEN values come as memoryviews of ``buf`` (no copy); VARINT values as ints; I32/I64 as
    ints (little-endian). Raises ``err`` for truncation or an unknown wire type.
    """
    mv = memoryview(buf)
    while pos < end:
        at = pos
        tag, pos = read_varint(buf, pos, end, err)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise err("field number 0", at)
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end, err)
            yield field, wire, value, at
        elif wire == LEN:
            length, pos = read_varint(buf, pos, end, err)
            if pos + length > end:
                raise err(f"length {length} runs past the end of the message", at)
            yield field, wire, mv[pos : pos + length], at
            pos += length
        elif wire == I32:
            if pos + 4 > end:
                raise err("truncated fixed32", at)
            yield field, wire, int.from_bytes(mv[pos : pos + 4], "little"), at
            pos += 4
        elif wire == I64:
            if pos + 8 > end:
                raise err("truncated fixed64", at)
            yield field, wire, int.from_bytes(mv[pos : pos + 8], "little"), at
            pos += 8
        else:
            raise err(f"unsupported wire type {wire}", at)
