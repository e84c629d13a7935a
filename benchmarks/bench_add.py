"""`carget add --cid-version=1 -Q` on a large file against hashlib's SHA-256 of the same
file, both as whole processes in the same run (start-up included: lima runs the tool once
per file). Targets (issue 2): >= 0.95x with --jobs 1, >= 1.5x with both cores, peak RSS
under 64 MiB for 1 GiB.

    python benchmarks/bench_add.py [--size-mib 1024] [--repeat 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import best_of, ensure_bytecode, hashlib_baseline, make_file, warm


def main() -> None:
    ensure_bytecode()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
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
        base = hashlib_baseline(path, args.repeat)
        rows = [("hashlib sha256 (1 core)", base)]
        cores = os.cpu_count() or 1
        jobs_list = [1] + ([cores] if cores > 1 else [])
        for jobs in jobs_list:
            run = best_of(
                args.repeat, [*carget, "add", "--cid-version=1", "-Q", f"--jobs={jobs}", path]
            )
            rows.append((f"carget add --cid-version=1 -Q --jobs {jobs}", run))
        if shutil.which("taskset") and cores > 1:
            # the same --jobs 1 run held to one core: what a single-CPU machine would see
            run = best_of(
                args.repeat,
                ["taskset", "-c", "0", *carget, "add", "--cid-version=1", "-Q", "--jobs=1", path],
            )
            rows.append(("carget ... --jobs 1 pinned to one core (taskset)", run))
        result = []
        for name, run in rows:
            mbs = size / run.seconds / 1e6
            ratio = base.seconds / run.seconds
            result.append(
                {
                    "what": name,
                    "seconds": round(run.seconds, 3),
                    "MB/s": round(mbs),
                    "ratio_to_hashlib": round(ratio, 3),
                    "peak_rss_mib": round(run.max_rss_mib, 1),
                }
            )
        if args.json:
            print(json.dumps({"size_bytes": size, "rows": result}, indent=2))
        else:
            print(f"{args.size_mib} MiB, best of {args.repeat}, whole processes")
            for r in result:
                print(
                    f"  {r['what']:<45} {r['seconds']:7.3f} s {r['MB/s']:6} MB/s "
                    f"{r['ratio_to_hashlib']:5.2f}x  peak RSS {r['peak_rss_mib']:6.1f} MiB"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
