"""dag-pb and UnixFS Data codecs: round trips, canonical bytes, strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carget.cid import CID, DAG_PB, RAW
from carget.errors import DagPBError, UnixFSError
from carget.unixfs.dagpb import PBLink, PBNode, decode_node, encode_node
from carget.unixfs.data import DataType, UnixFSData, UnixTime, decode_data, encode_data

cids = st.builds(
    lambda digest, v1, raw: (
        CID(1, RAW if raw else DAG_PB, b"\x12\x20" + digest)
        if v1 or raw
        else CID(0, DAG_PB, b"\x12\x20" + digest)
    ),
    st.binary(min_size=32, max_size=32),
    st.booleans(),
    st.booleans(),
)
links = st.builds(PBLink, cids, st.none() | st.text(max_size=20), st.none() | st.integers(0, 2**63))
nodes = st.builds(
    PBNode, st.lists(links, max_size=5).map(tuple), st.none() | st.binary(max_size=64)
)
times = st.builds(
    UnixTime, st.integers(-(2**63), 2**63 - 1), st.none() | st.integers(1, 999_999_999)
)
datas = st.builds(
    UnixFSData,
    st.sampled_from(list(DataType)),
    st.none() | st.binary(max_size=64),
    st.none() | st.integers(0, 2**64 - 1),
    st.lists(st.integers(0, 2**64 - 1), max_size=6).map(tuple),
    st.none() | st.integers(0, 2**64 - 1),
    st.none() | st.integers(0, 2**64 - 1),
    st.none() | st.integers(0, 2**32 - 1),
    st.none() | times,
)


@given(nodes)
def test_dagpb_round_trip(node: PBNode) -> None:
    assert decode_node(encode_node(node.links, node.data)) == node


@given(datas)
def test_unixfs_round_trip(d: UnixFSData) -> None:
    assert decode_data(encode_data(d)) == d


def test_links_are_written_before_data() -> None:
    cid = CID.parse("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
    block = encode_node([PBLink(cid, "", 6)], b"\x08\x02")
    assert block[0] == 0x12  # field 2 (Links) first
    assert block.endswith(b"\x0a\x02\x08\x02")  # field 1 (Data) last
    # the empty name is present: Hash, Name "", Tsize
    assert b"\x12\x00\x18\x06" in block


def test_blocksizes_are_not_packed() -> None:
    raw = encode_data(UnixFSData(DataType.FILE, filesize=3, blocksizes=(1, 2)))
    assert raw == b"\x08\x02\x18\x03\x20\x01\x20\x02"


def test_packed_blocksizes_are_read() -> None:
    assert decode_data(b"\x08\x02\x22\x02\x01\x02").blocksizes == (1, 2)


@pytest.mark.parametrize(
    "block",
    [
        b"\x0a\x00\x12\x00",  # Data before Links
        b"\x0a\x00\x0a\x00",  # Data twice
        b"\x1a\x00",  # unknown field 3
        b"\x08\x01",  # varint where bytes expected
        b"\x12\x05\x0a\x03abc",  # link hash is not a CID
        b"\x12\x02\x12\x00",  # link without Hash
        b"\x0a\x05ab",  # length runs past the end
        b"\x0a",  # truncated
    ],
)
def test_dagpb_rejects_malformed(block: bytes) -> None:
    with pytest.raises(DagPBError):
        decode_node(block)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x10\x00", b"\x08\x09", b"\x08\x02\x08\x02", b"\x08\x02\x1a\x00", b"\x08"],
)
def test_unixfs_rejects_malformed(data: bytes) -> None:
    with pytest.raises(UnixFSError):
        decode_data(data)


@given(st.binary(max_size=200))
def test_garbage_raises_only_our_errors(blob: bytes) -> None:
    for decode, err in ((decode_node, DagPBError), (decode_data, UnixFSError)):
        try:
            decode(blob)
        except err:
            pass
