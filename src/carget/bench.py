"""The measuring behind ``carget bench`` and ``carget demo``: every stage against SHA-256.

Each stage's work is dominated by SHA-256, which hashlib runs in C at the machine's limit.
Absolute MB/s drift from run to run on a shared machine, so every figure is also given as a
ratio to hashlib's SHA-256 over the same bytes, measured in the same run (DESIGN.md,
"Performance"). Rates are in MB/s of file bytes (10^6 bytes per second), whatever the
stage reads (a CAR is a little larger than the file it holds).

Stages:

* ``sha256``: hashlib over the file, read in :data:`READ_CHUNK` pieces (the reference);
* ``sha256 limit (N threads)``: N threads each reading and hashing a share of the file
  (what N cores can reach; the limit for the multi-core stages);
* ``add (1 job)`` / ``add (N jobs)``: :func:`carget.add.add_file`, CIDv1 as lima uses;
* ``car verify``: :class:`carget.car.reader.CarReader` over a CAR of the file, every
  block's hash checked;
* ``fetch (loopback)``: :func:`carget.fetcher.fetch_file_sync` from ``carget serve`` on
  127.0.0.1, verified block by block, plus the final sha256 digest check.
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .add import add_file
from .unixfs.options import ImportOptions, resolve_options

__all__ = [
    "DEFAULT_SIZE_MIB",
    "READ_CHUNK",
    "BenchReport",
    "Stage",
    "make_sample",
    "run_bench",
    "sha256_file",
]

#: the default sample: big enough that start-up costs vanish, small enough to run in well
#: under a minute on a busy 2-core machine
DEFAULT_SIZE_MIB = 256
#: read size for the reference hash and for sample generation
READ_CHUNK = 4 * 1024 * 1024
#: the sample's bytes come from this seed, so every run measures the same content
SAMPLE_SEED = 0x6361726765  # "carge"
MB = 1_000_000


@dataclass(frozen=True, slots=True)
class Stage:
    """One measured stage."""

    name: str
    seconds: float
    mbps: float  # file bytes per second / 10^6
    ratio: float  # mbps / the reference SHA-256 mbps of this run


@dataclass(slots=True)
class BenchReport:
    """A whole run: the reference, every stage, and what it ran on."""

    size: int
    sha256_mbps: float
    stages: list[Stage] = field(default_factory=list)
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    python: str = field(default_factory=platform.python_version)
    cid: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "size_bytes": self.size,
            "cid": self.cid,
            "sha256_mbps": round(self.sha256_mbps, 1),
            "cpu_count": self.cpu_count,
            "python": self.python,
            "stages": [
                {**asdict(s), "seconds": round(s.seconds, 4), "mbps": round(s.mbps, 1),
                 "ratio": round(s.ratio, 3)}
                for s in self.stages
            ],
        }


def make_sample(path: str | os.PathLike[str], size: int, seed: int = SAMPLE_SEED) -> None:
    """Write ``size`` deterministic pseudo-random bytes (incompressible, like a disk image)."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, READ_CHUNK)
            f.write(rng.randbytes(n))
            left -= n


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, float]:
    """("sha256:HEX", seconds) of hashing the file, read in :data:`READ_CHUNK` pieces."""
    h = hashlib.sha256()
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return f"sha256:{h.hexdigest()}", time.perf_counter() - start


