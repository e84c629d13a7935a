"""``fetch_blocks``: verified blocks handed to a callback, against real loopback gateways
(``carget serve`` and the fault-injecting gateway)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway
from fetchhelp import content

from carget.cid import CID, RAW, Block
from carget.errors import NotFoundError, UsageError, VerificationError
from carget.fetcher import BlocksResult, FetchOptions, fetch_blocks
from carget.server.testing import running_gateway
from carget.tree import add_paths
from carget.unixfs.node import block_links, decode_unixfs
from carget.unixfs.options import resolve_options

CHUNK = "size-16384"


class Sink:
    """A thread-safe block sink that checks every block against its CID."""

    def __init__(self) -> None:
        self.blocks: dict[CID, bytes] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, cid: CID, data: bytes | memoryview) -> None:
        block = bytes(data)
        cid.verify(block)  # no unverified block ever reaches the sink
        with self._lock:
            self.blocks[cid] = block
            self.calls += 1


def rebuild(blocks: dict[CID, bytes], cid: CID) -> bytes:
    """A file's bytes from its blocks (a loop over the DAG in file order)."""
    out = bytearray()
    stack = [cid]
    while stack:
        c = stack.pop()
        data = blocks[c]
        if c.codec == RAW:
            out += data
            continue
        node = decode_unixfs(c, data)
        out += node.data
        stack.extend(reversed([link.cid for link in node.links]))
    return bytes(out)


def leaves_for(store: DagStore, root: CID, lo: int, hi: int) -> set[CID]:
    """The leaves of a one-level file DAG that hold any byte of [lo, hi)."""
    node = decode_unixfs(root, store.get(root))
    assert all(store.get(link.cid) and link.cid.codec == RAW for link in node.links)
    return {link.cid for link, a, b in node.file_children() if a < hi and lo < b}


def opts(*gateways: str, events: list[dict[str, Any]] | None = None, **kw: Any) -> FetchOptions:
    o = FetchOptions(gateways=list(gateways), idle_timeout=kw.pop("idle_timeout", 2.0), **kw)
    if events is not None:
        o.progress = events.append
    return o


@pytest.fixture
def big(store: DagStore) -> tuple[DagStore, CID, bytes]:
    data = content(2 << 20, seed=11)
    return store, store.add_bytes(data, cid_version=1, chunker=CHUNK), data


async def test_every_block_of_a_file_from_carget_serve_rebuilds_it(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(content(5 << 20, seed=3))
    root = add_paths([str(src)], resolve_options(cid_version=1), jobs=1)[0]
    sink = Sink()
    with running_gateway([str(src)], cid_version=1) as url:
        with trio.fail_after(60):
            res = await fetch_blocks(root, (), sink, opts(url))
    assert res == BlocksResult(root, "file", 5 << 20)
    assert rebuild(sink.blocks, root) == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "src.bin"]  # no file written


