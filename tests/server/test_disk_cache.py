"""The disk cache (server/cache.py): verified blocks on disk, LRU within a size bound,
crash-safe writes, a folder shared by two processes, waiters woken by puts from other
threads; and the server answering from it while a filler brings blocks over time."""

from __future__ import annotations

import http.client
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from servehelp import car_cids

from carget.add import add_bytes
from carget.cid import CID, RAW, Block
from carget.errors import CargetError, HashMismatch, NetworkError, NotFoundError, UsageError
from carget.server import ServerLimits
from carget.server._filebody import file_pieces
from carget.server.blocks import FileSpan, Layers, Need, Want
from carget.server.cache import DiskCache, parse_size
from carget.server.store import BlockStore
from carget.server.testing import running_gateway
from carget.unixfs.options import resolve_options

LEAF = 65536
OPTS = resolve_options(cid_version=1, chunker=f"size-{LEAF}")


def _dag(size: int, seed: int = 1) -> tuple[CID, bytes, dict[CID, bytes]]:
    data = random.Random(seed).randbytes(size)
    blocks: dict[CID, bytes] = {}

    def emit(b: Block) -> None:
        blocks[b.cid] = bytes(b.data)

    root = add_bytes(data, OPTS, emit=emit).cid
    return root, data, blocks


def _leaf(n: int) -> tuple[CID, bytes]:
    data = random.Random(n).randbytes(LEAF)
    return CID.of(data, RAW), data


def _file(cache: DiskCache, cid: CID) -> Path:
    mh = cid.multihash
    return Path(cache.root) / f"{mh[-1]:02x}" / mh.hex()


def test_parse_size() -> None:
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("10GiB") == parse_size("10G") == 10 << 30
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("1234") == 1234
    for bad in ("", "ten", "5 parsecs", "-1G"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_put_get_span_and_wrong_bytes_refused(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path))
    cid, data = _leaf(1)
    assert cache.get(cid) is None and cache.size(cid) is None
    cache.put(cid, data)
    assert cache.get(cid) == data and cache.size(cid) == LEAF
    fds: dict[str, int] = {}
    span = cache.data_span(cid, fds)
    assert span is not None and span.read() == data
    for fd in fds.values():
        os.close(fd)
    other, _ = _leaf(2)
    with pytest.raises(HashMismatch):
        cache.put(other, data)
    assert cache.get(other) is None and not _file(cache, other).exists()


def test_a_leaf_that_was_waited_for_goes_out_from_its_cache_file(tmp_path: Path) -> None:
    # a file answer that waited for a leaf sends it with sendfile from the cache's file,
    # never read into memory and copied out (two copies of every bridged byte)
    cache = DiskCache(str(tmp_path))
    root, data, blocks = _dag(3 * LEAF)
    cache.put(root, blocks[root])
    fds: dict[str, int] = {}
    pieces = file_pieces(cache, root, len(data), 0, len(data) - 1, fds)
    out = b""
    waits = 0
    try:
        piece = next(pieces)
        while True:
            if isinstance(piece, Need):
                waits += 1
                cache.put(piece.cid, blocks[piece.cid])
            else:
                assert isinstance(piece, FileSpan)
                out += piece.read()
            piece = pieces.send(None)
    except StopIteration:
        pass
    finally:
        for fd in fds.values():
            os.close(fd)
    assert waits == 3 and out == data


def test_a_block_folder_removed_meanwhile_is_made_again(tmp_path: Path) -> None:
    # the cache makes each block folder once, not at every put; one removed while it
    # runs (a user clearing the cache by hand) is made again
    cache = DiskCache(str(tmp_path))
    by_folder: dict[int, tuple[CID, bytes]] = {}
    n = 0
    while True:
        cid, data = _leaf(n)
        n += 1
        first = by_folder.setdefault(cid.multihash[-1], (cid, data))
        if first[0] != cid:
            break
    cache.put(*first)
    folder = _file(cache, first[0]).parent
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    cache.put(cid, data)
    assert _file(cache, cid).read_bytes() == data and cache.get(cid) == data