def sha256_halves(path: str | os.PathLike[str], threads: int) -> float:
    """Seconds for ``threads`` threads each reading (``pread``) and hashing its share of the
    file: the read-plus-hash limit of that many cores, which ``add`` and ``car verify``
    with as many jobs are measured against."""
    import threading

    size = os.path.getsize(path)
    share = -(-size // threads // READ_CHUNK) * READ_CHUNK

    def work(fd: int, start: int, end: int) -> None:
        h = hashlib.sha256()
        buf = bytearray(READ_CHUNK)
        view = memoryview(buf)
        while start < end and (n := os.preadv(fd, [view[: min(len(buf), end - start)]],
                                              start)):
            h.update(view[:n])
            start += n

    fd = os.open(path, os.O_RDONLY)
    try:
        workers = [threading.Thread(target=work, args=(fd, i * share, min(size, (i + 1) * share)))
                   for i in range(threads)]
        start = time.perf_counter()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        return time.perf_counter() - start
    finally:
        os.close(fd)


def lima_options() -> ImportOptions:
    """``--cid-version=1``: what lima's templates carry and what carget serves here."""
    return resolve_options(cid_version=1)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _stage(name: str, size: int, seconds: float, ref_mbps: float) -> Stage:
    mbps = size / seconds / MB if seconds > 0 else float("inf")
    return Stage(name, seconds, mbps, mbps / ref_mbps if ref_mbps else 0.0)


def _car_of(path: Path, car: Path) -> None:
    from .car.writer import open_car_writer

    with open_car_writer(str(car)) as writer:
        res = add_file(path, lima_options(), emit=writer.write_block)
        writer.set_roots([res.cid])


def _verify_car(car: Path) -> int:
    from .car.reader import CarReader

    n = 0
    with open(car, "rb", buffering=0) as f:
        for block in CarReader(f, verify=True).blocks():
            n += len(block.data)
    return n


def _fetch(path: Path, cid: str, out: Path, digest: str) -> float:
    """Seconds to fetch ``cid`` from a loopback ``carget serve`` of ``path`` (serving set-up
    not counted). The gateway is its own process, as it would be for a user: in this
    process it would share the GIL with the client and measure neither. The fetcher's
    modules (trio among them, ~0.1 s) are imported before the clock starts: this row is
    the library call a long-running caller such as lima makes; ``bench_fetch.py`` times
    whole ``carget get`` processes too."""
    import subprocess
    import sys

    from .fetcher import (
        fetch_file_sync,
        get,  # noqa: F401  (imported now, not on the clock)
    )

    argv = [sys.executable, "-m", "carget", "serve", "--cid-version", "1",
            "--listen", "127.0.0.1:0", str(path)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as server:
        try:
            assert server.stdout is not None
            url = ""
            for line in server.stdout:  # "added ..." lines, then "serving on URL"
                if line.startswith("serving on "):
                    url = line.split()[-1]
                    break
            if not url:
                raise RuntimeError("carget serve did not start")
            start = time.perf_counter()
            fetch_file_sync(f"ipfs://{cid}", out, gateways=[url], digest=digest)
            return time.perf_counter() - start
        finally:
            server.terminate()
            try:  # the Popen's exit waits for it: never forever
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def run_bench(
    size: int,
    *,
    workdir: str | os.PathLike[str] | None = None,
    stages: tuple[str, ...] = ("add", "car", "fetch"),
    on_stage: Callable[[Stage], None] | None = None,
) -> BenchReport:
    """Measure every stage over a ``size``-byte sample made in a temporary directory.

    The reference SHA-256 is measured first and again last, and the faster of the two is
    kept, so a burst of load from elsewhere does not flatter the ratios. Raises what the
    stages raise (:class:`~carget.errors.CargetError` subclasses, OSError for the disk).
    """
    with tempfile.TemporaryDirectory(prefix="carget-bench-", dir=workdir) as tmp:
        d = Path(tmp)
        sample = d / "sample.bin"
        make_sample(sample, size)
        digest, t_ref = sha256_file(sample)  # also warms the page cache
        digest, t_ref2 = sha256_file(sample)
        ref = size / min(t_ref, t_ref2) / MB
        report = BenchReport(size, ref)
        cores = os.cpu_count() or 1

        def record(stage: Stage) -> None:
            report.stages.append(stage)
            if on_stage is not None:
                on_stage(stage)

        record(_stage("sha256 (hashlib)", size, min(t_ref, t_ref2), ref))
        if cores > 1 and "add" in stages:  # the limit for "add (N jobs)"
            record(_stage(f"sha256 limit ({cores} threads, a share each)", size,
                          min(sha256_halves(sample, cores) for _ in range(2)), ref))
        cid = str(add_file(sample, lima_options(), jobs=1).cid)
        report.cid = cid
        if "add" in stages:
            record(_stage("add (1 job)", size,
                          _timed(lambda: add_file(sample, lima_options(), jobs=1)), ref))
            if cores > 1:
                record(_stage(f"add ({cores} jobs)", size,
                              _timed(lambda: add_file(sample, lima_options(), jobs=cores)), ref))
        if "car" in stages:
            car = d / "sample.car"
            _car_of(sample, car)
            record(_stage("car verify", size, _timed(lambda: _verify_car(car)), ref))
            car.unlink()
        if "fetch" in stages:
            out = d / "fetched.bin"
            record(_stage("fetch (loopback)", size, _fetch(sample, cid, out, digest), ref))
        _, t_ref3 = sha256_file(sample)
        if t_ref3 < min(t_ref, t_ref2):
            report.sha256_mbps = size / t_ref3 / MB
            report.stages = [
                _stage(s.name, size, t_ref3 if i == 0 else s.seconds, report.sha256_mbps)
                for i, s in enumerate(report.stages)
            ]
        return report
