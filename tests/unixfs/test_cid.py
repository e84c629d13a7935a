from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carget import multibase
from carget.cid import CID, DAG_PB, RAW, decode_varint, encode_varint, read_cid
from carget.errors import CIDDecodeError, CIDParseError, HashMismatch

V0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
V1 = "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"


def test_v0_v1_conversion() -> None:
    cid = CID.parse(V0)
    assert str(cid.to_v1()) == V1
    assert cid.to_v1().to_v0() == cid
    assert CID.parse(V1).codec == DAG_PB


@pytest.mark.parametrize("base", list(multibase.BASES))
def test_every_base_round_trips(base: str) -> None:
    cid = CID.parse(V1)
    assert CID.parse(cid.encode(base)) == cid


@given(st.integers(0, 2**63 - 1))
def test_varint_round_trip(n: int) -> None:
    raw = encode_varint(n)
    assert decode_varint(raw + b"junk") == (n, len(raw))


def test_read_cid_leaves_trailing_bytes() -> None:
    cid = CID.of(b"hello", RAW)
    parsed, end = read_cid(cid.bytes + b"block", 0)
    assert parsed == cid and end == len(cid.bytes)


@pytest.mark.parametrize("text", ["", "Qm123", "bafy!!", "x" + V1[1:], "zzzz"])
def test_bad_text_is_a_parse_error(text: str) -> None:
    with pytest.raises(CIDParseError):
        CID.parse(text)


def test_truncated_binary_cid() -> None:
    with pytest.raises((IndexError, CIDDecodeError)):
        read_cid(CID.of(b"x", RAW).bytes[:-1], 0)
    with pytest.raises(CIDDecodeError):
        read_cid(b"\x02\x55\x12\x20", 0)


def test_verify() -> None:
    cid = CID.of(b"abc", RAW)
    cid.verify(b"abc")
    with pytest.raises(HashMismatch):
        cid.verify(b"abd")
