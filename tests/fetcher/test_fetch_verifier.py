"""The sans-IO verifier: DAG order, lies, strays, limits, paths, identity and dups."""

from __future__ import annotations

import hashlib

import pytest
from dagstore import DagStore, car_bytes
from fetchhelp import FIXTURES, content
from hypothesis import given, settings
from hypothesis import strategies as st

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID, RAW, Block, encode_varint
from carget.errors import (
    CARError,
    HashMismatch,
    IncompleteDAG,
    LimitExceeded,
    NotFoundError,
    UnsafePathError,
)
from carget.fetcher.verifier import (
    DagVerifier,
    EntityStart,
    FileData,
    PathNotFound,
    Scope,
    SymlinkEntry,
    UnexpectedBlocks,
    VerifierEvent,
)


def assemble(events: list[VerifierEvent], size: int | None = None) -> bytes:
    out = bytearray(size or 0)
    for e in events:
        if isinstance(e, FileData) and e.path == "":
            end = e.offset + len(e.data)
            if end > len(out):
                out.extend(b"\0" * (end - len(out)))
            out[e.offset:end] = bytes(e.data)
    return bytes(out)


def run(v: DagVerifier, body: bytes, step: int | None = None) -> list[VerifierEvent]:
    events: list[VerifierEvent] = []
    step = step or len(body) or 1
    for i in range(0, len(body), step):
        for e in v.feed(body[i:i + step]):
            if isinstance(e, FileData):  # data views are only valid until the next feed
                e = FileData(e.path, e.offset, bytes(e.data), e.cid, e.frame)
            events.append(e)
    events += v.feed_eof()
    return events


@pytest.fixture
def file_dag(store: DagStore) -> tuple[DagStore, CID, bytes]:
    data = content(300_000)
    root = store.add_bytes(data, cid_version=1, chunker="size-16384")
    return store, root, data


def test_honest_stream_whole_and_byte_by_byte(file_dag: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = file_dag
    body = car_bytes(store.select(root, [], "entity"))
    for step in (None, 1, 7, 4096):
        v = DagVerifier(root)
        events = run(v, body, step)
        assert assemble(events) == data
        assert v.done and v.terminal == root
        starts = [e for e in events if isinstance(e, EntityStart)]
        assert starts[0].size == len(data)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=330_000), max_size=8))
def test_random_split_points(cuts: list[int]) -> None:
    store = DagStore()
    data = content(50_000, seed=3)
    root = store.add_bytes(data, chunker="size-4096")
    body = car_bytes(store.select(root, [], "entity"))
    v = DagVerifier(root)
    events: list[VerifierEvent] = []
    prev = 0
    for c in sorted({min(c, len(body)) for c in cuts} | {len(body)}):
        for e in v.feed(body[prev:c]):
            if isinstance(e, FileData):
                e = FileData(e.path, e.offset, bytes(e.data), e.cid, e.frame)
            events.append(e)
        prev = c
    events += v.feed_eof()
    assert assemble(events) == data


def test_flipped_bit_is_hash_mismatch(file_dag: tuple[DagStore, CID, bytes]) -> None:
    store, root, _ = file_dag
    body = bytearray(car_bytes(store.select(root, [], "entity")))
    body[-1] ^= 1
    with pytest.raises(HashMismatch):
        run(DagVerifier(root), bytes(body))


def test_substituted_valid_block_is_a_lie(file_dag: tuple[DagStore, CID, bytes]) -> None:
    store, root, _ = file_dag
    blocks = store.select(root, [], "entity")
    other = b"a valid block that nobody asked for"
    blocks[3] = Block(CID.of(other, RAW), other)
    with pytest.raises(UnexpectedBlocks):
        run(DagVerifier(root), car_bytes(blocks))


def test_cut_on_boundary_and_mid_block(file_dag: tuple[DagStore, CID, bytes]) -> None:
    store, root, _ = file_dag
    blocks = store.select(root, [], "entity")
    with pytest.raises(IncompleteDAG):
        run(DagVerifier(root), car_bytes(blocks[:5]))
    body = car_bytes(blocks)
    with pytest.raises(CARError):
        run(DagVerifier(root), body[: len(body) - 100])


