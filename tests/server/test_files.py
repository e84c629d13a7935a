"""Serving imported files and directories: same CIDs as ``carget add``, leaves read back
from the original files (not copied), and a file changed on disk is never served wrongly."""

from __future__ import annotations

import os
import random
from pathlib import Path

import httpx
import pytest
from servehelp import car_cids

from carget.car.decoder import decode_car
from carget.cid import CID, RAW
from carget.server.store import BlockStore
from carget.server.testing import running_gateway
from carget.tree import add_paths
from carget.unixfs.node import decode_unixfs
from carget.unixfs.options import resolve_options

SETTINGS = [
    {"cid_version": 1, "chunker": "size-65536"},  # raw leaves
    {"chunker": "size-65536"},  # CIDv0, dag-pb leaves
    {"cid_version": 1, "raw_leaves": False, "trickle": True, "chunker": "size-32768"},
    {"cid_version": 1, "hash": "sha2-512", "chunker": "size-100000"},
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    rng = random.Random(7)
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "big.bin").write_bytes(rng.randbytes(1_300_000))
    (root / "sub" / "small.txt").write_bytes(b"small file\n")
    (root / "sub" / "empty").write_bytes(b"")
    return root


def _file_bytes(body: bytes, skip: int) -> bytes:
    """Reassemble a file from a CAR response after ``skip`` path blocks (a file's leaves in
    DFS order are in file order)."""
    _, blocks = decode_car(body, verify=True)
    out = bytearray()
    for b in blocks[skip:]:
        out += b.data if b.cid.codec == RAW else decode_unixfs(b.cid, bytes(b.data)).data
    return bytes(out)


