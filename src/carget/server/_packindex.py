"""The disk cache's pack files, sans-IO: their names and the records of their indexes.

A pack is two files in the cache's ``packs`` folder, named after the process that writes
it: ``<pid>-<n>.pack`` holds blocks' bytes back to back, nothing else, and
``<pid>-<n>.idx`` says where each lies. The index starts with :data:`INDEX_MAGIC`, then
holds one record per block, appended once the block's bytes are in the pack::

    u8 multihash length | multihash | u64 offset | u32 length | u32 CRC-32 of the above

(little-endian). :func:`parse_records` takes whole records up to the first one that is
cut short (a crash in mid-append; a writer still alive may complete it later) or wrong (a
CRC or a field that cannot be: the zeroes a power cut leaves, damage). Nothing after a
wrong record is taken: records differ in size, so there is nothing to resynchronise on.
The CRC only frames records; whether a block's bytes are right is the block's hash's job.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "INDEX_MAGIC",
    "MAX_MULTIHASH",
    "PACK_SUFFIX",
    "INDEX_SUFFIX",
    "IndexRecord",
    "encode_record",
    "pack_stem",
    "parse_records",
    "parse_stem",
]

#: the first bytes of every index: a file under an index's name without them is not one
INDEX_MAGIC = b"carget pack index 1\n"
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".idx"
#: no multihash carget verifies is longer (sha2-512's is 66 bytes); a longer one is a
#: wrong record
MAX_MULTIHASH = 128
_TAIL = struct.Struct("<QI")  # offset, length
_CRC = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """A block of a pack: its multihash and where its bytes lie."""

    multihash: bytes
    offset: int
    length: int


def pack_stem(pid: int, serial: int) -> str:
    """The name a pack's two files share, before their suffixes."""
    return f"{pid}-{serial}"


def parse_stem(stem: str) -> tuple[int, int] | None:
    """``(pid, serial)`` of a pack's stem, or None when it is not one."""
    pid, dash, serial = stem.partition("-")
    if not dash or not pid.isdigit() or not serial.isdigit() or not pid.isascii() \
            or not serial.isascii():
        return None
    return int(pid), int(serial)


def encode_record(multihash: bytes, offset: int, length: int) -> bytes:
    """The index record of a block of ``length`` bytes at ``offset`` in its pack."""
    if not 0 < len(multihash) <= MAX_MULTIHASH:
        raise ValueError(f"a multihash of {len(multihash)} bytes")
    body = bytes([len(multihash)]) + multihash + _TAIL.pack(offset, length)
    return body + _CRC.pack(zlib.crc32(body))


def parse_records(data: bytes | memoryview, max_length: int
                  ) -> tuple[list[IndexRecord], int, bool]:
    """The whole records at the start of ``data`` (which follows the magic, or a previous
    call's last whole record): ``(records, bytes they take, wrong)``. ``wrong`` says the
    records stop at one that cannot be right (bad CRC, empty or overlong multihash, a
    length over ``max_length``); otherwise they stop where ``data`` ends, before
    a record cut short."""
    view = memoryview(data)
    out: list[IndexRecord] = []
    pos = 0
    end = len(view)
    while pos < end:
        n = view[pos]
        if not 0 < n <= MAX_MULTIHASH:
            return out, pos, True
        size = 1 + n + _TAIL.size + _CRC.size
        if pos + size > end:
            break
        body = view[pos: pos + size - _CRC.size]
        (crc,) = _CRC.unpack_from(view, pos + size - _CRC.size)
        if zlib.crc32(body) != crc:
            return out, pos, True
        offset, length = _TAIL.unpack_from(view, pos + 1 + n)
        if length > max_length:
            return out, pos, True
        out.append(IndexRecord(bytes(view[pos + 1: pos + 1 + n]), offset, length))
        pos += size
    return out, pos, False
