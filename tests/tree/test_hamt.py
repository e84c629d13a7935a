"""HAMT shards: kubo's sharding rule at the boundary, shard bytes, sub-shards, and reading
back (``node.py``'s ``hamt_lookup``), including the gateway-conformance HAMT fixture rebuilt
entry for entry to the same root CID."""

from __future__ import annotations

import hashlib

import pytest

from carget.car.decoder import decode_car
from carget.cid import CID, DAG_PB, RAW
from carget.errors import UnixFSError
from carget.unixfs.dagpb import decode_node
from carget.unixfs.data import DataType, decode_data
from carget.unixfs.directory import DirectoryBuilder
from carget.unixfs.hamt import build_hamt, check_fanout, hamt_order, name_hash
from carget.unixfs.node import decode_unixfs, hamt_index
from carget.unixfs.options import DEFAULT, UNIXFS_V1_2025, ImportOptions, resolve_options
from sharedpath import CONFORMANCE

FIXTURE = CONFORMANCE / "trustless_gateway_car" / "single-layer-hamt-with-multi-block-files.car"
FIXTURE_ROOT = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"


def _cid(i: int, version: int) -> CID:
    digest = b"\x12\x20" + hashlib.sha256(i.to_bytes(4, "big")).digest()
    return CID(0, DAG_PB, digest) if version == 0 else CID(1, RAW, digest)


def _fill(opts: ImportOptions, total: int) -> DirectoryBuilder:
    """A directory whose links estimate (name bytes + CID bytes) is exactly ``total``."""
    b = DirectoryBuilder(opts)
    c = len(_cid(0, opts.cid_version).bytes)
    i = 0
    left = total
    while left:
        if left - c <= 200:
            name_len = left - c
        elif left - c - 200 < c + 6:
            name_len = (left - 2 * c) // 2  # split the rest over two entries
        else:
            name_len = 200
        b.add(f"{i:06d}".ljust(name_len, "n"), _cid(i, opts.cid_version), 10)
        left -= c + name_len
        i += 1
    assert b.estimate == total
    return b


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize(("delta", "sharded"), [(-1, False), (0, False), (1, True)])
def test_links_estimate_shards_at_threshold_as_kubo(version: int, delta: int,
                                                    sharded: bool) -> None:
    opts = resolve_options(cid_version=version)
    b = _fill(opts, 262144 + delta)
    # kubo 0.43.1 (boxo >= 0.37): estimate > 262144 (kubo 0.22 sharded at >=)
    assert b.sharded is sharded
    res = b.finish()
    assert res.sharded is sharded
    kind = decode_unixfs(res.cid, _only_root(b)).kind
    assert kind == ("hamt" if sharded else "directory")


def _only_root(b: DirectoryBuilder) -> bytes:
    blocks: list[bytes] = []
    b.finish(lambda blk: blocks.append(bytes(blk.data)))
    return blocks[-1]


def test_block_estimate_is_the_block_size_and_shards_above_it() -> None:
    opts = UNIXFS_V1_2025.replace(hamt_threshold=2000)
    entries = []
    b = DirectoryBuilder(opts)
    while b.estimate <= 2000 - 300:
        i = len(entries)
        entries.append((f"entry-{i}", _cid(i, 1), 1_000_000 + i))
        b.add(*entries[-1])
    blocks: list[bytes] = []
    b.finish(lambda blk: blocks.append(bytes(blk.data)))
    assert not b.sharded
    assert len(blocks[-1]) == b.estimate  # the exact encoded length (linkSerializedSize)
    for length in range(1, 300):  # a last name that lands exactly on the threshold
        exact = DirectoryBuilder(opts)
        for e in entries:
            exact.add(*e)
        exact.add("z" * length, _cid(999, 1), 1_000_999)
        if exact.estimate == 2000:
            break
    assert exact.estimate == 2000 and not exact.sharded  # '>' in block mode
    exact.add("one-more", _cid(1000, 1), 5)
    assert exact.sharded and exact.finish().sharded


def test_threshold_zero_disables_sharding() -> None:
    b = _fill(DEFAULT.replace(hamt_threshold=0), 300_000)
    assert not b.sharded


def test_shard_node_bytes_bitfield_and_link_names() -> None:
    names = ["a", "b", "c", "hello.txt"]
    blocks: list[tuple[CID, bytes]] = []
    cid, tsize = build_hamt([(n, _cid(i, 0), 100 + i) for i, n in enumerate(names)], DEFAULT,
                            _hasher(), lambda blk: blocks.append((blk.cid, bytes(blk.data))))
    assert blocks[-1][0] == cid
    pb = decode_node(blocks[-1][1])
    fs = decode_data(pb.data or b"")
    assert fs.type == DataType.HAMT_SHARD and fs.hash_type == 0x22 and fs.fanout == 256
    assert fs.filesize is None and fs.blocksizes == ()
    buckets = [hamt_index(n.encode(), 0, 8) for n in names]
    # go-bitfield Bytes(): big-endian, bit i = bucket i, leading zero bytes dropped
    expect = sum(1 << b for b in set(buckets)).to_bytes(32, "big").lstrip(b"\x00")
    assert fs.data == expect
    if len(set(buckets)) == len(names):
        assert [link.name for link in pb.links] == [
            f"{b:02X}{n}" for b, n in sorted(zip(buckets, names, strict=True))]
    assert tsize == len(blocks[-1][1]) + sum(link.tsize or 0 for link in pb.links)


