"""`carget add -r -Q` on directory trees against hashlib's SHA-256 of the same files, both
as whole processes in the same run (start-up included), alternating, medians of the
rounds. Two trees (issue 5; target for the small files, issue 16: >= 0.7x):

* many small files: 10,000 files of 1-8 KiB in 100 directories (per-file overhead);
* a few large files: 3 files of 64 MiB (hashing throughput through the tree path).

The baseline walks the same tree in sorted order and hashes every file with hashlib
(open, 1 MiB unbuffered reads, sha256), so both sides pay for opening each file.

    python benchmarks/bench_add_tree.py [--files 10000] [--large-mib 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import Run, ensure_bytecode, make_file
from _limits import alternate, load_average, median_seconds

#: hashlib over every file of a tree, as one process (the same-run baseline)
HASHLIB_TREE = """
import hashlib, os, sys
buf = bytearray(1 << 20)
mv = memoryview(buf)
n = 0
for top, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for name in sorted(files):
        h = hashlib.sha256()
        with open(os.path.join(top, name), 'rb', buffering=0) as f:
            while k := f.readinto(buf):
                h.update(mv[:k])
        n += 1
print(n)
"""


def small_tree(root: str, files: int) -> int:
    """``files`` files of 1-8 KiB spread over 100 directories; returns the byte count."""
    rng = random.Random(5)
    total = 0
    per_dir = max(1, files // 100)
    for i in range(files):
        d = os.path.join(root, f"dir-{i // per_dir:03d}")
        os.makedirs(d, exist_ok=True)
        size = rng.randint(1024, 8192)
        with open(os.path.join(d, f"file-{i:05d}.txt"), "wb") as f:
            f.write(rng.randbytes(size))
        total += size
    return total


def large_tree(root: str, count: int, mib: int) -> int:
    os.makedirs(root, exist_ok=True)
    for i in range(count):
        make_file(os.path.join(root, f"large-{i}.bin"), mib * 1024 * 1024)
    return count * mib * 1024 * 1024


def row(name: str, runs: list[Run], files: int, size: int, base: float) -> dict[str, object]:
    secs = median_seconds(runs)
    return {
        "name": name,
        "seconds": round(secs, 3),
        "files_per_s": round(files / secs),
        "mb_per_s": round(size / secs / 1e6, 1),
        "ratio_to_hashlib": round(base / secs, 3),
        "max_rss_mib": round(max(r.max_rss_mib for r in runs), 1),
    }


def main() -> None:
    ensure_bytecode()
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--large-count", type=int, default=3)
    ap.add_argument("--large-mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to build the trees (default: temp)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    carget = [sys.executable, "-m", "carget"]  # not a shim in front of the script
    tmp = tempfile.mkdtemp(prefix="carget-bench-tree-", dir=args.dir)
    results = []
    try:
        trees = [
            ("small", os.path.join(tmp, "small"), args.files,
             lambda p: small_tree(p, args.files)),
            ("large", os.path.join(tmp, "large"), args.large_count,
             lambda p: large_tree(p, args.large_count, args.large_mib)),
        ]
        cores = len(os.sched_getaffinity(0))
        for label, path, files, build in trees:
            size = build(path)
            alternate({"warm": [sys.executable, "-c", HASHLIB_TREE, path]}, 1)
            base_name = f"{label}: hashlib sha256 (1 core)"
            commands = {base_name: [sys.executable, "-c", HASHLIB_TREE, path]}
            for jobs in [1] + ([cores] if cores > 1 else []):
                commands[f"{label}: carget add -r -Q --jobs {jobs}"] = [
                    *carget, "add", "-r", "-Q", "--jobs", str(jobs), path]
            runs = alternate(commands, args.rounds)
            base = median_seconds(runs[base_name])
            for name, rs in runs.items():
                results.append(row(name, rs, files, size, base))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"medians of {args.rounds} alternating rounds, whole processes (load "
          f"{load_average()})")
    print(f"{'benchmark':44} {'s':>8} {'files/s':>9} {'MB/s':>8} {'x hashlib':>9} {'RSS MiB':>8}")
    for r in results:
        print(f"{r['name']:44} {r['seconds']:>8} {r['files_per_s']:>9} {r['mb_per_s']:>8} "
              f"{r['ratio_to_hashlib']:>9} {r['max_rss_mib']:>8}")


if __name__ == "__main__":
    main()
