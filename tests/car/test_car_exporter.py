"""UnixFS exporter over the gateway-conformance fixtures: paths, HAMT, ranges, sizes."""

from __future__ import annotations

import hashlib

import pytest
from carfixtures import load

from carget.cid import CID, RAW
from carget.errors import IncompleteDAG, NotFoundError, UnixFSError, UnsafePathError, UsageError
from carget.names import check_entry_name
from carget.unixfs.dagpb import PBLink, encode_node
from carget.unixfs.data import DataType, UnixFSData, encode_data
from carget.unixfs.exporter import Exporter

MULTIBLOCK_SHA = "998785f13287a9aabc2d7048e4c2905d502ff13ef40f2d135f163b5a762701c5"
HAMT = "trustless_gateway_car/single-layer-hamt-with-multi-block-files.car"


@pytest.mark.parametrize(("name", "shard", "link"), [
    ("685.txt", "bafybeifajm5xyg46n4hjxg7clq2f7vcn7eg7bn3yevylcemr6vd7mp6gta", "E3685.txt"),
    ("1.txt", "bafybeiawjmzmi5c6v5h75nepfpx7jj5ns5t54girned3kilvakmhctxlxy", "C11.txt"),
])
def test_hamt_fixture_entries_are_where_the_readme_says(name: str, shard: str, link: str) -> None:
    header, ex, _ = load(HAMT)
    root = header.roots[0]
    res = ex.resolve(root, name)
    assert res.visited[:2] == [root, CID.parse(shard)]
    assert res.link_name == link
    assert res.cid == CID.parse("bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa")
    assert hashlib.sha256(ex.read_all(res.cid)).hexdigest() == MULTIBLOCK_SHA


def test_hamt_listing_has_all_1000_entries_and_237_shards() -> None:
    header, ex, _ = load(HAMT)
    visited: list[CID] = []
    names = {e.name for e in ex.list_dir(header.roots[0], visited=visited)}
    assert names == {f"{i}.txt" for i in range(1, 1001)}
    assert len(visited) + 1 == 237
    with pytest.raises(NotFoundError):
        ex.resolve(header.roots[0], "1001.txt")


def test_byte_ranges_fetch_only_needed_leaves() -> None:
    header, ex, store = load("trustless_gateway_car/subdir-with-mixed-block-files.car")
    file_cid = ex.resolve(header.roots[0], "subdir/multiblock.txt").cid
    whole = ex.read_all(file_cid)
    assert len(whole) == 1026 and hashlib.sha256(whole).hexdigest() == MULTIBLOCK_SHA
    for a, b in [(0, 1), (255, 257), (512, 1024), (1000, 1026), (0, 1026), (700, 5000)]:
        assert b"".join(bytes(c) for c in ex.read_file(file_cid, a, b)) == whole[a:b]
    asked: list[CID] = []

    class Counting:
        def get(self, cid: CID) -> bytes | None:
            asked.append(cid)
            return store.get(cid)

    list(Exporter(Counting()).read_file(file_cid, 512, 1024))
    assert len(asked) == 3  # the file root and leaves[2:4], as entity-bytes=512:1023


def test_missing_block_raises_only_when_needed() -> None:
    header, ex, _ = load("trustless_gateway_car/file-3k-and-3-blocks-missing-block.car")
    root = header.roots[0]
    assert len(b"".join(bytes(c) for c in ex.read_file(root, 0, 1000))) == 1000
    assert len(b"".join(bytes(c) for c in ex.read_file(root, 2200))) == 3072 - 2200
    with pytest.raises(IncompleteDAG):
        ex.read_all(root)


def test_symlink_and_directory_listing() -> None:
    header, ex, _ = load("path_gateway_unixfs/symlink.car")
    root = header.roots[0]
    assert {e.name for e in ex.list_dir(root)} == {"foo", "bar"}
    assert ex.readlink(ex.resolve(root, "bar").cid) == "foo"
    assert ex.read_all(ex.resolve(root, "foo").cid) == b"content\n"
    with pytest.raises(UsageError):
        ex.read_all(root)
    with pytest.raises(NotFoundError):
        ex.resolve(root, "foo/deeper")


def _file_node(children: list[tuple[CID, int]], filesize: int | None = None) -> bytes:
    data = UnixFSData(DataType.FILE, filesize=filesize if filesize is not None
                      else sum(s for _, s in children),
                      blocksizes=tuple(s for _, s in children))
    return encode_node([PBLink(c, "", s) for c, s in children], encode_data(data))


def test_blocksizes_that_lie_raise_unixfs_error() -> None:
    leaf = b"0123456789"
    leaf_cid = CID.of(leaf, RAW)
    lying = _file_node([(leaf_cid, 12), (leaf_cid, 10)])  # first leaf really holds 10
    root = CID.of(lying, 0x70)
    store = {leaf_cid: leaf, root: lying}
    ex = Exporter(store)
    with pytest.raises(UnixFSError):
        ex.read_all(root)


@pytest.mark.parametrize("name", ["", ".", "..", "../foo", "a/b", "/etc", "a\x00b", "a\\b"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafePathError):
        check_entry_name(name)
    assert check_entry_name("ok name.txt") == "ok name.txt"
