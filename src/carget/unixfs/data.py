"""UnixFS ``Data`` message (proto2), encode and strict decode.

proto2 rules that decide CIDs: ``blocksizes`` is repeated and NOT packed; optional fields
that are unset are absent (so ``None`` here, never a default value); fields are written in
field-number order. Decoding also accepts packed ``blocksizes`` (legal protobuf), but
rejects wrong wire types, a missing ``Type``, and duplicate singular fields.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..cid import encode_varint
from ..errors import UnixFSError
from ._wire import I32, LEN, VARINT, Buffer, iter_fields, key, read_varint

__all__ = ["HAMT_HASH_MURMUR3", "DataType", "UnixFSData", "UnixTime", "decode_data",
           "decode_data_view", "encode_data"]

#: multicodec of murmur3-x64-64, the only HAMT hash UnixFS defines (a shard's hashType)
HAMT_HASH_MURMUR3 = 0x22


class DataType(enum.IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixTime:
    seconds: int
    nanos: int | None = None


@dataclass(frozen=True, slots=True)
class UnixFSData:
    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: UnixTime | None = None


def _zigzag_free_int64(n: int) -> int:
    """proto int64 on the wire: negative numbers are 10-byte two's complement varints."""
    return n & 0xFFFFFFFFFFFFFFFF


def encode_data(d: UnixFSData) -> bytes:
    out = bytearray(b"\x08")
    out += encode_varint(int(d.type))
    if d.data is not None:
        out += b"\x12" + encode_varint(len(d.data)) + d.data
    if d.filesize is not None:
        out += b"\x18" + encode_varint(d.filesize)
    for size in d.blocksizes:
        out += b"\x20" + encode_varint(size)
    if d.hash_type is not None:
        out += b"\x28" + encode_varint(d.hash_type)
    if d.fanout is not None:
        out += b"\x30" + encode_varint(d.fanout)
    if d.mode is not None:
        out += b"\x38" + encode_varint(d.mode)
    if d.mtime is not None:
        t = b"\x08" + encode_varint(_zigzag_free_int64(d.mtime.seconds))
        if d.mtime.nanos is not None:
            t += key(2, I32) + d.mtime.nanos.to_bytes(4, "little")
        out += b"\x42" + encode_varint(len(t)) + t
    return bytes(out)


def _decode_time(buf: memoryview, base: int) -> UnixTime:
    seconds: int | None = None
    nanos: int | None = None
    for field, wire, value, at in iter_fields(buf, 0, len(buf), UnixFSError):
        if field == 1 and wire == VARINT and seconds is None:
            assert isinstance(value, int)
            seconds = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 2 and wire == I32 and nanos is None:
            assert isinstance(value, int)
            if not 0 < value < 1_000_000_000:
                raise UnixFSError(f"mtime nanoseconds {value} out of range", base + at)
            nanos = value
        else:
            raise UnixFSError(f"bad UnixTime field {field}", base + at)
    if seconds is None:
        raise UnixFSError("UnixTime without Seconds", base)
    return UnixTime(seconds, nanos)


def decode_data(buf: Buffer) -> UnixFSData:
    """Decode UnixFS Data. Raises :class:`UnixFSError` for anything malformed."""
    fs, data, _ = decode_data_view(buf)
    if data is None:
        return fs
    return UnixFSData(fs.type, bytes(data), fs.filesize, fs.blocksizes, fs.hash_type,
                      fs.fanout, fs.mode, fs.mtime)


def decode_data_view(buf: Buffer) -> tuple[UnixFSData, memoryview | None, int]:
    """:func:`decode_data` without copying the ``Data`` field (a leaf's file bytes): the
    message with ``data`` left None, the field as a memoryview of ``buf`` (None when
    absent), and the offset in ``buf`` where it starts. Raises what :func:`decode_data`
    raises."""
    fields: dict[int, object] = {}
    blocksizes: list[int] = []
    mv = memoryview(buf)
    data_end = len(mv)  # where Data ends: the start of the field after it, if any
    after_data = False
    for field, wire, value, at in iter_fields(mv, 0, len(mv), UnixFSError):
        if after_data:
            data_end, after_data = at, False
        if field == 4:
            if wire == VARINT:
                assert isinstance(value, int)
                blocksizes.append(value)
            elif wire == LEN:
                assert isinstance(value, memoryview)
                pos = 0
                while pos < len(value):
                    size, pos = read_varint(value, pos, len(value), UnixFSError)
                    blocksizes.append(size)
            else:
                raise UnixFSError("blocksizes has wrong wire type", at)
            continue
        if field in fields:
            raise UnixFSError(f"UnixFS field {field} appears twice", at)
        want = LEN if field in (2, 8) else VARINT
        if field > 8:
            raise UnixFSError(f"unknown UnixFS field {field}", at)
        if wire != want:
            raise UnixFSError(f"UnixFS field {field} has wrong wire type", at)
        fields[field] = _decode_time(value, at) if field == 8 else value  # type: ignore[arg-type]
        after_data = field == 2
    if 1 not in fields:
        raise UnixFSError("UnixFS Data without Type", 0)
    raw_type = fields[1]
    assert isinstance(raw_type, int)
    try:
        dtype = DataType(raw_type)
    except ValueError:
        raise UnixFSError(f"unknown UnixFS type {raw_type}", 0) from None
    data = fields.get(2)
    view = data if isinstance(data, memoryview) else None
    mode = fields.get(7)
    if isinstance(mode, int) and mode > 0xFFFFFFFF:
        raise UnixFSError("mode does not fit in 32 bits", 0)
    fs = UnixFSData(
        type=dtype,
        data=None,
        filesize=fields.get(3),  # type: ignore[arg-type]
        blocksizes=tuple(blocksizes),
        hash_type=fields.get(5),  # type: ignore[arg-type]
        fanout=fields.get(6),  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        mtime=fields.get(8),  # type: ignore[arg-type]
    )
    return fs, view, data_end - len(view) if view is not None else 0
