"""``carget get`` from kubo's own gateway against ``curl`` of the same CAR, side by side in
one run, each as a ratio to hashlib's SHA-256 of the same bytes (same run).

A file of random bytes is added to kubo (``ipfs add --cid-version=1``: 256 KiB raw
leaves, as lima's templates add images), and ``ipfs daemon --offline`` serves it on
127.0.0.1. Then, in alternating rounds, every client a separate process:

* ``curl`` of the CAR (``/ipfs/CID?format=car``, no verification: the bytes kubo sends);
* ``carget get`` with ``--streams 1`` and ``--streams 2`` (every block verified, the
  file written to disk), whole processes.

kubo runs on the same cores as the client, as any loopback gateway here does.

The whole benchmark runs inside a new network namespace holding only loopback
(``unshare -n``, so it needs root and ``ip``): kubo never sees a network. kubo is the
binary tests/interop/build_peers.py builds (``--ipfs`` names another).

    python benchmarks/bench_kubo_gateway.py [--mib 256] [--rounds 5] [--ipfs PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "interop"))
from _common import Run, ensure_bytecode, hashlib_baseline, make_file, report, run_process, warm
from build_peers import Paths, peers_dir

#: seconds kubo may take to start
READY_WITHIN = 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ipfs", default=str(Paths(peers_dir()).kubo),
                    help="kubo's ipfs binary (default: the one build_peers.py builds)")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not os.access(args.ipfs, os.X_OK):
        raise SystemExit(f"no kubo at {args.ipfs}: run `python3 tests/interop/build_peers.py`")
    if not args.inside:
        if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
            raise SystemExit("needs root, unshare and ip: kubo runs only in `unshare -n`")
        argv = [sys.executable, os.path.abspath(__file__), "--inside", "--mib", str(args.mib),
                "--rounds", str(args.rounds), "--ipfs", args.ipfs]
        script = 'ip link set lo up && exec "$@"'
        raise SystemExit(subprocess.call(["unshare", "-n", "sh", "-c", script, "sh", *argv]))
    ensure_bytecode()
    size = args.mib << 20
    with tempfile.TemporaryDirectory(prefix="carget-bench-kubo-") as tmp:
        src = os.path.join(tmp, "src.bin")
        make_file(src, size)
        env = {**os.environ, "IPFS_PATH": os.path.join(tmp, "repo")}
        subprocess.run([args.ipfs, "init", "--profile=test"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        cid = subprocess.run([args.ipfs, "add", "-Q", "--cid-version=1", src], env=env,
                             check=True, capture_output=True, text=True).stdout.strip()
        warm(src)
        base = size / hashlib_baseline(src).seconds / 1e6
        print(f"{'hashlib sha256 (process, 1 MiB reads, best of 3)':<52} {base:7.0f} MB/s  "
              f"1.00x", flush=True)
        said = os.path.join(tmp, "daemon.out")
        with open(said, "w") as log:
            daemon = subprocess.Popen([args.ipfs, "daemon", "--offline"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
        try:
            gateway = wait_for_gateway(said, daemon)
            measure(args, size, base, tmp, cid, gateway)
        finally:
            daemon.terminate()
            daemon.wait()


def wait_for_gateway(path: str, daemon: subprocess.Popen[bytes]) -> str:
    """kubo's gateway URL, once the daemon (its output going to ``path``) says it is
    ready."""
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        with open(path) as f:
            text = f.read()
        if "Daemon is ready" in text:
            m = re.search(r"^Gateway server listening on /ip4/([0-9.]+)/tcp/(\d+)", text, re.M)
            if m is None:
                raise SystemExit(f"kubo named no gateway address:\n{text}")
            return f"http://{m[1]}:{m[2]}"
        if daemon.poll() is not None:
            raise SystemExit(f"kubo exited {daemon.returncode}:\n{text}")
        time.sleep(0.2)
    raise SystemExit(f"kubo was not ready within {READY_WITHIN:g} s")


def measure(args: argparse.Namespace, size: int, base: float, tmp: str, cid: str,
            gateway: str) -> None:
    out = os.path.join(tmp, "out.bin")
    car_url = f"{gateway}/ipfs/{cid}?format=car"
    curls: list[Run] = []
    gets: dict[str, list[Run]] = {"1": [], "2": []}
    for _ in range(args.rounds):  # rounds interleave the clients: drift hits them alike
        curls.append(run_process(["curl", "-sS", "-o", "/dev/null", "-H",
                                  "Accept: application/vnd.ipld.car", car_url]))
        for streams, runs in gets.items():
            if os.path.exists(out):
                os.unlink(out)
            runs.append(run_process([sys.executable, "-m", "carget", "get", cid, "-o", out,
                                     "-g", gateway, "--progress=false", "-q",
                                     "--streams", streams]))
            if os.path.getsize(out) != size:
                raise SystemExit(f"carget get wrote {os.path.getsize(out)} bytes, not {size}")
    print(f"-- kubo {os.path.basename(os.path.dirname(args.ipfs))} gateway, "
          f"{args.mib} MiB, ipfs add --cid-version=1", flush=True)
    report("curl of the CAR (?format=car), no verification", size, curls, base)
    for streams, runs in gets.items():
        report(f"carget get --streams {streams}", size, runs, base)


if __name__ == "__main__":
    main()
