"""`carget car verify` against hashlib SHA-256 over the same CAR bytes and against the
read-plus-hash limits (benchmarks/_limits.py), whole processes, same run.

Builds a CAR of 256 KiB raw leaves (1 GiB by default) in a temporary directory, then runs
as separate processes, alternating, ``--rounds`` times each, and reports medians:

* baseline: ``python -c`` reading the CAR with readinto into one reused 1 MiB buffer and
  feeding hashlib.sha256 (1.0x; one core);
* the limits: read-ahead + one hashing thread, and two threads each reading and hashing
  half of the CAR;
* ``carget car verify -j 1`` (one thread) and ``carget car verify`` (a thread per CPU).

Target (issue 16): >= 1.65x with both cores; peak RSS under 100 MiB, not growing with the
CAR's size (``os.wait4`` rusage).

    python benchmarks/bench_car_verify.py [--mib 1024] [--rounds 5] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ensure_bytecode
from _limits import (
    HASHLIB,
    READ_AHEAD,
    TWO_THREADS,
    alternate,
    limit_commands,
    load_average,
    median_seconds,
    warm,
)

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID, RAW

LEAF = 256 * 1024


def make_car(path: str, mib: int) -> int:
    """Write ``mib`` MiB of 256 KiB random raw leaves as a CARv1; return its size."""
    seed = os.urandom(LEAF)
    leaves = mib * 1024 * 1024 // LEAF
    with open(path, "wb") as f:
        first = None
        f.write(encode_header([CID.of(b"placeholder", RAW)]))
        for i in range(leaves):
            # distinct leaves, cheaply: a counter in front of a shared random block
            data = i.to_bytes(8, "big") + seed[8:]
            cid = CID(1, RAW, b"\x12\x20" + hashlib.sha256(data).digest())
            first = first or cid
            f.write(section_prefix(cid, len(data)))
            f.write(data)
    return os.path.getsize(path)


def main() -> None:
    ensure_bytecode()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="CAR payload size in MiB")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to put the CAR (default: a temp dir)")
    args = ap.parse_args()
    carget = [sys.executable, "-m", "carget", "car", "verify"]
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="carget-bench-", dir=args.dir) as tmp:
        car = os.path.join(tmp, "leaves.car")
        size = make_car(car, args.mib)
        warm(car)  # every contender reads from the page cache
        commands = limit_commands(car)
        limit_of = {HASHLIB: HASHLIB, READ_AHEAD: READ_AHEAD, TWO_THREADS: TWO_THREADS}
        for jobs in [1] + ([cores] if cores > 1 else []):
            name = f"carget car verify -j {jobs}"
            commands[name] = [*carget, "-j", str(jobs), car]
            limit_of[name] = HASHLIB if jobs == 1 else TWO_THREADS
        load_before = load_average()
        runs = alternate(commands, args.rounds)
    base = median_seconds(runs[HASHLIB])
    print(f"CAR: {size / 1e6:.0f} MB of {LEAF // 1024} KiB raw leaves, medians of "
          f"{args.rounds} alternating rounds, whole processes, {cores} CPUs "
          f"(load {load_before} -> {load_average()})")
    print(f"{'':40} {'s':>7} {'MB/s':>6} {'x hashlib':>9} {'x limit':>8} {'RSS MiB':>8}")
    for name, rs in runs.items():
        secs = median_seconds(rs)
        limit = median_seconds(runs[limit_of[name]])
        rss = max(r.max_rss_mib for r in rs)
        print(f"{name:40} {secs:7.3f} {size / secs / 1e6:6.0f} {base / secs:8.2f}x "
              f"{limit / secs:7.2f}x {rss:8.1f}")


if __name__ == "__main__":
    main()
