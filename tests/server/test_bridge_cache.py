"""The bridge's disk cache in pack files, end to end: a bridged file makes a pack, not a
file per block; a `carget serve --upstream` killed with SIGKILL in mid-fetch (plus a torn
index record, junk after its last block and a leaf zeroed in part) starts again on the
same cache, answers from what the dead process left, and gives the whole file, right."""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import sys
import urllib.request
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fetcher"))

from dagstore import DagStore
from faultgw import Fault, fault_gateway

from carget.cid import RAW
from carget.server import serve
from carget.server._packindex import INDEX_MAGIC, encode_record, parse_records
from carget.server.blocks import Layers
from carget.server.cache import DiskCache
from carget.server.store import BlockStore
from carget.server.upstream import Upstream
from carget.unixfs.node import decode_unixfs


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, resp.read()


async def test_a_bridged_file_goes_into_one_pack_not_a_file_per_block(tmp_path: Path) -> None:
    store = DagStore()
    data = random.Random(11).randbytes(4 << 20)
    root = store.add_bytes(data, cid_version=1, chunker="size-262144")
    assert len(store.blocks) == 17  # 16 leaves and their root
    cache = DiskCache(str(tmp_path / "cache"))
    upstream = Upstream([], cache)
    cache.filler = upstream
    async with fault_gateway(store) as gw, trio.open_nursery() as nursery:
        upstream.opts.gateways = [gw.url]
        await nursery.start(upstream.run)
        port = await nursery.start(partial(serve, Layers([BlockStore(), cache]),
                                           "127.0.0.1", 0, waiter=cache))
        got = await trio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/ipfs/{root}")
        assert got == (200, data)
        nursery.cancel_scope.cancel()
    files = [p for p in (tmp_path / "cache").rglob("*") if not p.is_dir()]
    assert sorted(p.suffix for p in files) == [".idx", ".pack"]


def _bridge(upstream: str, cache: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "carget", "serve", "--listen",
                             "127.0.0.1:0", "--upstream", upstream, "--cache-dir", str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("serving on "):
            return proc, line.split()[-1]
    proc.kill()
    raise AssertionError("the bridge did not start")


def _cut_get(url: str) -> bytes:
    """What a client got before the answer was cut (a killed server)."""
    got = b""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(65536):
                got += chunk
    except (http.client.IncompleteRead, ConnectionError) as exc:
        if isinstance(exc, http.client.IncompleteRead):
            got += exc.partial
    return got


async def test_a_bridge_killed_in_mid_fetch_starts_again_on_its_cache(tmp_path: Path) -> None:
    store = DagStore()
    data = random.Random(12).randbytes(4 << 20)
    root = store.add_bytes(data, cid_version=1, chunker="size-65536")
    node = decode_unixfs(root, store.blocks[root])
    leaves = [link.cid for link in node.links]
    assert len(leaves) == 64 and all(c.codec == RAW for c in leaves)
    cache = tmp_path / "cache"
    # a slow upstream, so that the kill lands in the middle of the fetch
    async with fault_gateway(store, Fault("drip", drip_size=16384, drip_delay=0.01)) as gw:
        proc, url = await trio.to_thread.run_sync(_bridge, gw.url, cache)
        try:
            async with trio.open_nursery() as nursery:
                first: list[bytes] = []

                async def client() -> None:
                    first.append(await trio.to_thread.run_sync(_cut_get, f"{url}/ipfs/{root}"))

                nursery.start_soon(client)
                with trio.fail_after(60):
                    while sum(p.stat().st_size for p in cache.glob("packs/*.pack")) < 1 << 20:
                        await trio.sleep(0.005)
                proc.send_signal(signal.SIGKILL)
                await trio.to_thread.run_sync(proc.wait)
        finally:
            proc.kill()
            proc.wait()
        assert first and len(first[0]) < len(data)  # the client saw the answer cut
        assert first[0] == data[: len(first[0])]
        (pack,) = cache.glob("packs/*.pack")
        index = pack.with_suffix(".idx")
        records, _, _ = parse_records(index.read_bytes()[len(INDEX_MAGIC):], 2 << 20)
        where = {r.multihash: r.offset for r in records}
        cached = 0  # the leaves from the start of the file the dead process indexed
        while cached < len(leaves) and leaves[cached].multihash in where:
            cached += 1
        assert root.multihash in where and 2 <= cached < len(leaves)
        # what a kill in mid-append leaves, on top of what this one did
        with open(index, "ab") as f:
            f.write(encode_record(leaves[-1].multihash, pack.stat().st_size, 65536)[:20])
        with open(pack, "ab") as f:
            f.write(b"\xff" * 1000)
        # and a leaf whose bytes did not reach the disk whole (a power cut)
        with open(pack, "r+b") as f:
            f.seek(where[leaves[cached - 1].multihash] + 100)
            f.write(b"\0" * 100)
        asked = len(gw.log)
        proc, url = await trio.to_thread.run_sync(_bridge, gw.url, cache)
        try:
            end = (cached - 1) * 65536 - 1
            status, body = await trio.to_thread.run_sync(
                _get, f"{url}/ipfs/{root}?filename=f.bin", {"Range": f"bytes=0-{end}"})
            assert (status, body) == (206, data[: end + 1])
            assert len(gw.log) == asked  # from the dead process's pack alone
            # the damaged leaf is hashed before its first use, dropped and fetched again
            assert await trio.to_thread.run_sync(_get, f"{url}/ipfs/{root}") == (200, data)
            assert len(gw.log) > asked
        finally:
            proc.terminate()
            await trio.to_thread.run_sync(proc.wait)
    # the dead process's pack stays, with what the new one added beside it
    assert pack.exists() and len(list(cache.glob("packs/*.pack"))) == 2
    assert os.path.getsize(index) > len(INDEX_MAGIC)
