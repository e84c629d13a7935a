"""`carget car verify` against hashlib SHA-256 over the same CAR bytes, whole processes,
same run.

Builds a CAR of 256 KiB raw leaves (1 GiB by default) in a temporary directory, then runs
as separate processes, alternating, ``--rounds`` times each:

* baseline: ``python -c`` reading the CAR with readinto into one reused 1 MiB buffer and
  feeding hashlib.sha256 (the hashing limit; one core);
* ``carget car verify -j 1`` (one hashing thread) and ``carget car verify`` (a thread per
  CPU, hashing off the parsing thread).

Prints MB/s (best of the rounds), the ratio to the baseline, and each process's peak RSS
(``os.wait4`` rusage), which must not grow with the CAR's size.

    python benchmarks/bench_car_verify.py [--mib 1024] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID, RAW

LEAF = 256 * 1024

HASHLIB = (
    "import hashlib,sys\n"
    "h=hashlib.sha256(); buf=bytearray(1<<20); mv=memoryview(buf)\n"
    "with open(sys.argv[1],'rb',buffering=0) as f:\n"
    "    while n:=f.readinto(buf): h.update(mv[:n])\n"
    "print(h.hexdigest())\n"
)


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


def timed(argv: list[str]) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in KiB) of one whole process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return dt, proc.returncode, usage.ru_maxrss


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import ensure_bytecode

    ensure_bytecode()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="CAR payload size in MiB")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    carget = [sys.executable, "-m", "carget", "car", "verify"]
    runs = {
        "hashlib sha256 (1 core)": [sys.executable, "-c", HASHLIB],
        "carget car verify -j 1": [*carget, "-j", "1"],
        f"carget car verify -j {os.cpu_count()}": carget,
    }
    with tempfile.TemporaryDirectory(prefix="carget-bench-") as tmp:
        car = os.path.join(tmp, "leaves.car")
        size = make_car(car, args.mib)
        # warm the page cache so every contender reads from memory
        subprocess.run([sys.executable, "-c", HASHLIB, car], stdout=subprocess.DEVNULL,
                       check=True)
        best: dict[str, tuple[float, int]] = {}
        for _ in range(args.rounds):
            for name, argv in runs.items():
                dt, rc, rss = timed([*argv, car])
                if rc != 0:
                    raise SystemExit(f"{name} failed with exit code {rc}")
                if name not in best or dt < best[name][0]:
                    best[name] = (dt, max(rss, best.get(name, (0, 0))[1]))
    base = best["hashlib sha256 (1 core)"][0]
    print(f"CAR: {size / 1e6:.0f} MB of {LEAF // 1024} KiB raw leaves, best of {args.rounds}, "
          f"whole processes, {os.cpu_count()} CPUs")
    for name, (dt, rss) in best.items():
        print(f"{name:28s} {size / dt / 1e6:8.0f} MB/s  {base / dt:5.2f}x hashlib  "
              f"peak RSS {rss / 1024:6.1f} MiB")


if __name__ == "__main__":
    main()
