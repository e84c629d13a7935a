"""Stalled CAR clients against a real ``carget serve`` process, and the peak memory it held.

Run as a script to measure (issue 12: "under 256 MiB with 600 stalled CAR clients"):

    python tests/server/stalled.py --clients 600

It imports a random file, starts ``carget serve`` on 127.0.0.1, opens ``--clients``
connections that each ask for the file's CAR with a tiny receive buffer and never read,
then fetches the same CAR in full as a normal client, and prints the server's peak RSS
(``VmHWM`` from /proc). The test suite calls :func:`stalled_run` with fewer clients.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import tempfile
import time
from dataclasses import dataclass

from carget.server.testing import serve_process

#: a CAR far larger than what the kernel buffers for one stalled socket
FILE_BYTES = 32 * 1024 * 1024
#: how long the stalled clients are given to reach their steady state before measuring
SETTLE_SECONDS = 3.0


@dataclass
class Outcome:
    base_rss_kib: int  # before any client connected
    peak_rss_kib: int
    rss_kib: int
    normal_status: int
    normal_bytes: int
    refused: int  # stalled connections answered 503 (connection limit)


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


def _fetch_all(host: str, port: int, target: str, limit: float) -> tuple[int, int]:
    """(status, body bytes) of one GET read to its end with ``Connection: close``."""
    with socket.create_connection((host, port), timeout=limit) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return int(head.split()[1]), len(body)


def stalled_run(clients: int, file_bytes: int = FILE_BYTES, settle: float = SETTLE_SECONDS
                ) -> Outcome:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < clients + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, clients + 256), hard))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(file_bytes))
        with serve_process(["--cid-version=1", path]) as served:
            proc, root = served.proc, served.root
            host, port = served.url.removeprefix("http://").split(":")
            target = f"/ipfs/{root}?format=car"
            req = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            base = _status_kib(proc.pid, "VmRSS")
            socks: list[socket.socket] = []
            try:
                for _ in range(clients):
                    s = socket.socket()
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.settimeout(10)
                    s.connect((host, int(port)))
                    s.sendall(req)
                    socks.append(s)
                time.sleep(settle)
                rss = _status_kib(proc.pid, "VmRSS")
                status, n = _fetch_all(host, int(port), target, 60)
                refused = 0
                for s in socks:
                    s.setblocking(False)
                    try:
                        if s.recv(12) == b"HTTP/1.1 503":
                            refused += 1
                    except (BlockingIOError, ConnectionError):
                        pass
                peak = _status_kib(proc.pid, "VmHWM")
            finally:
                for s in socks:
                    s.close()
            return Outcome(base, peak, rss, status, n, refused)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=600)
    ap.add_argument("--mib", type=int, default=FILE_BYTES >> 20)
    args = ap.parse_args()
    out = stalled_run(args.clients, args.mib << 20)
    print(f"{args.clients} stalled CAR clients of a {args.mib} MiB file: serve peak RSS "
          f"{out.peak_rss_kib / 1024:.1f} MiB (RSS {out.base_rss_kib / 1024:.1f} MiB before the "
          f"clients, {out.rss_kib / 1024:.1f} MiB while stalled); "
          f"normal client: {out.normal_status}, {out.normal_bytes} bytes; "
          f"{out.refused} stalled clients answered 503")


if __name__ == "__main__":
    main()
