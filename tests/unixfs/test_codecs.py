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


def _unixfs_fields(fields: list[bytes]) -> bytes:
    """A UnixFS Data message of the given encoded fields, in the order given."""
    return b"".join(fields)


@given(st.binary(max_size=300), st.permutations(["type", "data", "filesize"]),
       st.lists(links, max_size=2).map(tuple))
def test_view_decoding_finds_the_data_in_place(payload: bytes, order: list[str],
                                               node_links: tuple[PBLink, ...]) -> None:
    """decode_unixfs(view=True) gives a file node's bytes as a view of the block at
    data_at, whatever order the (legal, non-canonical) UnixFS fields come in; the copying
    decoders agree with it."""
    from carget.cid import encode_varint
    from carget.unixfs.dagpb import decode_node_view
    from carget.unixfs.data import decode_data_view
    from carget.unixfs.node import decode_unixfs

    sizes = [1] * len(node_links)
    parts = {"type": b"\x08\x02",
             "data": b"\x12" + encode_varint(len(payload)) + payload,
             "filesize": b"\x18" + encode_varint(len(payload) + len(sizes))}
    msg = _unixfs_fields([parts[k] for k in order]
                         + [b"\x20" + encode_varint(s) for s in sizes])
    block = encode_node(node_links, msg)
    cid = CID(1, DAG_PB, b"\x12\x20" + bytes(32))
    node = decode_unixfs(cid, block, view=True)
    assert isinstance(node.data, memoryview)
    assert node.data == payload
    assert block[node.data_at:node.data_at + len(payload)] == payload
    copied = decode_unixfs(cid, block)
    assert isinstance(copied.data, bytes) and copied.data == payload
    assert copied.data_at == node.data_at and copied.unixfs == node.unixfs
    got_links, pb_data = decode_node_view(block)
    assert got_links == node_links and pb_data == msg
    fs, data, at = decode_data_view(msg)
    assert data == payload and msg[at:at + len(payload)] == payload and fs.data is None
    assert decode_data(msg).data == payload
