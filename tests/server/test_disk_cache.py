"""The disk cache (server/cache.py, _packfolder.py, _packindex.py): verified blocks in pack
files, LRU by pack within a size bound, crash-safe appends (torn and wrong packs and
indexes never served), planted files dropped unread, a folder shared by two processes,
waiters woken by puts from other threads; and the server answering from it while a filler
brings blocks over time."""

from __future__ import annotations

import errno
import http.client
import os
import random
import shutil
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
import trio.testing
from servehelp import car_cids

from carget.add import add_bytes
from carget.cid import CID, RAW, Block
from carget.errors import CargetError, HashMismatch, NetworkError, NotFoundError, UsageError
from carget.server import ServerLimits
from carget.server._filebody import file_pieces
from carget.server._http import Chunk, file_chunks
from carget.server._packfolder import INDEX_LIMIT, PACK_LIMIT
from carget.server._packindex import INDEX_MAGIC, encode_record, parse_records
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


def _packs(cache: DiskCache) -> list[Path]:
    return sorted(Path(cache.root).glob("*.pack"))


def _pack_of(cache: DiskCache, cid: CID) -> Path:
    loc = cache.packs.lookup(cid.multihash)
    assert loc is not None
    return Path(cache.packs.path(loc[0]))


def _close(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)


def test_parse_size() -> None:
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("10GiB") == parse_size("10G") == 10 << 30
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("1234") == 1234
    for bad in ("", "ten", "5 parsecs", "-1G"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_index_records_whole_cut_short_and_followed_by_junk() -> None:
    rng = random.Random(3)
    want = [(rng.randbytes(34), i * LEAF, LEAF - i) for i in range(5)]
    blob = b"".join(encode_record(*r) for r in want)
    got, used, wrong = parse_records(blob, LEAF)
    assert [(r.multihash, r.offset, r.length) for r in got] == want
    assert (used, wrong) == (len(blob), False)
    ends = [0]
    for r in want:
        ends.append(ends[-1] + len(encode_record(*r)))
    for cut in range(len(blob)):  # a tear anywhere: the whole records before it, no more
        got, used, wrong = parse_records(blob[:cut], LEAF)
        whole = max(i for i, e in enumerate(ends) if e <= cut)
        assert (len(got), used, wrong) == (whole, ends[whole], False)
    fed = b""  # byte by byte, carrying what was not used
    taken = []
    for b in blob:
        fed += bytes([b])
        got, used, wrong = parse_records(fed, LEAF)
        taken += got
        fed = fed[used:]
    assert [(r.multihash, r.offset, r.length) for r in taken] == want and not wrong
    for junk in (b"\0" * 64, bytes([34]) + b"x" * 60, rng.randbytes(64)):
        got, used, wrong = parse_records(blob + junk, LEAF)
        assert (len(got), used, wrong) == (5, len(blob), True)
    flipped = bytearray(blob)
    flipped[ends[2] + 7] ^= 1  # inside the third record: it and all after it are not taken
    got, used, wrong = parse_records(bytes(flipped), LEAF)
    assert (len(got), used, wrong) == (2, ends[2], True)
    got, _, wrong = parse_records(encode_record(b"m" * 34, 0, LEAF + 1), LEAF)
    assert (got, wrong) == ([], True)  # longer than any block


def test_put_get_span_and_wrong_bytes_refused(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path))
    cid, data = _leaf(1)
    assert cache.get(cid) is None and cache.size(cid) is None
    cache.put(cid, data)
    assert cache.get(cid) == data and cache.size(cid) == LEAF
    fds: dict[str, int] = {}
    span = cache.data_span(cid, fds)
    assert span is not None and span.read() == data
    _close(fds)
    other, _ = _leaf(2)
    with pytest.raises(HashMismatch):
        cache.put(other, data)
    assert cache.get(other) is None and cache.used == LEAF
    cache.put(cid, data)  # held already: not written twice
    assert cache.used == LEAF