async def test_a_byte_range_fetches_only_the_blocks_it_needs(
        big: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = big
    lo, hi = 100_000, 150_000
    sink = Sink()
    async with fault_gateway(store) as gw:
        with trio.fail_after(30):
            res = await fetch_blocks(root, (), sink, opts(gw.url), byte_range=(lo, hi))
    assert res == BlocksResult(root, "file", len(data))
    want = leaves_for(store, root, lo, hi)
    assert len(want) == 4  # 16 KiB leaves from 98304 to 163840
    assert set(sink.blocks) == want | {root}
    got = b"".join(sink.blocks[c] for c in sorted(want, key=lambda c: data.find(sink.blocks[c])))
    assert data[lo:hi] in got
    sent = sum(e.sent for e in gw.log)
    assert sent < 5 * 16384 + 4096  # the range's leaves and the root, not the file
    entity = [e for e in gw.log if e.query.get("dag-scope") == "entity"]
    assert [e.query["entity-bytes"] for e in entity] == [f"{lo}:{hi - 1}"]


async def test_a_range_past_the_end_is_clipped_and_an_empty_range_fetches_the_root_only(
        big: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = big
    async with fault_gateway(store) as gw:
        with trio.fail_after(30):
            sink = Sink()
            await fetch_blocks(root, (), sink, opts(gw.url), byte_range=(len(data) - 10, 1 << 40))
            assert set(sink.blocks) == leaves_for(store, root, len(data) - 10, len(data)) | {root}
            empty = Sink()
            await fetch_blocks(root, (), empty, opts(gw.url), byte_range=(5, 5))
            assert set(empty.blocks) == {root}
            with pytest.raises(UsageError):
                await fetch_blocks(root, (), Sink(), opts(gw.url), byte_range=(6, 5))


async def test_a_lying_gateway_is_dropped_and_another_gives_the_blocks(
        big: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = big
    events: list[dict[str, Any]] = []
    sink = Sink()
    async with fault_gateway(store, Fault("flip", at=3, only_scope="entity")) as liar, \
            fault_gateway(store) as honest:
        with trio.fail_after(30):
            await fetch_blocks(root, (), sink, opts(liar.url, honest.url, events=events,
                                                   unit_bytes=65536))
    assert rebuild(sink.blocks, root) == data
    assert [e["gateway"] for e in events if e["event"] == "gateway-dropped"] == [liar.url]


async def test_only_liars_raise_verification_error(big: tuple[DagStore, CID, bytes]) -> None:
    store, root, _ = big
    sink = Sink()
    async with fault_gateway(store, Fault("flip", at=2, only_scope="entity")) as liar:
        with trio.fail_after(30), pytest.raises(VerificationError):
            await fetch_blocks(root, (), sink, opts(liar.url))


async def test_two_gateways_split_the_work(big: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = big
    sink = Sink()
    async with fault_gateway(store) as a, fault_gateway(store) as b:
        with trio.fail_after(30):
            await fetch_blocks(root, (), sink, opts(a.url, b.url, unit_bytes=65536,
                                                   streams_per_gateway=1))
    assert rebuild(sink.blocks, root) == data
    for gw in (a, b):
        ranges = [e.query["entity-bytes"] for e in gw.log if e.query.get("dag-scope") == "entity"]
        assert ranges, f"{gw.url} was given no part of the file"


async def test_a_static_gateway_sends_the_file_once_in_the_race_answer(
        big: tuple[DagStore, CID, bytes]) -> None:
    # a static server in front of ready-made CARs ignores dag-scope: the race's answer
    # carries the whole file, and it is kept rather than asked for again
    store, root, data = big
    sink = Sink()
    events: list[dict[str, Any]] = []
    async with fault_gateway(store, Fault("static")) as gw:
        with trio.fail_after(30):
            await fetch_blocks(root, (), sink, opts(gw.url, events=events))
    assert rebuild(sink.blocks, root) == data
    assert len(gw.log) == 1 and [e["event"] for e in events].count("whole-answer") == 1


async def test_retry_after_is_waited_out(big: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = big
    sink = Sink()
    async with fault_gateway(store, Fault("status", status=429, retry_after="1", times=1,
                                          only_scope="entity")) as gw:
        with trio.fail_after(30):
            began = trio.current_time()
            await fetch_blocks(root, (), sink, opts(gw.url))
            assert trio.current_time() - began >= 1.0
    assert rebuild(sink.blocks, root) == data
    assert [e.status for e in gw.log if e.query.get("dag-scope") == "entity"][:2] == [429, 200]


def _tree(tmp_path: Path) -> tuple[Path, CID]:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a" * 10)
    (src / "sub" / "big.bin").write_bytes(content(300_000, seed=4))
    (src / "sub" / "link").symlink_to("../a.txt")
    return src, add_paths([str(src)], resolve_options(cid_version=1), jobs=1)[0]


async def test_a_directory_brings_every_block_of_its_dag(tmp_path: Path) -> None:
    src, root = _tree(tmp_path)
    sink = Sink()
    with running_gateway([str(src)], cid_version=1) as url:
        with trio.fail_after(60):
            res = await fetch_blocks(root, (), sink, opts(url))
            assert res == BlocksResult(root, "directory", None)
            # every link of every block it gave leads to a block it gave: the whole DAG
            stack, seen = [root], set()
            while stack:
                c = stack.pop()
                if c in seen or c.is_identity:
                    continue
                seen.add(c)
                stack.extend(block_links(c, sink.blocks[c]))
            assert seen == set(sink.blocks)
            node = decode_unixfs(root, sink.blocks[root])
            sub = next(link.cid for link in node.links if link.name == "sub")
            big = next(link.cid for link in decode_unixfs(sub, sink.blocks[sub]).links
                       if link.name == "big.bin")
            assert rebuild(sink.blocks, big) == (src / "sub" / "big.bin").read_bytes()

            # a path to a file inside it, and to a symlink
            one = Sink()
            res = await fetch_blocks(root, ("sub", "big.bin"), one, opts(url))
            assert res == BlocksResult(big, "file", 300_000)
            assert {root, sub} <= set(one.blocks)  # the path's blocks come too
            assert rebuild(one.blocks, big) == (src / "sub" / "big.bin").read_bytes()
            res = await fetch_blocks(root, ("sub", "link"), Sink(), opts(url))
            assert res.kind == "symlink" and res.size is None


async def test_a_missing_path_is_not_found(tmp_path: Path) -> None:
    src, root = _tree(tmp_path)
    with running_gateway([str(src)], cid_version=1) as url:
        with trio.fail_after(60), pytest.raises(NotFoundError):
            await fetch_blocks(root, ("sub", "nope"), Sink(), opts(url))


async def test_a_cut_directory_answer_is_continued_with_the_missing_subtrees(
        store: DagStore, tmp_path: Path) -> None:
    src, _ = _tree(tmp_path)

    def emit(b: Block) -> None:
        store.blocks[b.cid] = bytes(b.data)

    root = add_paths([str(src)], resolve_options(cid_version=1, chunker=CHUNK), jobs=1,
                     emit=emit)[0]
    sink = Sink()
    cut = Fault("cut_mid", at=8, times=1, only_scope="all")  # inside sub/big.bin
    async with fault_gateway(store, cut) as gw:
        with trio.fail_after(30):
            await fetch_blocks(root, (), sink, opts(gw.url))
    assert set(sink.blocks) == {c for c in store.blocks if not c.is_identity}
    alls = [e.path for e in gw.log if e.query.get("dag-scope") == "all"]
    assert alls[0] == f"/ipfs/{root}" and f"/ipfs/{root}" not in alls[1:]


async def test_an_exception_from_the_sink_aborts_the_fetch(
        big: tuple[DagStore, CID, bytes]) -> None:
    store, root, _ = big

    class Full(Exception):
        pass

    def sink(cid: CID, data: bytes | memoryview) -> None:
        if cid.codec == RAW:
            raise Full("the cache is full")

    async with fault_gateway(store) as a, fault_gateway(store) as b:
        with trio.fail_after(30), pytest.raises(Full):
            await fetch_blocks(root, (), sink, opts(a.url, b.url))
        # the sink's failure is not taken for a gateway's: nothing was asked again
        assert len([e for e in a.log + b.log if e.query.get("dag-scope") == "entity"]) <= 4


async def test_scope_block_brings_the_path_and_its_block_only(
        big: tuple[DagStore, CID, bytes]) -> None:
    store, root, _ = big
    async with fault_gateway(store) as gw:
        sink = Sink()
        res = await fetch_blocks(root, (), sink, opts(gw.url), scope="block")
    assert res.kind == "file" and res.size == 2 << 20
    assert set(sink.blocks) == {root}
    assert [e.query.get("dag-scope") for e in gw.log] == ["block"]


async def test_an_unknown_scope_is_refused(big: tuple[DagStore, CID, bytes]) -> None:
    _, root, _ = big
    with pytest.raises(UsageError, match="dag-scope"):
        await fetch_blocks(root, (), Sink(), opts("http://127.0.0.1:9"), scope="everything")


async def test_a_static_gateway_sends_a_sharded_directory_once(store: DagStore,
                                                               tmp_path: Path) -> None:
    # the race's answer from a static server already carries the HAMT's shards (with its
    # entries between them): it goes on into them rather than asking for the entity again
    src = tmp_path / "top"
    (src / "many").mkdir(parents=True)
    for i in range(60):
        (src / "many" / f"entry-{i:03}").write_bytes(content(3000 + i, seed=i))

    def emit(b: Block) -> None:
        store.blocks[b.cid] = bytes(b.data)

    root = add_paths([str(src)], resolve_options(cid_version=1, max_directory_links=8,
                                                 max_hamt_fanout=8), jobs=1, emit=emit)[0]
    many = decode_unixfs(root, store.blocks[root]).links[0].cid
    shards = {many}
    stack = [many]
    while stack:  # every shard of the HAMT: the entity fetch_blocks(scope="entity") gives
        node = decode_unixfs(c := stack.pop(), store.blocks[c])
        assert node.kind == "hamt"
        subs = [link.cid for name, link in node.hamt_links() if name is None]
        shards.update(subs)
        stack += subs
    assert len(shards) > 1  # sub-shards, so the entity is more than the race's block
    sink = Sink()
    async with fault_gateway(store, Fault("static")) as gw:
        with trio.fail_after(30):
            res = await fetch_blocks(root, ("many",), sink, opts(gw.url), scope="entity")
    assert res == BlocksResult(many, "directory", None)
    assert set(sink.blocks) == shards | {root}  # and the path's block
    assert len(gw.log) == 1


async def test_a_static_gateway_sends_a_whole_tree_once(store: DagStore,
                                                         tmp_path: Path) -> None:
    # dag-scope=all (a bridge's client asked for a tree): the race's answer from a static
    # server already carries the whole tree, and it goes on into it
    src = tmp_path / "top"
    (src / "sub").mkdir(parents=True)
    for i in range(6):
        (src / "sub" / f"f{i}").write_bytes(content(70_000 + i, seed=i))
    (src / "z").write_bytes(content(300_000, seed=9))

    def emit(b: Block) -> None:
        store.blocks[b.cid] = bytes(b.data)

    root = add_paths([str(src)], resolve_options(cid_version=1), jobs=1, emit=emit)[0]
    sink = Sink()
    async with fault_gateway(store, Fault("static")) as gw:
        with trio.fail_after(30):
            res = await fetch_blocks(root, (), sink, opts(gw.url), scope="all")
    assert res == BlocksResult(root, "directory", None)
    assert set(sink.blocks) == set(store.blocks)  # every block of the tree
    assert len(gw.log) == 1, [(e.query, e.sent) for e in gw.log]


async def test_a_static_gateway_sends_a_sharded_tree_once(store: DagStore,
                                                          tmp_path: Path) -> None:
    # dag-scope=all for a tree holding a HAMT directory, from a static server: the race's
    # answer carries it whole, and it is not asked for again (a sharded directory's
    # listing is known to be complete from the answer, not from what was placed)
    src = tmp_path / "top"
    (src / "many").mkdir(parents=True)
    for i in range(60):
        (src / "many" / f"entry-{i:03}").write_bytes(content(2000 + i, seed=i))

    def emit(b: Block) -> None:
        store.blocks[b.cid] = bytes(b.data)

    root = add_paths([str(src)], resolve_options(cid_version=1, max_directory_links=8,
                                                 max_hamt_fanout=8), jobs=1, emit=emit)[0]
    many = decode_unixfs(root, store.blocks[root]).links[0].cid
    assert decode_unixfs(many, store.blocks[many]).kind == "hamt"
    sink = Sink()
    async with fault_gateway(store, Fault("static")) as gw:
        with trio.fail_after(30):
            res = await fetch_blocks(root, (), sink, opts(gw.url), scope="all")
    assert res == BlocksResult(root, "directory", None)
    assert set(sink.blocks) == set(store.blocks)
    assert len(gw.log) == 1, [(e.query, e.sent) for e in gw.log]
