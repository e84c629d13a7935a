"""CARv1 encoding: header and sections (sans-IO: returns bytes, writes nothing)."""

from __future__ import annotations

from collections.abc import Sequence

from ..cid import CID, encode_varint

__all__ = ["encode_header", "section_prefix"]


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")


def encode_header(roots: Sequence[CID], version: int = 1) -> bytes:
    """varint(length) + DAG-CBOR ``{"roots": [CID...], "version": 1}``.

    DAG-CBOR map keys sort by length then bytes, so "roots" precedes "version"; a CID is
    tag 42 over a byte string holding 0x00 + the binary CID.
    """
    body = bytearray(b"\xa2\x65roots")
    body += _cbor_head(4, len(roots))
    for cid in roots:
        raw = b"\x00" + cid.bytes
        body += b"\xd8\x2a" + _cbor_head(2, len(raw)) + raw
    body += b"\x67version" + _cbor_head(0, version)
    return encode_varint(len(body)) + bytes(body)


def section_prefix(cid: CID, data_len: int) -> bytes:
    """varint(len(CID) + len(data)) + CID bytes; the block's bytes follow it."""
    raw = cid.bytes
    return encode_varint(len(raw) + data_len) + raw
