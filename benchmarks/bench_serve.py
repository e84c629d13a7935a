"""``carget serve`` streaming a 512 MiB file as a CAR to curl on loopback, against hashlib's
SHA-256 of the same bytes (same run), with nginx serving the same CAR as a static file as
the ceiling.

Steps, all on 127.0.0.1:

1. make a 512 MiB file of random bytes (page-cached), and time hashlib SHA-256 over it in a
   separate process (the baseline every figure is divided by);
2. serve it with CIDv1 (256 KiB raw leaves, read back from the file with ``os.preadv`` when
   served) from a separate process: with the default rule (reads on worker threads while
   there are no more CAR streams than cores), then always on threads, then never;
3. ``curl -o /dev/null URL?format=car``: one client (best of ``--rounds``), then 16 at once
   (aggregate MB/s of CAR bytes over the wall time for all of them);
4. the same with nginx serving the downloaded CAR as a static file (sendfile), if nginx is
   installed.

    python benchmarks/bench_serve.py [--mib 512] [--clients 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ensure_bytecode, served_file

#: a gateway process; argv: FILE MODE ("auto", the default rule, or the most streams that
#: read on threads: 0 never, 999 always). Prints "<root> <port>" once serving.
SERVER = """
import sys, trio
from functools import partial
from carget.server.store import BlockStore
from carget.server import ServerLimits, serve
from carget.unixfs.options import resolve_options
store = BlockStore()
root = store.add_paths([sys.argv[1]], resolve_options(cid_version=1))[0]
mode = sys.argv[2]
limits = ServerLimits() if mode == "auto" else ServerLimits(thread_reads=int(mode))
async def main():
    async with trio.open_nursery() as n:
        port = await n.start(partial(serve, store, "127.0.0.1", 0, limits=limits))
        print(root, port, flush=True)
trio.run(main)
"""

NGINX_CONF = """
user root;
worker_processes auto;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ application/vnd.ipld.car car; }}
    server {{ listen 127.0.0.1:{port}; root {tmp}; }}
}}
"""


def curl_once(url: str, out: str = os.devnull) -> tuple[int, float]:
    t0 = time.perf_counter()
    res = subprocess.run(["curl", "-sf", "-o", out, "-w", "%{size_download}", url],
                         capture_output=True, check=True)
    return int(res.stdout), time.perf_counter() - t0


def curl_many(url: str, n: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sf", "-o", os.devnull, "-w", "%{size_download}", url],
                              stdout=subprocess.PIPE) for _ in range(n)]
    total = 0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"curl failed with {p.returncode}")
        total += int(out)
    return total, time.perf_counter() - t0


def measure(name: str, url: str, rounds: int, clients: int, base: float) -> None:
    one = [curl_once(url) for _ in range(rounds)]
    size, secs = min(one, key=lambda r: r[1])
    mbs = size / secs / 1e6
    total, wall = curl_many(url, clients)
    agg = total / wall / 1e6
    print(f"{name:<34} {mbs:8.0f} MB/s  {mbs / base:5.2f}x   "
          f"{clients} clients: {agg:8.0f} MB/s  {agg / base:5.2f}x")


def start_server(path: str, mode: str) -> tuple[subprocess.Popen[str], str, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, path, mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2:
        proc.kill()
        raise SystemExit("server did not start")
    print(f"  (import + index: {time.perf_counter() - t0:.1f} s)")
    return proc, line[0], line[1]


def main() -> None:
    ensure_bytecode()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is required")
    with tempfile.TemporaryDirectory(prefix="carget-bench-serve-") as tmp:
        data, base = served_file(tmp, args.mib)
        car = os.path.join(tmp, "data.car")
        modes = {"auto": "carget serve (default)", "999": "carget serve (reads on threads)",
                 "0": "carget serve (reads on event loop)"}
        for mode, label in modes.items():
            proc, root, port = start_server(data, mode)
            try:
                url = f"http://127.0.0.1:{port}/ipfs/{root}?format=car"
                if not os.path.exists(car):
                    curl_once(url, car)
                measure(label, url, args.rounds, args.clients, base)
            finally:
                proc.terminate()
                proc.wait(10)
        nginx = shutil.which("nginx")
        if nginx is None:
            print("nginx: not installed (apt-get install nginx-light), no ceiling measured")
            return
        port = 18000 + os.getpid() % 1000
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=tmp, port=port))
        ng = subprocess.Popen([nginx, "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            measure("nginx static CAR (sendfile)", f"http://127.0.0.1:{port}/data.car",
                    args.rounds, args.clients, base)
        finally:
            ng.terminate()
            ng.wait(10)


if __name__ == "__main__":
    main()