def test_least_recently_used_are_evicted_at_the_bound(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path), max_bytes=3 * LEAF)
    leaves = [_leaf(n) for n in range(5)]
    for cid, data in leaves[:3]:
        cache.put(cid, data)
    assert cache.get(leaves[0][0]) == leaves[0][1]  # now the most recently used
    cache.put(*leaves[3])
    assert [_file(cache, c).exists() for c, _ in leaves] == [True, False, True, True, False]
    cache.put(*leaves[4])
    assert [_file(cache, c).exists() for c, _ in leaves] == [True, False, False, True, True]
    assert cache.size(leaves[2][0]) is None  # the next least recently used
    assert cache.used == 3 * LEAF
    names = [p for p in Path(cache.root).rglob("*") if p.is_file()]
    assert len(names) == 3


def test_recency_is_rebuilt_from_the_folder_at_start(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path))
    leaves = [_leaf(n) for n in range(4)]
    for i, (cid, data) in enumerate(leaves):
        cache.put(cid, data)
        os.utime(_file(cache, cid), ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    os.utime(_file(cache, leaves[0][0]), ns=(2 * 10**18, 2 * 10**18))  # used last
    again = DiskCache(str(tmp_path), max_bytes=2 * LEAF)
    assert [again.size(c) is not None for c, _ in leaves] == [True, False, False, True]
    assert again.get(leaves[3][0]) == leaves[3][1]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_leftover_temporaries_are_never_served_and_dead_ones_are_removed(
        tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path))
    cid, data = _leaf(7)
    folder = _file(cache, cid).parent
    folder.mkdir(parents=True, exist_ok=True)
    dead = folder / f".tmp-{_dead_pid()}-0"
    dead.write_bytes(data[: LEAF // 2])  # a write cut short by a crash
    live = folder / f".tmp-{os.getpid()}-999"  # a live process's write in progress
    live.write_bytes(data)
    again = DiskCache(str(tmp_path))
    assert not dead.exists() and live.exists()
    assert again.get(cid) is None and again.size(cid) is None


def test_a_torn_block_from_a_power_cut_is_dropped_not_served(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path))
    cid, data = _leaf(8)
    cache.put(cid, data)
    # what a power cut can leave without fsync: the rename made it, the data did not
    _file(cache, cid).write_bytes(b"\0" * LEAF)
    again = DiskCache(str(tmp_path))  # a new process: it did not write this block
    assert again.size(cid) == LEAF  # listed ...
    fds: dict[str, int] = {}
    assert again.open_span(cid, fds) is None  # ... but never handed out
    assert again.get(cid) is None
    assert not _file(cache, cid).exists() and again.size(cid) is None



@pytest.mark.parametrize("plant", ["fifo", "symlink", "huge"])
def test_a_file_planted_under_a_block_name_is_dropped_without_reading_it(
        tmp_path: Path, plant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever lies under a block's name that this cache could not have written (a FIFO,
    a link to another file, a file larger than any block) is neither read nor served:
    no hang on the FIFO, the link's target untouched, no read of the huge file."""
    cache = DiskCache(str(tmp_path / "c"))
    cid, data = _leaf(9)
    cache.put(cid, data)
    path = _file(cache, cid)
    path.unlink()
    target = tmp_path / "precious"
    target.write_bytes(data)  # even the right bytes, behind a link, are not followed
    if plant == "fifo":
        os.mkfifo(path)
    elif plant == "symlink":
        path.symlink_to(target)
    else:
        with open(path, "wb") as f:
            f.truncate(64 << 20)
    again = DiskCache(str(tmp_path / "c"))  # a new process: it did not write this block
    reads: list[int] = []
    pread = os.pread

    def spy(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", spy)
    done: list[bytes | None] = []
    t = threading.Thread(target=lambda: done.append(again.get(cid)), daemon=True)
    t.start()
    t.join(10)
    assert done == [None]
    assert again.open_span(cid, {}) is None
    assert not os.path.lexists(path)
    assert target.read_bytes() == data
    assert all(n <= 2 << 20 for n in reads), reads  # the huge file was never read

_OTHER = textwrap.dedent("""
    import random, sys
    from carget.cid import CID, RAW
    from carget.server.cache import DiskCache
    cache = DiskCache(sys.argv[1])
    for n in range(int(sys.argv[2]), int(sys.argv[3])):
        data = random.Random(n).randbytes(65536)
        cache.put(CID.of(data, RAW), data)
""")


def test_two_processes_share_the_folder(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path))
    for n in range(0, 20):
        cache.put(*_leaf(n))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _OTHER, str(tmp_path), str(a), str(b)],
                              env=env) for a, b in ((10, 40), (30, 60))]
    for n in range(40, 60):  # this process writes some of the same blocks meanwhile
        cache.put(*_leaf(n))
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    for n in range(60):
        cid, data = _leaf(n)
        assert cache.get(cid) == data, n  # those of the others are hashed before use
    assert not [p for p in Path(cache.root).rglob(".tmp-*")]