def test_blocks_go_into_few_pack_files(tmp_path: Path) -> None:
    # 4 MiB of blocks: one pack and its index, not a file per block; sent from one open
    # file, the blocks back to back in the order they came
    cache = DiskCache(str(tmp_path))
    leaves = [_leaf(n) for n in range(64)]
    for cid, data in leaves:
        cache.put(cid, data)
    assert len(list(Path(cache.root).iterdir())) == 2
    fds: dict[str, int] = {}
    spans = [cache.data_span(cid, fds) for cid, _ in leaves]
    try:
        assert len(fds) == 1
        assert [s.offset if s else None for s in spans] == [i * LEAF for i in range(64)]
        assert b"".join(s.read() for s in spans if s) == b"".join(d for _, d in leaves)
    finally:
        _close(fds)
    # a smaller cache starts its packs sooner (an eighth of it), so whole packs can go
    small = DiskCache(str(tmp_path / "small"), max_bytes=32 * LEAF)
    for cid, data in leaves[:16]:
        small.put(cid, data)
    assert [p.stat().st_size for p in _packs(small)] == [4 * LEAF] * 4


def test_a_leaf_that_was_waited_for_goes_out_from_its_cache_file(tmp_path: Path) -> None:
    # a file answer that waited for a leaf sends it with sendfile from the cache's pack,
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
        assert len(fds) == 1  # one open file for the pack, not one per block
        _close(fds)
    assert waits == 3 and out == data


def test_leaves_back_to_back_in_a_pack_go_out_as_one_span_a_chunk(tmp_path: Path) -> None:
    # a cached file's leaves lie in file order in the pack: each 1 MiB write of the answer
    # is one sendfile of 16 leaves, not 16; a leaf elsewhere starts a span of its own
    cache = DiskCache(str(tmp_path))
    root, data, blocks = _dag(40 * LEAF + 100)
    leaves = [c for c in blocks if c != root]
    stray, rest = leaves[20], leaves[:20] + leaves[21:]
    for cid in [root, *rest, stray]:  # one leaf out of its place
        cache.put(cid, blocks[cid])
    fds: dict[str, int] = {}
    try:
        chunks = list(file_chunks(file_pieces(cache, root, len(data), 0, len(data) - 1, fds),
                                  16 * LEAF))
        assert not any(isinstance(c, Need) for c in chunks)
        body = [c for c in chunks if isinstance(c, Chunk)]
        assert b"".join(c.to_bytes() for c in body) == data
        spans = [[p.length if isinstance(p, FileSpan) else -len(p) for p in c.parts]
                 for c in body]  # (a short last leaf is copied: negative)
        assert spans == [[16 * LEAF], [4 * LEAF, LEAF, 11 * LEAF], [8 * LEAF, -100]], spans
    finally:
        _close(fds)


@pytest.mark.parametrize("pack", ["being written", "written"])
def test_a_pack_that_cannot_be_opened_drops_its_blocks_to_be_asked_for_again(
        tmp_path: Path, pack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # out of descriptors: a block left listed but unreadable would have a waiting answer
    # find it there and fail to read it, again and again; absent, it is asked for again
    cache = DiskCache(str(tmp_path))
    cid, data = _leaf(1)
    cache.put(cid, data)
    if pack == "written":
        cache.close()

    def no_fds(*args: object) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    with monkeypatch.context() as m:
        m.setattr(os, "dup" if pack == "being written" else "open", no_fds)
        assert cache.open_span(cid, {}) is None
    assert cache.size(cid) is None and cache.used == 0
    cache.put(cid, data)  # what the filler then brings
    assert cache.get(cid) == data and len(_packs(cache)) == 2


def test_the_packs_folder_removed_meanwhile_is_made_again(tmp_path: Path) -> None:
    # a user clearing the cache by hand while it runs: what was in it is gone, and the
    # next block goes into a new pack in a folder made again
    cache = DiskCache(str(tmp_path), rescan_every=0)
    (a, da), (b, db) = _leaf(1), _leaf(2)
    cache.put(a, da)
    shutil.rmtree(cache.root)
    assert cache.get(b) is None  # a miss: its rescan finds the pack gone
    assert cache.get(a) is None
    cache.put(b, db)
    assert cache.get(b) == db and len(_packs(cache)) == 1
    assert cache.used == LEAF


def test_a_pack_this_process_starts_while_a_rescan_lists_the_folder_stays_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a put from another thread starts a pack just as a rescan lists the folder: the
    # rescan must not take it for a pack found there, nor count its bytes twice
    cache = DiskCache(str(tmp_path), max_bytes=8 * LEAF, rescan_every=0)  # a pack a leaf
    (a, da), (b, db) = _leaf(1), _leaf(2)
    cache.put(a, da)
    scandir = os.scandir

    def listing(path: str) -> object:
        monkeypatch.setattr(os, "scandir", scandir)
        cache.put(b, db)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", listing)
    assert cache.get(_leaf(3)[0]) is None  # a miss: the rescan
    assert cache.get(b) == db
    assert cache.used == sum(p.stat().st_size for p in _packs(cache)) == 2 * LEAF


def test_least_recently_used_packs_are_evicted_at_the_bound(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path), max_bytes=16 * LEAF)  # packs of 2 leaves
    leaves = [_leaf(n) for n in range(20)]
    for cid, data in leaves[:16]:
        cache.put(cid, data)
    assert len(_packs(cache)) == 8 and cache.used == 16 * LEAF
    packs = [_pack_of(cache, cid) for cid, _ in leaves[:16:2]]  # looked at in their order
    assert cache.get(leaves[0][0]) == leaves[0][1]  # its pack: now the most recently used
    cache.put(*leaves[16])  # a ninth pack: the least recently used pack goes, whole
    assert [p.exists() for p in packs] == [True, False] + [True] * 6
    cache.put(*leaves[17])
    cache.put(*leaves[18])  # a tenth
    assert [p.exists() for p in packs] == [True, False, False] + [True] * 5
    held = [cache.size(c) is not None for c, _ in leaves]
    assert held == [True] * 2 + [False] * 4 + [True] * 13 + [False]
    assert len(_packs(cache)) == 8
    assert cache.used == sum(p.stat().st_size for p in _packs(cache)) <= 16 * LEAF


