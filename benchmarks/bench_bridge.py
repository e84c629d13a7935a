"""The bridge on loopback: a file fetched through ``carget serve --upstream`` by curl
(first time: fetched, verified, cached and sent; second time: sent from the cache with
``sendfile``), against hashlib's SHA-256 of the same bytes (same run).

Steps, all on 127.0.0.1:

1. make a file of random bytes (page-cached) and time hashlib SHA-256 over it;
2. an origin: ``carget serve --cid-version 1 FILE`` (256 KiB raw leaves);
3. the bridge: ``carget serve --upstream ORIGIN --cache-dir TMP`` with an empty cache;
4. ``curl -o /dev/null BRIDGE/ipfs/ROOT`` once (bridged; with the bridge's CPU seconds for
   it, which load on the machine moves less than its speed), then, after ``sync``,
   ``--rounds`` more times (cached; best of them), then ``--clients`` at once from the
   cache; the bridge's peak RSS at the end.

    python benchmarks/bench_bridge.py [--mib 512] [--rounds 3] [--clients 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ensure_bytecode, served_file
from bench_serve import curl_many, curl_once

from carget.server.testing import serve_process


def peak_rss(pid: int) -> int:
    """A process's peak resident set in KiB (Linux: VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """A process's user and system CPU seconds so far (Linux: /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> None:
    ensure_bytecode()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is required")
    with tempfile.TemporaryDirectory(prefix="carget-bench-bridge-") as tmp:
        data, base = served_file(tmp, args.mib)
        with serve_process(["--cid-version", "1", data]) as origin, \
                serve_process(["--upstream", origin.url, "--cache-dir",
                               os.path.join(tmp, "cache"), "--cache-size", "64GiB"]) as bridge:
            root = next(iter(origin.added.values()))
            url = f"{bridge.url}/ipfs/{root}"
            user0, sys0 = cpu_seconds(bridge.proc.pid)
            t0 = time.perf_counter()
            size, _ = curl_once(url)
            secs = time.perf_counter() - t0
            user1, sys1 = cpu_seconds(bridge.proc.pid)
            if size != args.mib << 20:
                raise SystemExit(f"bridged answer was {size} bytes")
            mbs = size / secs / 1e6
            label = "bridged (fetched, verified, cached)"
            print(f"{label:<38} {mbs:8.0f} MB/s  {mbs / base:5.2f}x  (bridge CPU: "
                  f"{user1 - user0:.2f} s user, {sys1 - sys0:.2f} s system)")
            # the cache's files were just written: let writeback finish first, as it has
            # when the same file is asked for again later (sending from pages being
            # written back ran at a third of the speed here)
            os.sync()
            size, secs = min((curl_once(url) for _ in range(args.rounds)), key=lambda r: r[1])
            mbs = size / secs / 1e6
            print(f"{'cached (sendfile)':<38} {mbs:8.0f} MB/s  {mbs / base:5.2f}x")
            total, wall = curl_many(url, args.clients)
            agg = total / wall / 1e6
            print(f"{f'cached, {args.clients} clients at once':<38} {agg:8.0f} MB/s  "
                  f"{agg / base:5.2f}x")
            print(f"bridge peak RSS: {peak_rss(bridge.proc.pid) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
