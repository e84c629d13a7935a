"""CARv2 indexes: MultihashIndexSorted (0x0401) written and read, IndexSorted (0x0400) read.

Layout (ipld/specs carv2 "Index format"; integers little-endian), after a varint codec:

    IndexSorted (0x0400):    u32 bucket count, then per bucket (ascending width):
                             u32 width (digest length + 8), u64 bytes of records,
                             records = digest + u64 offset, sorted by digest
    MultihashIndexSorted:    u32 code count, then per multihash code (ascending):
    (0x0401)                 u64 code, then an IndexSorted body for that code's digests

Offsets count from the start of the CARv1 payload (the data offset) to a section's length
varint. Identity multihashes are not indexed (go-car's MultihashIndexSorted skips them).
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import pairwise
from typing import Final

from ..cid import IDENTITY, decode_varint, encode_varint
from ..errors import CARError, CIDDecodeError

__all__ = [
    "INDEX_SORTED",
    "MULTIHASH_INDEX_SORTED",
    "MultihashIndex",
    "decode_index",
    "encode_multihash_index",
]

INDEX_SORTED: Final = 0x0400
MULTIHASH_INDEX_SORTED: Final = 0x0401
#: refuse indexes claiming more buckets or codes than a sane CAR could have
_MAX_BUCKETS: Final = 1024


def _split_multihash(mh: bytes) -> tuple[int, bytes]:
    code, pos = decode_varint(mh, 0)
    _length, pos = decode_varint(mh, pos)
    return code, mh[pos:]


def encode_multihash_index(records: Iterable[tuple[bytes, int]]) -> bytes:
    """Encode (multihash, payload offset) records as a MultihashIndexSorted index,
    codec varint included. Identity multihashes are left out."""
    by_code: dict[int, dict[int, list[tuple[bytes, int]]]] = {}
    for mh, offset in records:
        code, digest = _split_multihash(mh)
        if code == IDENTITY:
            continue
        by_code.setdefault(code, {}).setdefault(len(digest), []).append((digest, offset))
    out = bytearray(encode_varint(MULTIHASH_INDEX_SORTED))
    out += struct.pack("<I", len(by_code))
    for code in sorted(by_code):
        buckets = by_code[code]
        out += struct.pack("<QI", code, len(buckets))
        for dlen in sorted(buckets):
            recs = sorted(buckets[dlen])
            width = dlen + 8
            out += struct.pack("<IQ", width, width * len(recs))
            for digest, offset in recs:
                out += digest
                out += struct.pack("<Q", offset)
    return bytes(out)


class MultihashIndex:
    """A loaded index: multihash -> payload offsets (sorted digests, binary search)."""

    def __init__(self) -> None:
        # (code or None for IndexSorted, digest length) -> (sorted digests, offsets)
        self._buckets: dict[tuple[int | None, int], tuple[list[bytes], list[int]]] = {}

    def add_bucket(self, code: int | None, width: int, body: memoryview, where: int) -> None:
        dlen = width - 8
        if dlen <= 0 or len(body) % width:
            raise CARError(f"CARv2 index bucket of width {width} is malformed", where)
        digests = [bytes(body[i : i + dlen]) for i in range(0, len(body), width)]
        offsets = [int.from_bytes(body[i + dlen : i + width], "little")
                   for i in range(0, len(body), width)]
        if any(a > b for a, b in pairwise(digests)):
            raise CARError("CARv2 index bucket is not sorted", where)
        self._buckets[(code, dlen)] = (digests, offsets)

    def find(self, multihash: bytes) -> list[int]:
        """Payload offsets recorded for ``multihash`` (empty when absent)."""
        try:
            code, digest = _split_multihash(multihash)
        except (IndexError, CIDDecodeError):
            return []
        for key in ((code, len(digest)), (None, len(digest))):
            bucket = self._buckets.get(key)
            if bucket is None:
                continue
            digests, offsets = bucket
            i = bisect_left(digests, digest)
            found = []
            while i < len(digests) and digests[i] == digest:
                found.append(offsets[i])
                i += 1
            if found:
                return found
        return []

    def __len__(self) -> int:
        return sum(len(d) for d, _ in self._buckets.values())

    def items(self) -> Iterator[tuple[int | None, bytes, int]]:
        """(multihash code or None, digest, offset) for every record."""
        for (code, _), (digests, offsets) in self._buckets.items():
            for d, o in zip(digests, offsets, strict=True):
                yield code, d, o


def _u(fmt: str, buf: memoryview, pos: int, base: int) -> tuple[tuple[int, ...], int]:
    size = struct.calcsize(fmt)
    if pos + size > len(buf):
        raise CARError("CARv2 index is truncated", base + pos)
    return struct.unpack_from(fmt, buf, pos), pos + size


def _sorted_body(idx: MultihashIndex, code: int | None, buf: memoryview, pos: int,
                 base: int) -> int:
    (count,), pos = _u("<I", buf, pos, base)
    if count > _MAX_BUCKETS:
        raise CARError(f"CARv2 index claims {count} buckets", base + pos)
    for _ in range(count):
        (width, nbytes), pos = _u("<IQ", buf, pos, base)
        if pos + nbytes > len(buf):
            raise CARError("CARv2 index bucket runs past the end of the file", base + pos)
        idx.add_bucket(code, width, buf[pos : pos + nbytes], base + pos)
        pos += nbytes
    return pos


def decode_index(raw: bytes | memoryview, base: int = 0) -> MultihashIndex:
    """Decode a CARv2 index (codec varint first). ``base`` is its file offset, for errors.

    Raises :class:`CARError` for a truncated or malformed index or an unknown index codec.
    """
    buf = memoryview(raw)
    try:
        codec, pos = decode_varint(buf, 0)
    except (IndexError, CIDDecodeError):
        raise CARError("CARv2 index codec does not parse", base) from None
    idx = MultihashIndex()
    if codec == INDEX_SORTED:
        pos = _sorted_body(idx, None, buf, pos, base)
    elif codec == MULTIHASH_INDEX_SORTED:
        (ncodes,), pos = _u("<I", buf, pos, base)
        if ncodes > _MAX_BUCKETS:
            raise CARError(f"CARv2 index claims {ncodes} multihash codes", base + pos)
        for _ in range(ncodes):
            (code,), pos = _u("<Q", buf, pos, base)
            pos = _sorted_body(idx, code, buf, pos, base)
    else:
        raise CARError(f"unsupported CARv2 index codec {codec:#x}", base)
    return idx