def test_eviction_keeps_the_bound(tmp_path: Path) -> None:
    bound = 40 * LEAF
    cache = DiskCache(str(tmp_path), max_bytes=bound)
    rng = random.Random(5)
    leaves = [_leaf(n) for n in range(200)]
    for i, (cid, data) in enumerate(leaves):
        cache.put(cid, data)
        for _ in range(2):  # some use of what came before
            old, old_data = leaves[rng.randrange(i + 1)]
            assert cache.get(old) in (None, old_data)
        on_disk = sum(p.stat().st_size for p in _packs(cache))
        assert on_disk == cache.used <= bound, i
    assert cache.used >= bound - bound // 8 - LEAF  # and it is used, less one pack at most
    again = DiskCache(str(tmp_path), max_bytes=bound // 2)  # a smaller bound at start
    assert sum(p.stat().st_size for p in _packs(again)) == again.used <= bound // 2


def test_recency_is_rebuilt_from_the_folder_at_start(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path), max_bytes=8 * LEAF)  # a pack for each leaf
    leaves = [_leaf(n) for n in range(4)]
    for cid, data in leaves:
        cache.put(cid, data)
    paths = [_pack_of(cache, cid) for cid, _ in leaves]
    assert len(set(paths)) == 4
    cache.close()
    for i, path in enumerate(paths):
        os.utime(path, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    os.utime(paths[0], ns=(15 * 10**17, 15 * 10**17))  # used last
    again = DiskCache(str(tmp_path), max_bytes=2 * LEAF)
    assert [again.size(c) is not None for c, _ in leaves] == [True, False, False, True]
    assert [p.exists() for p in paths] == [True, False, False, True]
    assert again.get(leaves[3][0]) == leaves[3][1]  # a use refreshes its pack's time
    third = DiskCache(str(tmp_path), max_bytes=LEAF)
    assert [third.size(c) is not None for c, _ in leaves] == [False, False, False, True]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_leftovers_of_dead_processes_are_removed_and_a_live_ones_left_alone(
        tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path))
    root = Path(cache.root)
    cid, data = _leaf(7)
    dead, live = _dead_pid(), os.getppid()
    cut = INDEX_MAGIC + encode_record(cid.multihash, 0, LEAF)[:20]
    files = {
        f"{dead}-0.pack": data,  # killed before making its index
        f"{dead}-1.idx": INDEX_MAGIC,  # its pack removed
        f"{dead}-2.pack": data, f"{dead}-2.idx": INDEX_MAGIC,  # no block in it
        f"{dead}-3.pack": data, f"{dead}-3.idx": cut,  # killed in mid-record
        f"{live}-0.pack": data,  # a live process making its index
        f"{live}-1.pack": data, f"{live}-1.idx": INDEX_MAGIC[:5],  # ... writing it
        "notes.txt": b"not the cache's",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    again = DiskCache(str(tmp_path))
    assert sorted(p.name for p in root.iterdir()) == \
        sorted([f"{live}-0.pack", f"{live}-1.pack", f"{live}-1.idx", "notes.txt"])
    assert again.get(cid) is None and again.size(cid) is None


@pytest.mark.parametrize("damage", ["flip", "zeroes", "cut"])
def test_a_pack_with_wrong_bytes_is_never_served(tmp_path: Path, damage: str) -> None:
    """A flipped byte, the zeroes a power cut leaves (the index made it to the disk, the
    pack's bytes did not), a pack cut short: found by a new process, those blocks are
    hashed before their first use and dropped, never handed out."""
    cache = DiskCache(str(tmp_path))
    leaves = [_leaf(n) for n in range(4)]
    for cid, data in leaves:
        cache.put(cid, data)
    cache.close()
    (pack,) = _packs(cache)
    raw = bytearray(pack.read_bytes())
    if damage == "flip":
        raw[LEAF + 1000] ^= 1
    elif damage == "zeroes":
        raw[LEAF: 2 * LEAF] = bytes(LEAF)
    else:
        del raw[LEAF + 1000:]
    with open(pack, "r+b") as f:  # the same file, as damage leaves it
        f.write(raw)
        f.truncate(len(raw))
    bad = [1] if damage != "cut" else [1, 2, 3]
    again = DiskCache(str(tmp_path))
    for i, (cid, data) in enumerate(leaves):
        fds: dict[str, int] = {}
        if i in bad:
            assert again.size(cid) == LEAF  # listed ...
            assert again.open_span(cid, fds) is None  # ... but never handed out
            assert again.get(cid) is None and again.size(cid) is None
        else:
            span = again.data_span(cid, fds)
            assert span is not None and span.read() == data
            assert again.get(cid) == data
        _close(fds)


@pytest.mark.parametrize("damage", ["torn", "wrong", "junk"])
def test_an_index_cut_short_or_wrong_keeps_only_the_records_before_it(
        tmp_path: Path, damage: str) -> None:
    cache = DiskCache(str(tmp_path))
    leaves = [_leaf(n) for n in range(4)]
    for cid, data in leaves:
        cache.put(cid, data)
    cache.close()
    (pack,) = _packs(cache)
    index = pack.with_suffix(".idx")
    raw = index.read_bytes()
    rec = (len(raw) - len(INDEX_MAGIC)) // 4
    if damage == "torn":  # killed in mid-append
        index.write_bytes(raw[: len(INDEX_MAGIC) + 2 * rec + rec // 2])
    elif damage == "wrong":  # damage in the second record: nothing after it is trusted
        spoilt = bytearray(raw)
        spoilt[len(INDEX_MAGIC) + rec + 3] ^= 0x40
        index.write_bytes(spoilt)
    else:
        index.write_bytes(raw + random.Random(1).randbytes(100))
    held = {"torn": [True, True, False, False], "wrong": [True, False, False, False],
            "junk": [True] * 4}[damage]
    again = DiskCache(str(tmp_path))
    assert [again.get(c) == d for c, d in leaves] == held
    assert [again.size(c) is not None for c, _ in leaves] == held


@pytest.mark.parametrize("plant", ["fifo", "symlink", "huge"])
@pytest.mark.parametrize("where", ["pack", "index", "pack-after-start"])
def test_a_file_planted_under_a_pack_name_is_dropped_without_reading_it(
        tmp_path: Path, plant: str, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever lies under a pack's or an index's name that this cache could not have
    written (a FIFO, a link to another file, a file larger than any pack or index) is
    neither read nor served, whether it is there at start or comes after: no hang on the
    FIFO, the link's target untouched, no read of the huge file."""
    cache = DiskCache(str(tmp_path / "c"))
    cid, data = _leaf(9)
    cache.put(cid, data)
    cache.close()
    (pack,) = _packs(cache)
    path = pack.with_suffix(".idx") if where == "index" else pack
    target = tmp_path / "precious"
    target.write_bytes(path.read_bytes())  # even the right bytes, behind a link, are not followed
    again = DiskCache(str(tmp_path / "c")) if where == "pack-after-start" else None
    path.unlink()
    if plant == "fifo":
        os.mkfifo(path)
    elif plant == "symlink":
        path.symlink_to(target)
    else:
        with open(path, "wb") as f:
            f.write(target.read_bytes())
            f.truncate((INDEX_LIMIT if where == "index" else PACK_LIMIT) + 1)
    if again is None:
        again = DiskCache(str(tmp_path / "c"))  # a new process: it did not write this
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
    assert not list(Path(again.root).iterdir())  # the pack and its index both went
    assert target.read_bytes()[:LEAF] == (data if path == pack else target.read_bytes()[:LEAF])
    assert all(n <= 2 << 20 for n in reads), reads  # the huge file was never read


_OTHER = textwrap.dedent("""
    import random, sys
    from carget.cid import CID, RAW
    from carget.server.cache import DiskCache
    cache = DiskCache(sys.argv[1])
    for line in sys.stdin if sys.argv[2] == "-" else [" ".join(sys.argv[2:])]:
        a, b = map(int, line.split())
        for n in range(a, b):
            data = random.Random(n).randbytes(65536)
            cache.put(CID.of(data, RAW), data)
        print("ok", flush=True)
""")


def _other(tmp_path: Path, *args: str, piped: bool = False) -> subprocess.Popen[str]:
    """Another process putting blocks into the folder: those of ``a b`` (a range of
    leaves), or of each such line it reads (``-``, ``piped``), saying "ok" after each."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    pipe = subprocess.PIPE if piped else None
    return subprocess.Popen([sys.executable, "-c", _OTHER, str(tmp_path), *args], env=env,
                            text=True, stdin=pipe, stdout=pipe)


def test_two_processes_share_the_folder(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path), rescan_every=0)
    for n in range(0, 20):
        cache.put(*_leaf(n))
    procs = [_other(tmp_path, str(a), str(b)) for a, b in ((10, 40), (30, 60))]
    for n in range(40, 60):  # this process writes some of the same blocks meanwhile
        cache.put(*_leaf(n))
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    for n in range(60):
        cid, data = _leaf(n)
        assert cache.get(cid) == data, n  # those of the others are hashed before use
    names = sorted(p.name for p in Path(cache.root).iterdir())
    pids = {int(name.split("-")[0]) for name in names}
    assert pids == {os.getpid(), *(p.pid for p in procs)}  # each wrote its own packs
    assert names == sorted(f"{s}{x}" for s in {n.rpartition(".")[0] for n in names}
                           for x in (".pack", ".idx"))


def test_blocks_another_live_process_appends_are_found_on_a_miss(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path), rescan_every=3600)
    other = _other(tmp_path, "-", piped=True)
    assert other.stdin is not None and other.stdout is not None
    try:
        other.stdin.write("0 4\n")
        other.stdin.flush()
        assert other.stdout.readline() == "ok\n"
        assert cache.get(_leaf(0)[0]) is None  # the last rescan is less than an hour old
        cache.packs.rescan_every = 0
        assert [cache.get(c) == d for c, d in map(_leaf, range(4))] == [True] * 4
        other.stdin.write("4 8\n")  # appended to the same pack, still being written
        other.stdin.flush()
        assert other.stdout.readline() == "ok\n"
        assert [cache.get(c) == d for c, d in map(_leaf, range(8))] == [True] * 8
        assert len(_packs(cache)) == 1
    finally:
        other.stdin.close()
        assert other.wait(timeout=60) == 0
    assert DiskCache(str(tmp_path)).get(_leaf(7)[0]) == _leaf(7)[1]  # and at the next start


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


def test_puts_from_a_thread_wake_their_waiters_with_one_trio_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # puts that come while trio has not yet run the call that wakes the first waiter
    # join it: one call into trio for the batch, not one per block
    leaves = [_leaf(n) for n in range(8)]
    cache = _filled_cache(tmp_path, ThreadFiller({}, hold=frozenset(c for c, _ in leaves)))
    calls: list[object] = []
    real = trio.lowlevel.current_trio_token
    counting: dict[object, object] = {}

    class Counting:
        def __init__(self, token: trio.lowlevel.TrioToken) -> None:
            self.token = token

        def run_sync_soon(self, fn: object, *args: object) -> None:
            calls.append(fn)
            self.token.run_sync_soon(fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(trio.lowlevel, "current_trio_token",
                        lambda: counting.setdefault(real(), Counting(real())))

    async def main() -> None:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for cid, _ in leaves:
                    nursery.start_soon(cache.wait_for, cid)
                await trio.testing.wait_all_tasks_blocked()
                # every block put while trio's thread is held here
                t = threading.Thread(target=lambda: [cache.put(c, d) for c, d in leaves])
                t.start()
                t.join()

    trio.run(main)
    assert len(calls) == 1


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