@pytest.mark.parametrize("opts", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_served_dag_matches_carget_add_and_the_file(tree: Path, opts: dict[str, object]) -> None:
    expected = add_paths([str(tree)], resolve_options(**opts), jobs=1)[0]  # type: ignore[arg-type]
    store = BlockStore()
    lines: list[tuple[str, str]] = []
    roots = store.add_paths([str(tree)], resolve_options(**opts),  # type: ignore[arg-type]
                            jobs=1, report=lambda c, n, d: lines.append((c, n)))
    assert roots == [expected]
    assert lines[-1] == (str(expected), "d")
    # leaves are not copied: what is kept in memory is a small fraction of the data
    kept = sum(len(loc.head) for loc in store._locs.values() if loc.source is None)
    assert kept < 1_300_000 // 20
    with running_gateway(store) as url:
        r = httpx.get(f"{url}/ipfs/{expected}/big.bin?format=car", timeout=10)
        assert r.status_code == 200
        assert car_cids(r.content)[0] == str(expected)
        assert _file_bytes(r.content, skip=1) == (tree / "big.bin").read_bytes()
        r = httpx.get(f"{url}/ipfs/{expected}/sub/small.txt?format=car", timeout=10)
        assert r.status_code == 200
        small = CID.parse(car_cids(r.content)[-1])
        raw = httpx.get(f"{url}/ipfs/{small}?format=raw", timeout=10)
        small.verify(raw.content)


@pytest.mark.parametrize("opts", SETTINGS[:2], ids=["raw-leaves", "dag-pb-leaves"])
def test_file_leaves_are_sent_from_the_page_cache(tree: Path, opts: dict[str, object],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a served file's leaves leave by os.sendfile (no copy through the server), the
    # framing around them by plain writes, and the answer verifies
    sent: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        n = real(out_fd, in_fd, offset, count)
        sent.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", counting)
    big = tree / "big.bin"
    with running_gateway([str(big)], **opts) as url:
        root = add_paths([str(big)], resolve_options(**opts), jobs=1)[0]  # type: ignore[arg-type]
        r = httpx.get(f"{url}/ipfs/{root}?format=car", timeout=10)
    assert r.status_code == 200
    assert _file_bytes(r.content, skip=0) == big.read_bytes()
    # every 64 KiB leaf by sendfile; only the short last one is copied (under SPAN_MIN)
    size = big.stat().st_size
    assert sum(sent) == size - size % 65536


def test_a_tree_of_many_files_is_sent_with_a_bounded_set_of_open_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 150 files big enough to be sent by sendfile, in one answer whose chunks (8 MiB
    # here) could hold them all: the server keeps at most SPAN_FILES of them open, never
    # closes one a pending chunk still needs (the bytes would be wrong), and each file's
    # bytes arrive intact
    from carget.server import ServerLimits
    from carget.server.blocks import SPAN_FILES, SPAN_MIN

    src = tmp_path / "many"
    src.mkdir()
    rng = random.Random(3)
    for i in range(150):
        (src / f"f{i:03}.bin").write_bytes(rng.randbytes(SPAN_MIN + 1000 + i))
    opened: list[int] = []
    real_open = os.open
    live: set[int] = set()
    real_close = os.close

    def tracking_open(path: str, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        if str(path).startswith(str(src)):
            live.add(fd)
            opened.append(len(live))
        return fd

    def tracking_close(fd: int) -> None:
        live.discard(fd)
        real_close(fd)

    opts = {"cid_version": 1}
    root = add_paths([str(src)], resolve_options(**opts), jobs=1)[0]  # type: ignore[arg-type]
    with running_gateway([str(src)], limits=ServerLimits(write_size=8 << 20), **opts) as url:
        monkeypatch.setattr(os, "open", tracking_open)
        monkeypatch.setattr(os, "close", tracking_close)
        r = httpx.get(f"{url}/ipfs/{root}?format=car&dag-scope=all", timeout=30)
    assert r.status_code == 200
    _, blocks = decode_car(r.content, verify=True)
    by_cid = {b.cid: bytes(b.data) for b in blocks}
    for i in range(150):
        leaves = add_paths([str(src / f"f{i:03}.bin")], resolve_options(**opts), jobs=1)
        assert leaves[0] in by_cid  # the file's root block was sent
    assert sum(len(b.data) for b in blocks if b.cid.codec == RAW) >= sum(
        (src / f"f{i:03}.bin").stat().st_size for i in range(150))
    assert opened and max(opened) <= SPAN_FILES + 1, max(opened)


def test_changed_file_is_refused_not_served(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    data = bytearray(random.Random(1).randbytes(300_000))
    f.write_bytes(data)
    opts = {"cid_version": 1, "chunker": "size-65536"}
    with running_gateway([str(f)], **opts) as url:
        root = add_paths([str(f)], resolve_options(**opts), jobs=1)[0]  # type: ignore[arg-type]
        ok = httpx.get(f"{url}/ipfs/{root}?format=car", timeout=10)
        leaves = car_cids(ok.content)[1:]
        assert len(leaves) == 5
        # rewrite one byte of the third leaf in place (same size)
        data[2 * 65536 + 10] ^= 0xFF
        f.write_bytes(data)
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{url}/ipfs/{root}?format=car", timeout=10)
        bad = httpx.get(f"{url}/ipfs/{leaves[2]}?format=raw", timeout=10)
        assert bad.status_code == 500
        # the leaves that did not change are re-hashed and still served
        good = httpx.get(f"{url}/ipfs/{leaves[0]}?format=raw", timeout=10)
        assert good.status_code == 200
        CID.parse(leaves[0]).verify(good.content)
        part = httpx.get(f"{url}/ipfs/{root}?format=car&dag-scope=entity&entity-bytes=0:65535",
                         timeout=10)
        assert car_cids(part.content) == [str(root), leaves[0]]


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(200_000))
    with running_gateway([str(f)], cid_version=1, chunker="size-65536") as url:
        root = BlockStore()
        root_cid = root.add_paths([str(f)], resolve_options(cid_version=1, chunker="size-65536"),
                                  jobs=1)[0]
        with open(f, "r+b") as fh:
            fh.truncate(100_000)
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{url}/ipfs/{root_cid}?format=car", timeout=10)


def test_carv2_with_index_is_served(tmp_path: Path) -> None:
    from carget.car.writer import open_car_writer

    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(400_000))
    car = tmp_path / "f.car"
    opts = resolve_options(cid_version=1, chunker="size-65536")
    with open_car_writer(str(car), version=2) as w:
        roots = add_paths([str(src)], opts, jobs=1, emit=w.write_block)
        w.set_roots(roots)
    with running_gateway([str(car)]) as url:
        r = httpx.get(f"{url}/ipfs/{roots[0]}?format=car", timeout=10)
        assert r.status_code == 200
        assert car_cids(r.content)[0] == str(roots[0])
        assert _file_bytes(r.content, skip=0) == src.read_bytes()


def test_corrupt_cars_are_refused_with_carget_errors(tmp_path: Path) -> None:
    from servehelp import FIXTURES

    from carget.errors import CARError, HashMismatch

    good = Path(FIXTURES, "trustless_gateway_car", "subdir-with-two-single-block-files.car")
    blob = bytearray(good.read_bytes())
    cut = tmp_path / "cut.car"
    cut.write_bytes(blob[:-7])
    with pytest.raises(CARError):
        BlockStore().add_car(str(cut))
    blob[-3] ^= 0x01  # inside the last block
    flipped = tmp_path / "flipped.car"
    flipped.write_bytes(blob)
    with pytest.raises(HashMismatch):
        BlockStore().add_car(str(flipped))
    junk = tmp_path / "junk.car"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(CARError):
        BlockStore().add_car(str(junk))


def test_an_empty_file_with_raw_leaves_is_served(tmp_path: Path) -> None:
    """Its leaf holds no bytes (so no file span): the block is kept in memory instead. The
    lassie interop test found it missing from a tree's CAR once."""
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "empty").write_bytes(b"")
    (tree / "a.txt").write_bytes(b"hello\n")
    store = BlockStore()
    root = store.add_paths([str(tree)], resolve_options(cid_version=1), jobs=1)[0]
    empty = CID.of(b"", RAW)
    assert store.get(empty) == b""
    with running_gateway(store) as url:
        r = httpx.get(f"{url}/ipfs/{root}?format=car", timeout=10)
        assert str(empty) in car_cids(r.content)
        r = httpx.get(f"{url}/ipfs/{root}/empty", timeout=10)
        assert r.status_code == 200 and r.content == b""