# --- waiting --------------------------------------------------------------------------------

class ThreadFiller:
    """Puts blocks from ``blocks`` into the cache from a worker thread, each after
    ``delay`` seconds; CIDs in ``fail`` get that error instead; ``hold`` are never given."""

    def __init__(self, blocks: dict[CID, bytes], delay: float = 0.01,
                 fail: dict[CID, CargetError] | None = None,
                 hold: frozenset[CID] = frozenset()) -> None:
        self.blocks = blocks
        self.delay = delay
        self.fail = fail or {}
        self.hold = hold
        self.cache: DiskCache | None = None
        self.requested: list[tuple[CID, Want | None]] = []
        self.threads: list[threading.Thread] = []

    def request(self, cid: CID, want: Want | None) -> None:
        self.requested.append((cid, want))
        if cid in self.hold:
            return
        t = threading.Thread(target=self._fill, args=(cid,), daemon=True)
        self.threads.append(t)
        t.start()

    def _fill(self, cid: CID) -> None:
        time.sleep(self.delay)
        assert self.cache is not None
        if cid in self.fail:
            self.cache.fail(cid, self.fail[cid])
        elif cid in self.blocks:
            self.cache.put(cid, self.blocks[cid])
        else:
            self.cache.fail(cid, NotFoundError(f"{cid} is not upstream"))


def _filled_cache(tmp_path: Path, filler: ThreadFiller) -> DiskCache:
    cache = DiskCache(str(tmp_path), filler=filler)
    filler.cache = cache
    return cache


def test_wait_for_is_woken_by_puts_from_other_threads(tmp_path: Path) -> None:
    leaves = dict(_leaf(n) for n in range(6))
    gone, _ = _leaf(99)
    broken, _ = _leaf(100)
    filler = ThreadFiller(leaves, delay=0.02, fail={broken: NetworkError("upstream down")})
    cache = _filled_cache(tmp_path, filler)
    errors: dict[CID, BaseException] = {}

    async def wait(cid: CID) -> None:
        try:
            with trio.fail_after(20):
                await cache.wait_for(cid)
        except CargetError as exc:
            errors[cid] = exc

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for cid in [*leaves, *leaves, gone, broken]:  # two waiters on each leaf
                nursery.start_soon(wait, cid)

    trio.run(main)
    assert set(errors) == {gone, broken}
    assert isinstance(errors[gone], NotFoundError)
    assert isinstance(errors[broken], NetworkError)
    assert all(cache.get(cid) == data for cid, data in leaves.items())


def test_wait_for_without_a_filler_fails_at_once(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path))
    cid, data = _leaf(3)

    async def main() -> None:
        with pytest.raises(NotFoundError):
            await cache.wait_for(cid)
        cache.put(cid, data)
        await cache.wait_for(cid)  # there: no wait

    trio.run(main)


