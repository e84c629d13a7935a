"""The limits a benchmark is measured against, and alternating rounds with medians.

Three plain-Python processes over the same file, each a floor that carget cannot beat by
doing less work (every byte must be read out of the page cache and hashed):

* ``hashlib``: one thread, 1 MiB reads, SHA-256 (the 1.0x every ratio is divided by);
* ``read-ahead``: one thread reads 1 MiB pieces while another hashes them (reading
  overlaps hashing: what one hashing thread can reach);
* ``two threads``: two threads each ``pread`` and hash half of the file (what two cores
  can reach; the hashes differ from the file's, the work is the same).

Contenders run alternately, round after round, and each is reported by its median, so a
burst of load from elsewhere on a shared machine hits every contender alike.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Sequence

from _common import HASHLIB_SCRIPT, Run, run_process

READ_AHEAD_SCRIPT = """
import hashlib, queue, sys, threading
q = queue.Queue(4)
free = queue.Queue()
for _ in range(6):
    free.put(bytearray(1 << 20))
h = hashlib.sha256()
def hasher():
    while (item := q.get()) is not None:
        buf, n = item
        h.update(memoryview(buf)[:n])
        free.put(buf)
t = threading.Thread(target=hasher)
t.start()
with open(sys.argv[1], 'rb', buffering=0) as f:
    while True:
        buf = free.get()
        n = f.readinto(buf)
        if not n:
            break
        q.put((buf, n))
q.put(None)
t.join()
print(h.hexdigest())
"""

TWO_THREADS_SCRIPT = """
import hashlib, os, sys, threading
path = sys.argv[1]
size = os.path.getsize(path)
half = size // 2 // (1 << 20) * (1 << 20)
out = [None, None]
def work(i, start, end):
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    h = hashlib.sha256()
    off = start
    while off < end:
        n = os.preadv(fd, [mv[: min(len(buf), end - off)]], off)
        if not n:
            break
        h.update(mv[:n])
        off += n
    os.close(fd)
    out[i] = h.hexdigest()
ts = [threading.Thread(target=work, args=(0, 0, half)),
      threading.Thread(target=work, args=(1, half, size))]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(*out)
"""

HASHLIB = "hashlib sha256 (1 thread)"
READ_AHEAD = "limit: read-ahead + 1 hashing thread"
TWO_THREADS = "limit: 2 threads, each half"


def limit_commands(path: str) -> dict[str, list[str]]:
    """The three limits over ``path``, as process argvs."""
    return {
        HASHLIB: [sys.executable, "-c", HASHLIB_SCRIPT, path],
        READ_AHEAD: [sys.executable, "-c", READ_AHEAD_SCRIPT, path],
        TWO_THREADS: [sys.executable, "-c", TWO_THREADS_SCRIPT, path],
    }


def alternate(commands: dict[str, list[str]], rounds: int) -> dict[str, list[Run]]:
    """Run every command once per round, in turn, ``rounds`` times."""
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            runs[name].append(run_process(argv))
    return runs


def median_seconds(runs: Sequence[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def warm(path: str) -> None:
    subprocess.run([sys.executable, "-c", HASHLIB_SCRIPT, path], stdout=subprocess.DEVNULL,
                   check=True)