def test_huge_length_prefix_is_refused_without_allocating() -> None:
    root = CID.of(b"x", RAW)
    body = encode_header([root]) + encode_varint(1 << 60) + b"\x01\x55"
    with pytest.raises(LimitExceeded):
        run(DagVerifier(root), body)


def test_strays_and_duplicates_are_dropped(file_dag: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = file_dag
    blocks = store.select(root, [], "entity")
    junk = b"stray"
    mixed = [blocks[0], Block(CID.of(junk, RAW), junk), blocks[1], blocks[1], *blocks[2:]]
    v = DagVerifier(root)
    assert assemble(run(v, car_bytes(mixed))) == data


def test_endless_junk_hits_the_stray_limit() -> None:
    store = DagStore()
    root = store.add_bytes(content(40_000), cid_version=1, chunker="size-8192")
    blocks = store.select(root, [], "entity")
    v = DagVerifier(root)
    v.feed(encode_header([root]) + section_prefix(blocks[0].cid, len(blocks[0].data))
           + blocks[0].data)
    with pytest.raises(LimitExceeded):
        for i in range(20_000):
            junk = i.to_bytes(4, "big") * 256
            v.feed(section_prefix(CID.of(junk, RAW), len(junk)) + junk)


def test_ignored_entity_bytes_is_tolerated(file_dag: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = file_dag
    everything = store.select(root, [], "entity")  # what a gateway ignoring the range sends
    v = DagVerifier(root, byte_range=(16384 * 4, 16384 * 8))
    events = run(v, car_bytes(everything))
    placed = [e for e in events if isinstance(e, FileData)]
    assert [e.offset for e in placed] == [16384 * i for i in range(4, 8)]
    assert all(bytes(e.data) == data[e.offset:e.offset + len(e.data)] for e in placed)


def test_narrow_mid_answer_stops_at_the_cut(file_dag: tuple[DagStore, CID, bytes]) -> None:
    # another stream took over [cut, end): the answer is done once [0, cut) is placed,
    # though the gateway goes on sending the rest, and nothing past the cut comes out
    store, root, data = file_dag
    body = car_bytes(store.select(root, [], "entity"))
    cut = 16384 * 9
    v = DagVerifier(root, byte_range=(0, len(data)))
    events: list[VerifierEvent] = []
    third = len(body) // 3
    events += v.feed(body[:third])
    placed_before = sum(len(e.data) for e in events if isinstance(e, FileData))
    assert placed_before < cut and not v.done
    v.narrow(cut)
    for i in range(third, len(body), 4096):
        events += v.feed(body[i:i + 4096])
        if v.done:
            break
    assert v.done and i < len(body) - 4096  # stopped well before the answer's end
    placed = [e for e in events if isinstance(e, FileData)]
    assert max(e.offset + len(e.data) for e in placed) == cut
    assert sorted(e.offset for e in placed) == [16384 * k for k in range(9)]


def test_narrow_inside_a_leaf_keeps_that_leaf_and_never_widens(
        file_dag: tuple[DagStore, CID, bytes]) -> None:
    store, root, data = file_dag
    body = car_bytes(store.select(root, [], "entity"))
    v = DagVerifier(root, byte_range=(0, len(data)))
    v.narrow(16384 * 5 + 100)  # mid-leaf: the leaf it falls in is still wanted
    v.narrow(len(data))  # a later, wider request is ignored
    events = run(v, body)
    ends = [e.offset + len(e.data) for e in events if isinstance(e, FileData)]
    assert max(ends) == 16384 * 6 and v.done


def test_leaves_first_order_unk_within_the_buffer() -> None:
    store = DagStore()
    root = store.add_car(FIXTURES / "tooling" / "dag.car")  # leaves before parents
    body = (FIXTURES / "tooling" / "dag.car").read_bytes()
    v = DagVerifier(root, scope=Scope.ALL, ordered=False)
    events = run(v, body)
    names = sorted(e.path for e in events if isinstance(e, EntityStart))
    assert names == ["", "a-file.txt", "b-file.txt", "subdir", "subdir/leaf.txt"]


def test_order_unk_buffer_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import carget.fetcher.verifier as ver

    monkeypatch.setattr(ver, "UNORDERED_BUFFER_LIMIT", 10_000)
    body = (FIXTURES / "tooling" / "dag.car").read_bytes()
    root = DagStore().add_car(FIXTURES / "tooling" / "dag.car")
    with pytest.raises(LimitExceeded):
        run(DagVerifier(root, scope=Scope.ALL, ordered=False), body)


def test_dups_n_file_of_zeros_is_replayed(store: DagStore) -> None:
    data = bytes(200_000)
    root = store.add_bytes(data, cid_version=1, chunker="size-8192")
    blocks = store.select(root, [], "entity", dups=False)
    assert len(blocks) < 5  # the gateway sends each distinct block once
    assert assemble(run(DagVerifier(root), car_bytes(blocks))) == data


def test_identity_leaf_is_resolved_locally(store: DagStore) -> None:
    data = b"tiny"
    root = store.add_bytes(data, cid_version=1, inline=True)
    assert root.is_identity
    assert assemble(run(DagVerifier(root), encode_header([root]))) == data


def test_path_through_directory_hamt_and_dag_cbor() -> None:
    store = DagStore()
    tc = FIXTURES / "trustless_gateway_car"
    mixed = store.add_car(tc / "subdir-with-mixed-block-files.car")
    body = car_bytes(store.select(mixed, ["subdir", "multiblock.txt"], "entity"))
    data = assemble(run(DagVerifier(mixed, ["subdir", "multiblock.txt"]), body))
    assert hashlib.sha256(data).hexdigest().startswith("998785f1")

    hamt = store.add_car(tc / "single-layer-hamt-with-multi-block-files.car")
    body = car_bytes(store.select(hamt, ["685.txt"], "entity"))
    assert hashlib.sha256(assemble(run(DagVerifier(hamt, ["685.txt"]), body))).hexdigest() \
        .startswith("998785f1")

    store.add_car(tc / "dir-with-dag-cbor-with-links.car")
    doc = CID.parse("bafyreidy4q6mmetut5jzc54ambsfnatbyoujmwbfzyyolqw24majazwgha")
    body = car_bytes(store.select(doc, ["files", "single"], "entity"))
    assert assemble(run(DagVerifier(doc, ["files", "single"]), body)) == b"hello world\n"


def test_missing_name_is_path_not_found_and_short_answer_is_not_found() -> None:
    store = DagStore()
    root = store.add_car(FIXTURES / "trustless_gateway_car" /
                         "subdir-with-two-single-block-files.car")
    body = car_bytes(store.select(root, ["subdir"], "block"))
    with pytest.raises(PathNotFound):
        run(DagVerifier(root, ["subdir", "nope.txt"]), body)
    with pytest.raises(NotFoundError):  # a 200 whose CAR lacks the terminal block
        run(DagVerifier(root, ["subdir", "ascii.txt"]), body)


def test_unsafe_entry_names_and_symlinks() -> None:
    store = DagStore()
    root = store.add_car(FIXTURES / "path_gateway_tar" / "outside-root.car")
    body = car_bytes(store.select(root, [], "all"))
    with pytest.raises(UnsafePathError):
        run(DagVerifier(root, scope=Scope.ALL), body)
    sym = store.add_car(FIXTURES / "path_gateway_unixfs" / "symlink.car")
    events = run(DagVerifier(sym, scope=Scope.ALL), car_bytes(store.select(sym, [], "all")))
    assert SymlinkEntry("bar", "foo") in events


def test_missing_middle_leaf_fixture_is_incomplete() -> None:
    path = FIXTURES / "trustless_gateway_car" / "file-3k-and-3-blocks-missing-block.car"
    root = DagStore().add_car(path)
    with pytest.raises(IncompleteDAG):
        run(DagVerifier(root), path.read_bytes())
    # but the range that avoids the hole verifies
    events = run(DagVerifier(root, byte_range=(0, 1000)), path.read_bytes())
    assert [e.offset for e in events if isinstance(e, FileData)] == [0]


def test_dag_pb_leaf_frames_rebuild_the_block(store: DagStore) -> None:
    data = content(5000)
    root = store.add_bytes(data, chunker="size-1024")  # CIDv0, dag-pb leaves
    events = run(DagVerifier(root), car_bytes(store.select(root, [], "entity")))
    leaves = [e for e in events if isinstance(e, FileData)]
    assert leaves and all(e.frame is not None for e in leaves)
    for e in leaves:
        assert e.frame is not None
        e.cid.verify(e.frame[0] + bytes(e.data) + e.frame[1])
