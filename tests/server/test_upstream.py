"""The bridge: `carget serve --upstream URL` fetches what it does not hold from trustless
gateways (here the fault-injecting one), verified, into its cache, and answers plain
clients (curl, urllib) and trustless ones; a lying upstream is dropped or, alone, gets an
error status before any byte and a cut connection after."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fetcher"))

from dagstore import DagStore
from faultgw import Fault, FaultGateway, fault_gateway
from servehelp import car_cids, needs_curl, run_curl

from carget.cid import CID, RAW
from carget.server import serve
from carget.server.blocks import Layers
from carget.server.cache import DiskCache
from carget.server.store import BlockStore
from carget.server.testing import serve_process
from carget.server.upstream import Upstream
from carget.unixfs.node import decode_unixfs

CHUNK = 16384


def _content(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@asynccontextmanager
async def bridge(tmp: Path, *urls: str) -> AsyncIterator[tuple[str, Upstream, DiskCache]]:
    """A bridge (in this process) over an empty local store, filled from ``urls``."""
    cache = DiskCache(str(tmp / "cache"))
    upstream = Upstream(list(urls), cache)
    cache.filler = upstream
    async with trio.open_nursery() as nursery:
        await nursery.start(upstream.run)
        port = await nursery.start(partial(serve, Layers([BlockStore(), cache]),
                                           "127.0.0.1", 0, waiter=cache))
        try:
            yield f"http://127.0.0.1:{port}", upstream, cache
        finally:
            nursery.cancel_scope.cancel()



#: curl with room for a bridge that fetches before it answers
_curl = partial(run_curl, max_time=60)


def _car_requests(gw: FaultGateway) -> int:
    return sum(1 for e in gw.log if e.query.get("format") == "car")


@needs_curl
async def test_curl_gets_upstream_content_then_the_cache_serves_it(tmp_path: Path) -> None:
    store = DagStore()
    data = _content(1 << 20, seed=1)
    root = store.add_bytes(data, cid_version=1, chunker=f"size-{CHUNK}")
    async with fault_gateway(store) as gw, bridge(tmp_path, gw.url) as (url, _, cache):
        r = await trio.to_thread.run_sync(_curl, f"{url}/ipfs/{root}")
        assert r.returncode == 0 and r.stdout == data
        asked = _car_requests(gw)
        assert asked >= 1
        r = await trio.to_thread.run_sync(_curl, f"{url}/ipfs/{root}")
        assert r.stdout == data and _car_requests(gw) == asked  # from the cache alone
        r = await trio.to_thread.run_sync(_curl, "-r", "1000-1999", f"{url}/ipfs/{root}")
        assert r.stdout == data[1000:2000]
    assert cache.size(root) is not None


async def test_concurrent_requests_share_one_fetch(tmp_path: Path) -> None:
    store = DagStore()
    data = _content(1 << 20, seed=2)
    root = store.add_bytes(data, cid_version=1, chunker=f"size-{CHUNK}")

    def get(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=60) as resp:
            body: bytes = resp.read()
            return body

    async with fault_gateway(store, Fault("drip", drip_size=65536, drip_delay=0.01)) as gw, \
            bridge(tmp_path, gw.url) as (url, upstream, _):
        got: list[bytes] = []

        async def one() -> None:
            got.append(await trio.to_thread.run_sync(get, f"{url}/ipfs/{root}"))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one)
    assert got == [data] * 4
    # one fetch to plan (the root and the first bytes) and one for the body, for all four
    assert len(upstream.started) == 2, upstream.started


async def test_a_range_fetches_only_its_blocks(tmp_path: Path) -> None:
    store = DagStore()
    data = _content(1 << 20, seed=3)
    root = store.add_bytes(data, cid_version=1, chunker=f"size-{CHUNK}")
    async with fault_gateway(store) as gw, bridge(tmp_path, gw.url) as (url, _, cache):
        r = await trio.to_thread.run_sync(partial(
            httpx.get, f"{url}/ipfs/{root}?filename=x.bin",
            headers={"Range": "bytes=500000-520000"}, timeout=60))
        assert r.status_code == 206 and r.content == data[500000:520001]
        ranges = [e.query.get("entity-bytes") for e in gw.log if "entity-bytes" in e.query]
        assert "500000:520000" in ranges
    held = [c for c in store.blocks if c.codec == RAW and cache.size(c) is not None]
    assert 2 <= len(held) <= 4  # the range's leaves (and the first, read to plan)


async def test_a_lying_upstream_is_dropped_for_an_honest_one(tmp_path: Path) -> None:
    store = DagStore()
    data = _content(300_000, seed=4)
    root = store.add_bytes(data, cid_version=1, chunker=f"size-{CHUNK}")
    async with fault_gateway(store, Fault("flip", at=3)) as liar, \
            fault_gateway(store) as honest, \
            bridge(tmp_path, liar.url, honest.url) as (url, _, cache):
        r = await trio.to_thread.run_sync(partial(httpx.get, f"{url}/ipfs/{root}",
                                                  timeout=60))
        assert r.status_code == 200 and r.content == data
    for cid in store.blocks:  # whatever the cache kept is right
        got = cache.get(cid)
        assert got is None or got == store.blocks[cid]


@needs_curl
async def test_a_lying_upstream_alone_gives_a_status_or_a_cut_never_wrong_bytes(
        tmp_path: Path) -> None:
    store = DagStore()
    data = _content(600_000, seed=5)
    root = store.add_bytes(data, cid_version=1, chunker=f"size-{CHUNK}")
    # the root itself is bad: nothing can be planned, a status before any byte
    async with fault_gateway(store, Fault("flip", at=0)) as gw, \
            bridge(tmp_path / "a", gw.url) as (url, _, _):
        r = await trio.to_thread.run_sync(partial(httpx.get, f"{url}/ipfs/{root}",
                                                  timeout=60))
        assert r.status_code == 502, r.text
    # the first 1.5 MiB came (from an honest upstream, into the cache); the rest is only
    # to be had from a liar: the answer starts (its first write is all cached), then is
    # cut short where the lies begin
    data = _content(3 << 20, seed=5)
    root = store.add_bytes(data, cid_version=1, chunker=f"size-{CHUNK}")
    async with fault_gateway(store) as honest, fault_gateway(store, Fault("flip")) as liar, \
            bridge(tmp_path / "b", honest.url) as (url, upstream, _):
        r = await trio.to_thread.run_sync(_curl, "-r", "0-1500000", f"{url}/ipfs/{root}")
        assert r.stdout == data[:1500001]
        upstream.opts.gateways = [liar.url]
        r = await trio.to_thread.run_sync(_curl, "-o", "-", f"{url}/ipfs/{root}")
        assert r.returncode == 18, r.stderr  # curl: partial file
        assert 1 << 20 <= len(r.stdout) < len(data) and data.startswith(r.stdout)


async def test_trustless_answers_for_upstream_content(tmp_path: Path) -> None:
    store = DagStore()
    data = _content(200_000, seed=6)
    root = store.add_bytes(data, cid_version=1, chunker=f"size-{CHUNK}")
    async with fault_gateway(store) as gw, bridge(tmp_path, gw.url) as (url, _, _):
        r = await trio.to_thread.run_sync(partial(
            httpx.get, f"{url}/ipfs/{root}?format=car", timeout=60))
        assert r.status_code == 200
        cids = car_cids(r.content)
        assert cids[0] == str(root) and set(cids) == {str(c) for c in store.blocks}
        leaf = next(c for c in store.blocks if c.codec == RAW)
        r = await trio.to_thread.run_sync(partial(
            httpx.get, f"{url}/ipfs/{leaf}?format=raw", timeout=60))
        assert r.status_code == 200 and r.content == store.blocks[leaf]
        missing = CID.of(b"not anywhere", RAW)
        r = await trio.to_thread.run_sync(partial(
            httpx.get, f"{url}/ipfs/{missing}?format=raw", timeout=60))
        assert r.status_code in (404, 502)


def test_serve_command_with_upstream(tmp_path: Path) -> None:
    """`carget serve --upstream URL` (no local paths) as a process, `carget get` through it."""
    gw_store = tmp_path / "gw"
    gw_store.mkdir()
    src = gw_store / "f.bin"
    src.write_bytes(_content(400_000, seed=7))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    with serve_process(["--cid-version", "1", str(src)], env=env) as origin, \
            serve_process(["--upstream", origin.url], env=env) as bridge:
        cid = next(iter(origin.added.values()))
        out = tmp_path / "got.bin"
        r = subprocess.run([sys.executable, "-m", "carget", "get", "-g", bridge.url,
                            f"ipfs://{cid}", "-o", str(out)], capture_output=True,
                           text=True, timeout=120, env=env, check=False)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == src.read_bytes()
        with urllib.request.urlopen(f"{bridge.url}/ipfs/{cid}", timeout=60) as resp:
            assert resp.read() == src.read_bytes()
    assert list((tmp_path / "xdg" / "carget" / "packs").glob("*.pack"))  # the default cache


@pytest.mark.parametrize("sharded", [False, True], ids=["basic", "hamt"])
async def test_a_listing_fetches_the_directory_not_its_entries(tmp_path: Path,
                                                               sharded: bool) -> None:
    """A path answer for a directory needs its own blocks (a HAMT's shards), not what
    lies under it: a listing beside a 2 MiB file must not bring that file upstream; its
    index.html, once there, comes alone too."""
    site = tmp_path / "site"
    site.mkdir()
    big = _content(2 << 20, seed=7)
    (site / "big.bin").write_bytes(big)
    for i in range(3):
        (site / f"small-{i}.txt").write_bytes(b"x%d\n" % i)
    if sharded:  # past kubo's 256 KiB estimate for one directory block: a HAMT
        for i in range(2200):
            (site / (f"entry-{i:05d}-" + "n" * 110)).write_bytes(b"x")
    car = tmp_path / "site.car"
    out = subprocess.run([sys.executable, "-m", "carget", "add", "-r", "-Q", "--cid-version",
                          "1", "--car", str(car), str(site)], capture_output=True,
                         text=True, check=True)
    root = CID.parse(out.stdout.strip())
    store = DagStore()
    store.add_car(car)
    async with fault_gateway(store) as gw, bridge(tmp_path, gw.url) as (url, _, cache):
        r = await trio.to_thread.run_sync(partial(httpx.get, f"{url}/ipfs/{root}/",
                                                  timeout=60))
        assert r.status_code == 200 and "big.bin" in r.text and "small-2.txt" in r.text
        big_leaves = [c for c in store.blocks if c.codec == RAW and len(store.blocks[c]) > 1024]
        assert big_leaves and not any(cache.size(c) is not None for c in big_leaves)
        assert sum(e.sent for e in gw.log) < (1 << 20 if sharded else 64 << 10), gw.log
        if sharded:  # the shards came as one entity answer
            assert decode_unixfs(root, store.get(root)).kind == "hamt"
            assert "entity" in [e.query.get("dag-scope") for e in gw.log]
        r = await trio.to_thread.run_sync(partial(httpx.get, f"{url}/ipfs/{root}/big.bin",
                                                  timeout=60))
        assert r.status_code == 200 and r.content == big
    (site / "index.html").write_bytes(b"<p>hello</p>\n")
    out = subprocess.run([sys.executable, "-m", "carget", "add", "-r", "-Q", "--cid-version",
                          "1", "--car", str(car), str(site)], capture_output=True,
                         text=True, check=True)
    root = CID.parse(out.stdout.strip())
    store = DagStore()
    store.add_car(car)
    async with fault_gateway(store) as gw, bridge(tmp_path / "2", gw.url) as (url, _, cache):
        r = await trio.to_thread.run_sync(partial(httpx.get, f"{url}/ipfs/{root}/",
                                                  timeout=60))
        assert r.status_code == 200 and r.content == b"<p>hello</p>\n"
        assert sum(e.sent for e in gw.log) < (1 << 20 if sharded else 64 << 10), gw.log
