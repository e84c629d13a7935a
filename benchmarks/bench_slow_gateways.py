"""Splitting across slow gateways: ``get`` and ``cat`` from one, then two, loopback
gateways that each send at most ``--kib-per-tick`` KiB every 10 ms per connection (the
tests' fault-injecting gateway in its "drip" mode), so the gateways' speed, not the CPU,
bounds the fetch, as with public gateways over the Internet.

    python benchmarks/bench_slow_gateways.py [--mib 16] [--kib-per-tick 16]

``get`` opens a gateway's second connection only once its first stream has proved slow
(after a second), and ``cat`` from one gateway splits only then: a file this small pays
that second at a larger share than a VM image does.

On a loopback gateway that is not throttled, one stream is CPU-bound and splitting cannot
help (see bench_fetch.py); this shows what splitting is for.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "tests", "fetcher"), os.path.join(HERE, "..", "tests")]

import trio  # noqa: E402
from dagstore import DagStore  # noqa: E402
from faultgw import Fault, fault_gateway  # noqa: E402

from carget.fetcher import FetchOptions  # noqa: E402
from carget.fetcher.cat import run_cat  # noqa: E402
from carget.fetcher.get import run_get  # noqa: E402


async def main(mib: int, kib: int) -> None:
    data = os.urandom(mib << 20)
    store = DagStore()
    cid = str(store.add_bytes(data, cid_version=1, chunker="size-262144"))
    slow = Fault("drip", only_scope="entity", drip_size=kib << 10, drip_delay=0.01)
    cap = (kib << 10) / 0.01 / 1e6
    print(f"{mib} MiB, each connection capped at ~{cap:.1f} MB/s")
    async with fault_gateway(store, slow) as a, fault_gateway(store, slow) as b:
        for what in ("get", "cat"):
            for gws in ([a.url], [a.url, b.url]):
                opts = FetchOptions(gateways=gws, unit_bytes=1 << 20)
                with tempfile.TemporaryDirectory() as tmp:
                    t = time.perf_counter()
                    if what == "get":
                        await run_get(cid, os.path.join(tmp, "out"), opts)
                        ok = open(os.path.join(tmp, "out"), "rb").read() == data
                    else:
                        buf = io.BytesIO()
                        await run_cat(cid, opts, buf)
                        ok = buf.getvalue() == data
                    dt = time.perf_counter() - t
                assert ok
                print(f"carget {what}, {len(gws)} gateway(s) x 2 connections: "
                      f"{dt:6.2f} s  {len(data) / dt / 1e6:6.1f} MB/s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--kib-per-tick", type=int, default=16)
    args = ap.parse_args()
    trio.run(main, args.mib, args.kib_per_tick)