# --- the server over a cache that fills over time ---------------------------------------------

@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[CID, bytes, dict[CID, bytes], Path]]:
    root, data, blocks = _dag(10 * LEAF + 1234, seed=5)
    yield root, data, blocks, tmp_path


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


def test_server_waits_for_blocks_then_answers_from_the_cache(
        filled: tuple[CID, bytes, dict[CID, bytes], Path]) -> None:
    root, data, blocks, tmp = filled
    filler = ThreadFiller(blocks, delay=0.01)
    cache = _filled_cache(tmp, filler)
    with running_gateway(Layers([BlockStore(), cache]), waiter=cache) as url:
        assert _get(f"{url}/ipfs/{root}") == (200, data)
        asked = len(filler.requested)
        assert asked == len(blocks)  # each block asked for once
        assert _get(f"{url}/ipfs/{root}") == (200, data)  # now from the cache alone
        assert len(filler.requested) == asked
        # trustless answers for the cached content too
        _, car = _get(f"{url}/ipfs/{root}?format=car")
        assert car_cids(car)[0] == str(root) and len(car_cids(car)) == len(blocks)


def test_range_asks_only_for_the_blocks_it_needs(
        filled: tuple[CID, bytes, dict[CID, bytes], Path]) -> None:
    root, data, blocks, tmp = filled
    filler = ThreadFiller(blocks)
    cache = _filled_cache(tmp, filler)
    with running_gateway(Layers([BlockStore(), cache]), waiter=cache) as url:
        rng = {"Range": f"bytes={3 * LEAF + 5}-{4 * LEAF + 5}"}
        # named: no bytes to sniff, so the root and the two leaves that hold the range
        status, body = _get(f"{url}/ipfs/{root}?filename=a.bin", rng)
        assert status == 206 and body == data[3 * LEAF + 5: 4 * LEAF + 6]
        asked = [c for c, _ in filler.requested]
        leaves = [c for c in blocks if c.codec == RAW]
        assert asked == [root, leaves[3], leaves[4]]
        assert [w.byte_range if w else None for _, w in filler.requested[1:]] == \
            [(3 * LEAF + 5, 4 * LEAF + 5)] * 2
        # unnamed: the type is sniffed from the first bytes (as kubo does), one leaf more
        status, body = _get(f"{url}/ipfs/{root}", {"Range": f"bytes={6 * LEAF}-{6 * LEAF}"})
        assert status == 206 and body == data[6 * LEAF: 6 * LEAF + 1]
        assert [c for c, _ in filler.requested[3:]] == [leaves[0], leaves[6]]


def test_a_block_that_never_comes_is_a_status_before_bytes_and_a_cut_after(
        filled: tuple[CID, bytes, dict[CID, bytes], Path]) -> None:
    root, _, blocks, tmp = filled
    leaves = [c for c in blocks if c.codec == RAW]
    filler = ThreadFiller(blocks, fail={leaves[5]: NetworkError("upstream lied")})
    cache = _filled_cache(tmp, filler)
    with running_gateway(Layers([BlockStore(), cache]), waiter=cache) as url:
        with pytest.raises(http.client.IncompleteRead):  # the length was promised
            _get(f"{url}/ipfs/{root}")
        # asked for again, the first missing block is now before any byte: a status
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(f"{url}/ipfs/{root}", {"Range": f"bytes={5 * LEAF}-"})
        assert err.value.code == 502
    other, _, _ = _dag(1000, seed=6)
    filler = ThreadFiller({}, hold=frozenset([other]))
    cache = _filled_cache(tmp / "b", filler)
    with running_gateway(Layers([BlockStore(), cache]), waiter=cache,
                         limits=ServerLimits(block_wait=0.5)) as url:
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(f"{url}/ipfs/{other}")
        assert err.value.code == 504  # the filler never answered
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(f"{url}/ipfs/{_leaf(1234)[0]}")
        assert err.value.code == 404  # the filler says there is no such block
