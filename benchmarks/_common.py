"""Shared helpers for the benchmarks: whole-process timing with per-process peak RSS, and
the hashlib SHA-256 baseline every figure is divided by (measured in the same run)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

#: the baseline: hashlib's SHA-256 over the file, 1 MiB unbuffered reads, as a process
HASHLIB_SCRIPT = """
import hashlib, sys
h = hashlib.sha256()
buf = bytearray(1 << 20)
mv = memoryview(buf)
with open(sys.argv[1], 'rb', buffering=0) as f:
    while n := f.readinto(buf):
        h.update(mv[:n])
print(h.hexdigest())
"""


@dataclass
class Run:
    seconds: float
    max_rss_mib: float
    stdout: bytes
    #: the process's own CPU time (user + system, wait4), whatever the other processes
    #: on the same cores did meanwhile
    cpu_seconds: float = 0.0


def ensure_bytecode() -> None:
    """Compile carget's modules to bytecode before timing whole processes, as an installed
    package is: a checkout whose .pyc files are stale (or never written, e.g. with
    PYTHONDONTWRITEBYTECODE=1 set) would otherwise compile every changed module at every
    start, tens of milliseconds that no user pays."""
    import compileall

    import carget

    compileall.compile_dir(os.path.dirname(carget.__file__), quiet=1)


def run_process(argv: list[str], stdin: int | None = None) -> Run:
    """Run ``argv`` to completion; wall time and that process's own peak RSS (wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=stdin)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return Run(elapsed, usage.ru_maxrss / 1024, out, usage.ru_utime + usage.ru_stime)


def report(name: str, size: int, runs: list[Run], base: float, extra: str = "",
           cpu: bool = True) -> float:
    """Print the median run's rate and ratio to ``base`` (hashlib's MB/s), the range over
    all rounds, the median CPU seconds of the process and the highest peak RSS; return
    the median ratio."""
    import statistics

    ratios = sorted(size / r.seconds / 1e6 / base for r in runs)
    med = statistics.median(ratios)
    rss = max(r.max_rss_mib for r in runs)
    cpus = f"  CPU {statistics.median(r.cpu_seconds for r in runs):5.2f} s" if cpu else ""
    print(f"{name:<52} {med * base:7.0f} MB/s  {med:5.2f}x  (range {ratios[0]:.2f}-"
          f"{ratios[-1]:.2f}x, {len(runs)} runs){cpus}  peak RSS {rss:6.1f} MiB{extra}",
          flush=True)
    return med


def best_of(n: int, argv: list[str]) -> Run:
    runs = [run_process(argv) for _ in range(n)]
    return min(runs, key=lambda r: r.seconds)


def hashlib_baseline(path: str, repeat: int = 3) -> Run:
    return best_of(repeat, [sys.executable, "-c", HASHLIB_SCRIPT, path])


def make_file(path: str, size: int) -> None:
    """Incompressible bytes (carget.bench's deterministic sample), written once, by a
    child process: this one must stay small, since the children it times inherit its peak
    RSS as their floor."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    code = "import sys; from carget.bench import make_sample as m; m(sys.argv[1], int(sys.argv[2]))"
    subprocess.run([sys.executable, "-c", code, path, str(size)], check=True)


def warm(path: str) -> None:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


def served_file(tmp: str, mib: int) -> tuple[str, float]:
    """A ``mib`` MiB file of random bytes in ``tmp``, in the page cache, and hashlib's
    SHA-256 rate over it in MB/s (the serving benchmarks' baseline, printed)."""
    data = os.path.join(tmp, "data.bin")
    make_file(data, mib << 20)
    warm(data)
    base = (mib << 20) / hashlib_baseline(data).seconds / 1e6
    print(f"{mib} MiB file, 256 KiB raw leaves (CIDv1); "
          f"ratios are to hashlib SHA-256 = {base:.0f} MB/s (same run)")
    return data, base
