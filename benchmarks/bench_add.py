"""`carget add --cid-version=1 -Q` on a large file against hashlib's SHA-256 of the same
file and against the read-plus-hash limits (benchmarks/_limits.py), all as whole processes
in the same run, alternating, medians of the rounds (start-up included: lima runs the tool
once per file). Targets (issue 16), for 1 GiB: >= 1.0x with --jobs 1 (limit: read-ahead
plus one hashing thread), >= 1.65x with both cores (limit: two threads each reading and
hashing half the file); peak RSS under 64 MiB.

    python benchmarks/bench_add.py [--size-mib 1024] [--rounds 5] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import ensure_bytecode, make_file
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


def main() -> None:
    ensure_bytecode()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to put the test file (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # what the installed console script runs, minus any shim in front of it (pyenv puts a
    # bash script there, which would charge carget for a second interpreter lookup)
    carget = [sys.executable, "-c", "from carget.cli import main; main()"]
    tmp = tempfile.mkdtemp(prefix="carget-bench-", dir=args.dir)
    path = os.path.join(tmp, "data.bin")
    try:
        size = args.size_mib * 1024 * 1024
        make_file(path, size)
        warm(path)
        commands = limit_commands(path)
        cores = len(os.sched_getaffinity(0))
        # (row name, the limit it is measured against)
        limit_of = {HASHLIB: HASHLIB, READ_AHEAD: READ_AHEAD, TWO_THREADS: TWO_THREADS}
        for jobs in [1] + ([cores] if cores > 1 else []):
            name = f"carget add --cid-version=1 -Q --jobs {jobs}"
            commands[name] = [*carget, "add", "--cid-version=1", "-Q", f"--jobs={jobs}", path]
            limit_of[name] = READ_AHEAD if jobs == 1 else TWO_THREADS
        load_before = load_average()
        runs = alternate(commands, args.rounds)
        base = median_seconds(runs[HASHLIB])
        result = []
        for name, rs in runs.items():
            secs = median_seconds(rs)
            limit = median_seconds(runs[limit_of[name]])
            result.append(
                {
                    "what": name,
                    "seconds": round(secs, 3),
                    "MB/s": round(size / secs / 1e6),
                    "ratio_to_hashlib": round(base / secs, 3),
                    "ratio_to_limit": round(limit / secs, 3),
                    "peak_rss_mib": round(max(r.max_rss_mib for r in rs), 1),
                }
            )
        if args.json:
            print(json.dumps({"size_bytes": size, "rounds": args.rounds, "rows": result},
                             indent=2))
        else:
            print(f"{args.size_mib} MiB, medians of {args.rounds} alternating rounds, whole "
                  f"processes, {cores} CPUs (load {load_before} -> {load_average()})")
            print(f"  {'':48} {'s':>7} {'MB/s':>6} {'x hashlib':>9} {'x limit':>8} "
                  f"{'RSS MiB':>8}")
            for r in result:
                print(
                    f"  {r['what']:<48} {r['seconds']:7.3f} {r['MB/s']:6} "
                    f"{r['ratio_to_hashlib']:8.2f}x {r['ratio_to_limit']:7.2f}x "
                    f"{r['peak_rss_mib']:8.1f}"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
