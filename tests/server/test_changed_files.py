"""Issue 12: ``serve`` must never send bytes that do not match their CID as a complete 200,
also when a served file is rewritten during its import or after it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import carget.server.store as bs
from carget.cid import CID, RAW
from carget.errors import InputError
from carget.server.store import BlockStore
from carget.unixfs.dagpb import decode_node
from carget.unixfs.options import resolve_options

CHUNK = 65536
OPTS = resolve_options(cid_version=1, chunker=f"size-{CHUNK}")


def _rewrite_on_first_leaf(monkeypatch: pytest.MonkeyPatch, path: Path, offset: int,
                           data: bytes) -> list[int]:
    """Rewrite ``path`` in place at ``offset`` as soon as the import reports its first leaf:
    a deterministic stand-in for a file changed while it is being read."""
    original = bs._LeafRecorder.on_leaf
    fired: list[int] = []

    def on_leaf(self: Any, *args: Any) -> None:
        original(self, *args)
        if not fired:
            fired.append(1)
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(data)

    monkeypatch.setattr(bs._LeafRecorder, "on_leaf", on_leaf)
    return fired


def test_a_file_rewritten_during_its_import_is_refused(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(8 * CHUNK))
    # the middle changes; the first and last leaf (all the old check re-hashed) do not
    fired = _rewrite_on_first_leaf(monkeypatch, f, 3 * CHUNK, os.urandom(2 * CHUNK))
    with pytest.raises(InputError, match="changed while it was being imported"):
        BlockStore().add_paths([str(f)], OPTS, jobs=1)
    assert fired


def test_a_file_changed_before_it_is_read_is_served_as_read(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.bin").write_bytes(os.urandom(2 * CHUNK))
    (d / "b.bin").write_bytes(os.urandom(4 * CHUNK))
    new = os.urandom(CHUNK)
    # b changes while a is imported, before b is read: b is imported as it now is
    _rewrite_on_first_leaf(monkeypatch, d / "b.bin", CHUNK, new)
    store = BlockStore()
    lines: list[tuple[str, str]] = []
    store.add_paths([str(d)], OPTS, jobs=1, report=lambda c, n, _: lines.append((c, n)))
    b_root = CID.parse(next(c for c, n in lines if n == "d/b.bin"))
    root = decode_node(store.get(b_root) or b"")
    second = root.links[1].cid
    assert store.get(second) == new


def test_a_car_rewritten_during_its_scan_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from carget.car.encoder import encode_header, section_prefix

    data = os.urandom(1000)
    cid = CID.of(data, RAW)
    car = tmp_path / "x.car"
    car.write_bytes(encode_header([cid]) + section_prefix(cid, len(data)) + data)
    original = bs._scan_car

    def scan(f: Any, src: Any, locs: Any) -> list[CID]:
        roots = original(f, src, locs)
        with open(car, "r+b") as w:  # rewritten in place once scanned
            w.seek(-10, os.SEEK_END)
            w.write(b"x" * 10)
        return roots

    monkeypatch.setattr(bs, "_scan_car", scan)
    store = BlockStore()
    with pytest.raises(InputError, match="changed while it was being indexed"):
        store.add_car(str(car))
    assert not store.has(cid)


# --- end to end: a real `carget serve` process ------------------------------------------------

#: large enough that the import is still reading when the rewrite lands
E2E_BYTES = 96 * 1024 * 1024


def _read_so_far(pid: int, path: str) -> int | None:
    """How far process ``pid`` has read into ``path`` as far as /proc shows it: the file
    position of a descriptor on it (``read``), or the end of a mapped window of it (the
    importer maps regular files and its workers may ``pread``, which moves no position).
    None when the process does not have the file open or mapped."""
    seen: int | None = None
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != path:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                pos = int(info.readline().split()[1])  # "pos:\t<offset>"
        except (OSError, ValueError, IndexError):
            continue
        seen = max(seen or 0, pos)
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == path:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                seen = max(seen or 0, int(parts[2], 16) + hi - lo)
    return seen


def _wait_read_past(pid: int, path: str, offset: int, limit: float) -> bool:
    """True once process ``pid`` has read (or mapped) ``path`` past ``offset`` (polled in
    /proc, bounded by ``limit``); False if that never happens."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            got = _read_so_far(pid, path)
        except OSError:
            return False  # the process is gone
        if got is not None and got > offset:
            return True
        time.sleep(0.0005)
    return False


def test_serve_refuses_a_file_rewritten_during_its_import(tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    block = os.urandom(8 << 20)
    with open(f, "wb") as out:
        for i in range(E2E_BYTES // len(block)):
            out.write(i.to_bytes(8, "big") + block[8:])
    patch = os.urandom(4 << 20)  # made beforehand: the write itself must be quick
    # niced: on a busy machine the watcher below must still see the import mid-file
    proc = subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "carget", "serve",
                             "--listen", "127.0.0.1:0", "--cid-version=1", str(f)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # once the import has read past it, rewrite [1 MiB, 5 MiB) in place: bytes already
        # hashed, clear of the first and last leaf (the only ones the old check re-hashed)
        read = _wait_read_past(proc.pid, str(f), 6 << 20, 30)
        with open(f, "r+b") as w:
            w.seek(1 << 20)
            w.write(patch)
        assert read, "the import was not seen reading the file"
        assert proc.stdout is not None and proc.stderr is not None
        out = ""
        while line := proc.stdout.readline():  # to EOF (it exited) or until it serves
            out += line
            assert not line.startswith("serving on"), "served a file rewritten on import"
        assert proc.wait(30) == 1
        assert "changed while it was being imported" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_leaves_of_a_file_changed_after_import(tmp_path: Path) -> None:
    from carget.server.testing import serve_process

    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(6 * CHUNK))
    with serve_process(["--cid-version=1", f"--chunker=size-{CHUNK}", str(f)]) as served:
        url, root = served.url, served.root
        links = decode_node(httpx.get(f"{url}/ipfs/{root}?format=raw", timeout=10).content)
        leaves = [str(link.cid) for link in links.links]
        st = os.stat(f)
        with open(f, "r+b") as w:
            w.seek(2 * CHUNK)
            w.write(os.urandom(CHUNK))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored: ctime tells
        r = httpx.get(f"{url}/ipfs/{leaves[2]}?format=raw", timeout=10)
        assert r.status_code == 500 and "changed on disk" in r.text  # before the status line
        assert httpx.get(f"{url}/ipfs/{leaves[1]}?format=raw", timeout=10).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):  # cut, never a complete 200
            httpx.get(f"{url}/ipfs/{root}?format=car", timeout=10)
