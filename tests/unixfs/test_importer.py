"""Importer properties: splitting, feeding and threading never change the CID."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carget.add import add_bytes, import_stream
from carget.cid import CID, Block
from carget.unixfs.chunker import FixedSizeChunker
from carget.unixfs.file import FileImporter
from carget.unixfs.node import decode_unixfs
from carget.unixfs.options import ImportOptions, resolve_options

SMALL = [
    resolve_options(chunker="size-64"),
    resolve_options(chunker="size-64", cid_version=1),
    resolve_options(chunker="size-64", trickle=True),
    resolve_options(chunker="size-64", raw_leaves=True, trickle=True),
]


def via_chunker(data: bytes, pieces: list[int], opts: ImportOptions) -> CID:
    chunker = FixedSizeChunker(opts.chunk_size)
    imp = FileImporter(opts)
    pos = 0
    for n in pieces:
        for chunk in chunker.feed(data[pos : pos + n]):
            imp.add_chunk(chunk)
        pos += n
    for chunk in chunker.feed(data[pos:]):
        imp.add_chunk(chunk)
    last = chunker.finish()
    if last is not None:
        imp.add_chunk(last)
    return imp.finish().cid


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=3000),
    st.lists(st.integers(0, 300), max_size=20),
    st.sampled_from(range(len(SMALL))),
)
def test_split_points_never_change_the_cid(data: bytes, pieces: list[int], which: int) -> None:
    opts = SMALL[which]
    assert via_chunker(data, pieces, opts) == add_bytes(data, opts).cid


class Dribble(io.RawIOBase):
    """A pipe-like reader that returns at most ``step`` bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._step, len(self._data))
        buf[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize("opts", SMALL)
@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_threads_and_short_reads_give_the_same_cid(
    opts: ImportOptions, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import carget.add

    monkeypatch.setattr(carget.add, "BATCH_BYTES", 256)  # many batches in flight
    data = os.urandom(64 * 200 + 17)
    expected = via_chunker(data, [], opts)
    got = import_stream(Dribble(data, 77), opts, jobs=jobs, digest="sha256")
    assert got.cid == expected
    assert got.size == len(data)


def test_emitted_blocks_verify_and_form_the_dag() -> None:
    opts = resolve_options(chunker="size-100", cid_version=1)
    data = os.urandom(100 * 400 + 5)
    blocks: dict[CID, bytes] = {}

    def keep(block: Block) -> None:
        blocks[block.cid] = bytes(block.data)

    root = import_stream(io.BytesIO(data), opts, jobs=2, emit=keep).cid
    for cid, body in blocks.items():
        cid.verify(body)

    def read(cid: CID) -> bytes:
        node = decode_unixfs(cid, blocks[cid])
        return node.data + b"".join(read(link.cid) for link in node.links)

    assert read(root) == data


def test_tsize_is_the_whole_dag() -> None:
    opts = resolve_options(chunker="size-10")
    sizes: list[int] = []
    res = add_bytes(b"x" * 95, opts, emit=lambda b: sizes.append(len(b.data)))
    assert res.tsize == sum(sizes)


@pytest.mark.parametrize("opts", SMALL)
def test_single_cpu_serial_path_gives_the_same_cid(
    opts: ImportOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    import carget.add

    monkeypatch.setattr(carget.add, "BATCH_BYTES", 256)
    monkeypatch.setattr(carget.add, "usable_cpus", lambda: 1)
    data = os.urandom(64 * 90 + 3)
    got = import_stream(Dribble(data, 100), opts, jobs=1, digest="sha512")
    assert got.cid == via_chunker(data, [], opts)
    assert got.digest == "sha512:" + __import__("hashlib").sha512(data).hexdigest()


@pytest.mark.parametrize("opts", SMALL)
@pytest.mark.parametrize("jobs", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 256 * 7, 256 * 7 + 100])
@pytest.mark.parametrize("mapped", [True, False])
def test_a_regular_file_mapped_or_pread_gives_the_same_cid(
    opts: ImportOptions, jobs: int, size: int, mapped: bool, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regular file is hashed through mmap windows (in this thread, or by workers each
    mapping their own batches), or where it cannot be mapped, read by workers with pread:
    the CID, size and emitted blocks are those of a sequential read, at every batch
    boundary."""
    import carget.add

    monkeypatch.setattr(carget.add, "BATCH_BYTES", 256)
    calls: list[int] = []
    if mapped:
        real_map = carget.add._map_encode_batch

        def spy(*args: Any) -> Any:
            calls.append(args[1])
            return real_map(*args)

        monkeypatch.setattr(carget.add, "_map_encode_batch", spy)
    else:
        def unmappable(*args: Any) -> Any:
            raise OSError(19, "No such device")  # what mmap says on a file system without it

        real_read = carget.add._read_encode_batch

        def spy_read(*args: Any) -> Any:
            calls.append(args[1])
            return real_read(*args)

        monkeypatch.setattr(carget.add, "_map_batch", unmappable)
        monkeypatch.setattr(carget.add, "_read_encode_batch", spy_read)
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    seq: list[Block] = []
    par: list[Block] = []
    expected = add_bytes(data, opts, emit=lambda b: seq.append(Block(b.cid, bytes(b.data))))
    got = carget.add.add_file(path, opts, jobs=jobs,
                              emit=lambda b: par.append(Block(b.cid, bytes(b.data))))
    assert (got.cid, got.size, got.tsize) == (expected.cid, expected.size, expected.tsize)
    assert par == seq
    if jobs > 1:
        assert calls and calls[0] == 0  # the mapped (or the workers' pread) path ran


@pytest.mark.parametrize("cpus", [1, 2])
def test_one_job_maps_on_one_cpu_and_reads_ahead_on_more(
        cpus: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import carget.add

    monkeypatch.setattr(carget.add, "BATCH_BYTES", 256)
    monkeypatch.setattr(carget.add, "usable_cpus", lambda: cpus)
    mapped: list[int] = []
    real_map = carget.add._map_encode_batch

    def spy(*args: Any) -> Any:
        mapped.append(args[1])
        return real_map(*args)

    monkeypatch.setattr(carget.add, "_map_encode_batch", spy)
    opts = resolve_options(chunker="size-64", cid_version=1)
    data = os.urandom(2000)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert carget.add.add_file(path, opts, jobs=1).cid == add_bytes(data, opts).cid
    assert bool(mapped) == (cpus == 1)


def test_emitted_blocks_kept_past_the_call_stay_valid(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that keeps mapped blocks (against the docstring's advice) keeps their
    mappings alive instead of crashing the import."""
    import carget.add

    monkeypatch.setattr(carget.add, "BATCH_BYTES", 256)
    opts = resolve_options(chunker="size-64", cid_version=1)
    data = os.urandom(3000)
    path = tmp_path / "f"
    path.write_bytes(data)
    for jobs in (1, 2):  # mapped by this thread (one CPU) or by the workers
        monkeypatch.setattr(carget.add, "usable_cpus", lambda n=jobs: n)
        kept: list[Block] = []
        res = carget.add.add_file(path, opts, jobs=jobs, emit=kept.append)
        assert res.cid == add_bytes(data, opts).cid
        assert b"".join(bytes(b.data) for b in kept if b.cid.codec == 0x55) == data


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_regular_file_is_read_from_its_position_and_left_at_the_end(
        tmp_path: Path, jobs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mapping starts at a page boundary; a file positioned elsewhere still gives the
    bytes from its position on."""
    import carget.add

    monkeypatch.setattr(carget.add, "BATCH_BYTES", 1024)
    opts = resolve_options(chunker="size-64", cid_version=1)
    data = os.urandom(9000)
    path = tmp_path / "f"
    path.write_bytes(b"skip" * 1100 + data)
    with io.FileIO(path, "r") as f:
        f.seek(4400)
        got = import_stream(f, opts, jobs=jobs)
        assert f.tell() == 4400 + len(data)
    assert got.cid == add_bytes(data, opts).cid


LEAF_OPTS = [
    resolve_options(),  # CIDv0, dag-pb leaves
    resolve_options(cid_version=1, raw_leaves=False),
    resolve_options(trickle=True),
    resolve_options(cid_version=1, raw_leaves=False, trickle=True),
    resolve_options(inline=True, inline_limit=64),
    resolve_options(hash="sha2-512", raw_leaves=False),
]


@pytest.mark.parametrize("opts", LEAF_OPTS)
# (16375/16376: where the two-byte frame of a tree's small files ends, size + 8 < 16384)
@pytest.mark.parametrize("size", [1, 2, 100, 119, 120, 127, 128, 129, 4000, 16375, 16376,
                                  16383, 16384, 262144])
def test_dag_pb_leaf_fast_path_is_the_general_encoding(opts: ImportOptions, size: int) -> None:
    """The written-out dag-pb leaf (sha2-256, no inlining) is byte for byte the block
    frame() + make_cid() build, and so is its link."""
    from carget.unixfs.file import LeafEncoder, make_cid

    enc = LeafEncoder(opts)
    chunk = os.urandom(size)
    link, block = enc.encode(chunk)
    head, tail = enc.frame(size)
    body = head + chunk + tail
    cid = make_cid(0x70, (body,), len(body), opts, enc.hasher)
    assert block is not None
    assert (block.cid, bytes(block.data)) == (cid, body)
    assert (link.cid, link.tsize, link.filesize) == (cid, len(body), size)
    assert link.cid.bytes == CID.from_bytes(link.cid.bytes).bytes