def _hasher():  # type: ignore[no-untyped-def]
    from carget.cid import hash_function

    return hash_function("sha2-256")


def test_big_hamt_has_sub_shards_and_every_name_is_found() -> None:
    opts = DEFAULT
    names = [f"file-{i:05d}.txt" for i in range(3000)]
    store: dict[CID, bytes] = {}
    entries = [(n, _cid(i, 0), 1000 + i) for i, n in enumerate(names)]
    want = {n: (c, t) for n, c, t in entries}
    order: list[CID] = []

    def keep(blk) -> None:  # type: ignore[no-untyped-def]
        store[blk.cid] = bytes(blk.data)
        order.append(blk.cid)

    root, tsize = build_hamt(entries, opts, _hasher(), keep)
    assert order[-1] == root
    seen = set()
    for cid in order:  # children before parents
        for link in decode_node(store[cid]).links:
            if link.cid in store:
                assert link.cid in seen
        seen.add(cid)
    top = decode_unixfs(root, store[root])
    assert top.kind == "hamt"
    subs = [link for name, link in top.hamt_links() if name is None]
    assert subs, "3000 entries must need sub-shards"
    for name in names:
        node, depth = top, 0
        while True:
            found = node.hamt_lookup(name, depth)
            assert found is not None, name
            what, link = found
            if what == "entry":
                assert (link.cid, link.tsize) == want[name]
                break
            node, depth = decode_unixfs(link.cid, store[link.cid]), depth + 1
    node, depth = top, 0
    while (found := node.hamt_lookup("absent.txt", depth)) is not None:
        assert found[0] == "shard"  # never an entry: the walk must end in None
        node, depth = decode_unixfs(found[1].cid, store[found[1].cid]), depth + 1
    total = sum(len(b) for b in store.values()) + sum(t for _, _, t in entries)
    assert tsize == total  # cumulative Tsize over every shard and entry


def test_hamt_order_is_hash_order() -> None:
    names = [f"n{i}" for i in range(50)]
    order = hamt_order(names)
    assert [name_hash(n.encode()) for n in order] == sorted(name_hash(n.encode()) for n in names)


@pytest.mark.parametrize("fanout", [0, 4, 12, 100, 2048])
def test_bad_fanout_is_refused(fanout: int) -> None:
    with pytest.raises(UnixFSError):
        check_fanout(fanout)


def test_fanout_16_uses_one_hex_digit() -> None:
    opts = DEFAULT.replace(hamt_fanout=16)
    blocks: list[bytes] = []
    build_hamt([(f"x{i}", _cid(i, 0), 1) for i in range(40)], opts, _hasher(),
               lambda blk: blocks.append(bytes(blk.data)))
    pb = decode_node(blocks[-1])
    names = {f"x{i}" for i in range(40)}
    for link in pb.links:
        label = link.name or ""
        assert label[0] in "0123456789ABCDEF"
        assert len(label) == 1 or label[1:] in names  # sub-shard, or 1 digit + entry name
    assert any(len(link.name or "") == 1 for link in pb.links)  # 40 names in 16 buckets
    assert decode_data(pb.data or b"").fanout == 16


def test_conformance_fixture_lookup_and_rebuild() -> None:
    _, blocks = decode_car(FIXTURE.read_bytes())
    store = {b.cid: bytes(b.data) for b in blocks}
    root = CID.parse(FIXTURE_ROOT)
    top = decode_unixfs(root, store[root])
    assert top.kind == "hamt" and len(top.links) == 252

    def path_of(name: str) -> list[str]:
        node, depth, trail = top, 0, []
        while True:
            found = node.hamt_lookup(name, depth)
            assert found is not None, name
            what, link = found
            if what == "entry":
                return [*trail, link.name or ""]
            trail.append(str(link.cid))
            node, depth = decode_unixfs(link.cid, store[link.cid]), depth + 1

    # where the fixture README says they are
    assert path_of("1.txt") == ["bafybeiawjmzmi5c6v5h75nepfpx7jj5ns5t54girned3kilvakmhctxlxy",
                                "C11.txt"]
    assert path_of("685.txt") == ["bafybeifajm5xyg46n4hjxg7clq2f7vcn7eg7bn3yevylcemr6vd7mp6gta",
                                  "E3685.txt"]

    # collect every entry, then rebuild the shard from (name, CID, Tsize) alone
    entries: list[tuple[str, CID, int]] = []
    stack = [top]
    while stack:
        node = stack.pop()
        for name, link in node.hamt_links():
            if name is None:
                stack.append(decode_unixfs(link.cid, store[link.cid]))
            else:
                entries.append((name, link.cid, link.tsize or 0))
    assert len(entries) == 1000
    made: dict[CID, bytes] = {}
    opts = resolve_options(cid_version=1)
    cid, _ = build_hamt(entries, opts, _hasher(),
                        lambda blk: made.__setitem__(blk.cid, bytes(blk.data)))
    assert cid == root
    shards = {c for c in store if decode_unixfs(c, store[c]).kind == "hamt"}
    assert set(made) == shards and len(shards) == 237
    for c in shards:
        assert made[c] == store[c]
