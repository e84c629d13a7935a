"""The importer's leaf hook: for every leaf with bytes, which file, where, and the block's
framing around them, so that ``head + file[offset:offset+length] + tail`` is the leaf
block (what ``carget serve`` serves from files without keeping leaves)."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from carget.cid import CID, RAW, Block
from carget.tree import add_paths
from carget.unixfs.options import resolve_options


@pytest.mark.parametrize("flags", [
    {},  # kubo's default: CIDv0, dag-pb leaves
    {"cid_version": 1},  # raw leaves
    {"trickle": True, "chunker": "size-1000"},  # Raw-typed dag-pb leaves
    {"cid_version": 1, "inline": True, "inline_limit": 40},  # tiny files inlined
])
def test_every_leaf_is_told_with_its_file_span(tmp_path: Path, flags: dict[str, object]) -> None:
    rng = random.Random(3)
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    sizes = {"big.bin": 700_000, "one.bin": 5000, "sub/tiny.txt": 12, "sub/empty": 0,
             "sub/mid.bin": 262_145}
    for name, n in sizes.items():
        (tree / name).write_bytes(rng.randbytes(n))
    opts = resolve_options(**flags)  # type: ignore[arg-type]
    blocks: dict[CID, bytes] = {}
    told: list[tuple[str, CID, int, int, bytes, bytes]] = []
    lock = threading.Lock()

    def emit(b: Block) -> None:
        with lock:
            blocks[b.cid] = bytes(b.data)

    def on_leaf(path: str, cid: CID, offset: int, length: int, head: bytes,
                tail: bytes) -> None:
        with lock:
            told.append((path, cid, offset, length, head, tail))

    add_paths([str(tree)], opts, jobs=2, emit=emit, on_leaf=on_leaf)
    assert told
    covered: dict[str, int] = {}
    for path, cid, offset, length, head, tail in told:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(length)
        block = head + chunk + tail
        cid.verify(block)  # the span and framing rebuild the leaf exactly
        assert blocks[cid] == block  # and it is a block of the DAG
        if cid.codec == RAW:
            assert head == tail == b""
        covered[path] = covered.get(path, 0) + length
    for name, n in sizes.items():
        got = covered.get(os.path.join(str(tree), name), 0)
        if flags.get("inline"):  # inlined leaves (in their CIDs) are not told
            assert 0 <= n - got <= 40, name
        else:
            assert got == n, name
