"""SIGTERM and SIGHUP end a command exactly as Ctrl-C (SIGINT) does (issue 12): exit 130,
one line, no traceback, and the same files left behind (temporaries removed; a ``get`` or
``lima prefetch`` keeps only the resumable partial that Ctrl-C keeps).

Each command runs as a real ``carget`` subprocess. The blocking commands are caught
mid-write deterministically: once a temporary appears the process is stopped (SIGSTOP),
the signal is queued, and it is continued (SIGCONT) with the temporary still open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fetcher"))

from dagstore import DagStore
from faultgw import Fault, FaultGateway, fault_gateway

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
#: a sparse file this large takes the importer and the extractor long enough to catch
BIG = 1 << 30
WAIT = 60.0


def _env(tmp: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "IPFS_GATEWAY"}
    env.update(HOME=str(home), IPFS_PATH=str(home / "ipfs"))
    return env


def _start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    # stdout to a file: cat writes binary there, and a full pipe must not block the run
    with open(cwd.parent / f"{cwd.name}.stdout", "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "carget", *args], cwd=cwd,
                                env=_env(cwd), stdout=out, stderr=subprocess.PIPE,
                                text=True)


def _wait_for(what: Callable[[], bool], proc: subprocess.Popen[str], why: str) -> None:
    deadline = time.monotonic() + WAIT
    while not what():
        if proc.poll() is not None:
            pytest.fail(f"carget ended ({proc.returncode}) before {why}: {proc.stderr.read()}"
                        if proc.stderr else why)
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {why}")
        time.sleep(0.002)


def _temporaries(where: Path) -> list[str]:
    """Temporaries carget made under ``where`` (``.NAME.*.carget-tmp`` files, the
    ``.carget-extract-*`` staging dir)."""
    return sorted(p.name for p in where.rglob("*") if ".carget-" in p.name)


def _interrupt_mid_write(proc: subprocess.Popen[str], where: Path, sig: int) -> None:
    """Stop ``proc`` while a temporary exists under ``where``, queue ``sig``, continue."""
    while True:
        _wait_for(lambda: bool(_temporaries(where)), proc, "a temporary appeared")
        # past the instant of its creation (atomic_file's mkstemp-to-try window is a
        # separate race, as open to Ctrl-C as to these signals): the run is writing
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGSTOP)
        if _temporaries(where):
            break
        os.kill(proc.pid, signal.SIGCONT)  # it finished that one in between: try again
    os.kill(proc.pid, sig)
    os.kill(proc.pid, signal.SIGCONT)


def _ended(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("carget did not end after the signal")
    return proc.returncode, err


def _interrupted(code: int, err: str) -> None:
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "carget: interrupted"


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 1 GiB sparse file (zeros: a few distinct blocks) and its CAR."""
    d = tmp_path_factory.mktemp("big")
    src = d / "big.bin"
    with open(src, "wb") as f:
        f.truncate(BIG)
    car = d / "big.car"
    subprocess.run([sys.executable, "-m", "carget", "car", "create", "-f", str(car), str(src)],
                   check=True, capture_output=True, timeout=300)
    return src, car


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_car_extract(big: tuple[Path, Path], tmp_path: Path, sig: int) -> None:
    _, car = big
    out = tmp_path / "out"
    proc = _start(tmp_path, "car", "extract", "-f", str(car), "-o", str(out))
    _interrupt_mid_write(proc, out, sig)
    _interrupted(*_ended(proc))
    assert _temporaries(tmp_path) == []
    assert os.listdir(out) == []  # what Ctrl-C leaves: the output dir, empty


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_add_car(big: tuple[Path, Path], tmp_path: Path, sig: int) -> None:
    src, _ = big
    proc = _start(tmp_path, "add", "--car", "out.car", str(src))
    _interrupt_mid_write(proc, tmp_path, sig)
    _interrupted(*_ended(proc))
    assert sorted(os.listdir(tmp_path)) == ["home"]  # no CAR, no temporary


@contextmanager
def stalling_gateway() -> Iterator[tuple[FaultGateway, str, bytes]]:
    """A loopback gateway (tests/fetcher/faultgw.py) that sends a 4 MiB file's first
    leaves, then nothing, forever; run by trio on a thread of its own."""
    import trio

    data = os.urandom(4 << 20)
    store = DagStore()
    cid = str(store.add_bytes(data, cid_version=1))
    box: dict[str, Any] = {}
    ready, stop = threading.Event(), threading.Event()

    async def main() -> None:
        async with fault_gateway(store, Fault("stall", at=4, only_scope="entity")) as gw:
            box["gw"] = gw
            ready.set()
            while not stop.is_set():
                await trio.sleep(0.05)

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield box["gw"], cid, data
    finally:
        stop.set()
        thread.join(10)


def _left(where: Path) -> list[str]:
    return sorted(str(p.relative_to(where)) for p in where.rglob("*")
                  if "home" not in p.relative_to(where).parts)


def _get_after(gw: FaultGateway, proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    """Send ``sig`` once the stalled answer has delivered its first leaves."""
    _wait_for(lambda: any(e.query.get("dag-scope") == "entity" and e.sent > 0
                          for e in gw.log), proc, "the file's answer began")
    time.sleep(1.0)  # the leaves it sent are verified and written
    os.kill(proc.pid, sig)
    return _ended(proc)


@pytest.mark.parametrize("cmd", ["get", "cat"])
def test_get_and_cat_stop_alike(tmp_path: Path, cmd: str) -> None:
    """For each signal a fresh run in its own directory: all end 130 and leave the same
    names (a get keeps its resumable partial, as Ctrl-C does)."""
    left: dict[str, list[str]] = {}
    with stalling_gateway() as (gw, cid, _):
        for sig in SIGNALS:
            where = tmp_path / signal.Signals(sig).name
            where.mkdir()
            extra = ["-o", "out.bin"] if cmd == "get" else []
            gw.log.clear()
            proc = _start(where, cmd, cid, "--gateway", gw.url, "--streams", "1",
                          "--idle-timeout", "60", *extra)
            _interrupted(*_get_after(gw, proc, sig))
            left[signal.Signals(sig).name] = _left(where)
    assert left["SIGTERM"] == left["SIGINT"] == left["SIGHUP"], left
    assert "out.bin" not in left["SIGINT"]
    assert not any(".carget-tmp" in name for name in left["SIGINT"])


def test_lima_prefetch_stops_alike(tmp_path: Path) -> None:
    left: dict[str, list[str]] = {}
    with stalling_gateway() as (gw, cid, _):
        for sig in SIGNALS:
            where = tmp_path / signal.Signals(sig).name
            where.mkdir()
            (where / "t.yaml").write_text(
                f"images:\n- location: https://mirror.invalid/a.img\n  arch: x86_64\n"
                f"  cid: {cid}\n")
            gw.log.clear()
            proc = _start(where, "lima", "prefetch", "t.yaml", "--arch", "x86_64",
                          "--cache-dir", "cache", "--gateway", gw.url)
            _interrupted(*_get_after(gw, proc, sig))
            left[signal.Signals(sig).name] = _left(where)
    assert left["SIGTERM"] == left["SIGINT"] == left["SIGHUP"], left
    assert not any("by-url-sha256/" in name for name in left["SIGINT"])  # no entry placed
