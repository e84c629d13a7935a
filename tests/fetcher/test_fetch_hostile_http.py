"""Hostile gateways on loopback (issue 12): garbage chunk sizes, answers that drip or
repeat forever, and redirects to another host:port. Each run must end in bounded time
with its documented exit code, leave nothing at the output path, and never let a gateway
aim carget at another origin. The command-line runs are child processes, so a hang in
worker threads fails a test instead of stalling the suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway
from fetchhelp import content, run_cli

from carget.errors import FetchTimeout, NetworkError
from carget.fetcher import FetchOptions
from carget.fetcher import http as carget_http
from carget.fetcher.get import run_get
from carget.fetcher.http import may_follow, open_http

#: bytes of the test file: many 64 KiB leaves, so a dripping answer never finishes
SIZE = 2 << 20
CHUNK = "size-65536"


@pytest.fixture
def big(store: DagStore) -> tuple[DagStore, str, bytes]:
    data = content(SIZE, seed=12)
    return store, str(store.add_bytes(data, cid_version=1, chunker=CHUNK)), data


#: what a failed run keeps beside the output for a rerun to resume from (as after Ctrl-C)
RESUME_STATE = (".carget-partial", ".carget-journal")


def nothing_at(tmp_path: Path, name: str) -> None:
    """Nothing is left at the output path; beside it, at most the resume state that
    Ctrl-C keeps too."""
    assert not (tmp_path / name).exists()
    left = [p.name for p in tmp_path.iterdir()
            if p.name.startswith(name) and p.name[len(name):] not in RESUME_STATE]
    assert left == [], left


# --- item 1: strict framing -----------------------------------------------------------


@pytest.mark.parametrize("line", [b"-10", b"-5", b"0x5", b"1_0", b"", b"0" * 40 + b"1"])
async def test_bad_chunk_size_fails_fast_on_both_readers(big: tuple[DagStore, str, bytes],
                                                         line: bytes) -> None:
    """The blocking reader (worker thread) and the trio reader both refuse the line with
    NetworkError at once (before: ``-10`` made the blocking reader spin forever)."""
    store, cid, _ = big
    async with fault_gateway(store, Fault("bad_chunk", chunk_line=line)) as gw:
        url = f"{gw.url}/ipfs/{cid}?format=car&dag-scope=block"
        with trio.fail_after(5):
            async with open_http(url, idle_timeout=30) as resp:
                assert resp.detachable
                with pytest.raises(NetworkError, match="chunk-size"):
                    await trio.to_thread.run_sync(
                        resp.read_body_blocking, lambda piece: False, abandon_on_cancel=True)
            async with open_http(url, idle_timeout=30) as resp:
                with pytest.raises(NetworkError, match="chunk-size"):
                    while await resp.receive() is not None:
                        pass


async def test_bad_chunk_size_is_exit_6_at_once(big: tuple[DagStore, str, bytes],
                                                tmp_path: Path) -> None:
    store, cid, _ = big
    async with fault_gateway(store, Fault("bad_chunk")) as gw:
        for cmd in (["get", "-o", "out.bin"], ["cat"]):
            t0 = time.monotonic()
            code, out, err = await run_cli(*cmd, "-g", gw.url, cid, "--timeout", "5",
                                           timeout=30)
            assert code == 6, err
            assert time.monotonic() - t0 < 10
            assert out == b"" and "chunk-size" in err
    nothing_at(tmp_path, "out.bin")


# --- item 2: worker threads answer cancellation ---------------------------------------


async def test_threads_stop_when_a_receiver_spins(big: tuple[DagStore, str, bytes],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """A body reader that never returns to its socket (the old ``-10`` spin, or any
    future framing bug) still ends within a second or two of the run's --timeout: the
    threads look at their stop flag."""
    store, cid, _ = big

    def spin(self: Any, consume: Any, read_size: int = 0, stopped: Any = None) -> None:
        while not consume(memoryview(b"")) and not (stopped and stopped()):
            pass

    monkeypatch.setattr(carget_http.HttpResponse, "read_body_blocking", spin)
    async with fault_gateway(store) as gw:
        t0 = trio.current_time()
        with trio.fail_after(15), pytest.raises(FetchTimeout):
            await run_get(cid, "out.bin", FetchOptions([gw.url], timeout=1.0,
                                                       idle_timeout=60))
        assert trio.current_time() - t0 < 4
    nothing_at(tmp_path, "out.bin")


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "carget", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def _ended(proc: subprocess.Popen[bytes], within: float) -> tuple[int, float]:
    t0 = time.monotonic()
    while proc.poll() is None:
        if time.monotonic() - t0 > within:
            proc.kill()
            proc.wait()
            pytest.fail(f"carget did not end within {within} s")
        await trio.sleep(0.05)
    return proc.returncode, time.monotonic() - t0


#: a gateway that drips one byte every 0.2 s forever, and one whose chunk size is -10
ENDLESS = {"drip": Fault("drip", drip_size=1, drip_delay=0.2),
           "bad_chunk": Fault("bad_chunk", chunk_line=b"-10")}


@pytest.mark.parametrize("cmd", ["get", "cat"])
@pytest.mark.parametrize("kind", list(ENDLESS))
async def test_timeout_ends_the_run(big: tuple[DagStore, str, bytes], tmp_path: Path,
                                    cmd: str, kind: str) -> None:
    store, cid, _ = big
    async with fault_gateway(store, ENDLESS[kind]) as gw:
        extra = ["-o", "out.bin"] if cmd == "get" else []
        proc = _start(cmd, "-g", gw.url, cid, *extra, "--timeout", "2", "--idle-timeout", "60")
        code, _ = await _ended(proc, 2 + 6)
    assert code == 6, proc.stderr.read() if proc.stderr else ""
    nothing_at(tmp_path, "out.bin")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("cmd", ["get", "cat"])
async def test_signals_end_the_run(big: tuple[DagStore, str, bytes], tmp_path: Path,
                                   cmd: str, sig: signal.Signals) -> None:
    store, cid, _ = big
    async with fault_gateway(store, ENDLESS["drip"]) as gw:
        extra = ["-o", "out.bin"] if cmd == "get" else []
        proc = _start(cmd, "-g", gw.url, cid, *extra, "--idle-timeout", "60")
        with trio.fail_after(20):
            while not gw.log:  # the request is being answered: threads are busy
                await trio.sleep(0.05)
        await trio.sleep(1.0)
        os.kill(proc.pid, sig)
        code, took = await _ended(proc, 5)
    assert code == 130, proc.stderr.read() if proc.stderr else ""
    assert took < 3
    nothing_at(tmp_path, "out.bin")


# --- item 3: progress, not bytes, keeps an answer alive -------------------------------


async def test_endless_repeats_of_a_block_end_the_run(big: tuple[DagStore, str, bytes],
                                                      tmp_path: Path) -> None:
    """A gateway that sends the same verified block again and again: the answer is
    refused past DISCARD_LIMIT (the gateway is dropped like a lying one: exit 4)."""
    store, cid, _ = big
    async with fault_gateway(store, Fault("repeat", at=3, only_scope="entity")) as gw:
        t0 = time.monotonic()
        code, _, err = await run_cli("get", "-g", gw.url, cid, "-o", "out.bin",
                                     "--idle-timeout", "5", timeout=40)
    assert code == 4, err
    assert "repeated" in err
    assert time.monotonic() - t0 < 30
    nothing_at(tmp_path, "out.bin")


async def test_endless_slow_repeats_end_with_the_idle_timeout(
        big: tuple[DagStore, str, bytes], tmp_path: Path) -> None:
    """Repeats too slow to reach the bound: no new verified block for --idle-timeout
    ends each answer (exit 6 once the gateway has failed too often)."""
    store, cid, _ = big
    fault = Fault("repeat", at=3, only_scope="entity")
    async with fault_gateway(store, fault, chunked=True) as gw:
        gw.fault = fault
        orig = gw.send_body_piece

        async def slow(stream: Any, entry: Any, piece: bytes) -> None:
            await orig(stream, entry, piece)
            if entry.query.get("dag-scope") == "entity":
                await trio.sleep(0.1)

        gw.send_body_piece = slow  # type: ignore[method-assign]
        t0 = time.monotonic()
        with trio.fail_after(60), pytest.raises(FetchTimeout):
            await run_get(cid, "out.bin", FetchOptions([gw.url], idle_timeout=1.0))
        assert time.monotonic() - t0 < 30
    nothing_at(tmp_path, "out.bin")


async def test_a_byte_drip_ends_with_the_idle_timeout(big: tuple[DagStore, str, bytes],
                                                      tmp_path: Path) -> None:
    """One byte every 0.5 s keeps the socket busy, but no block completes: each answer
    ends after --idle-timeout, and the run with exit 6."""
    store, cid, _ = big
    async with fault_gateway(store, Fault("drip", drip_size=1, drip_delay=0.5)) as gw:
        t0 = time.monotonic()
        code, _, err = await run_cli("get", "-g", gw.url, cid, "-o", "out.bin",
                                     "--idle-timeout", "2", timeout=45)
    assert code == 6, err
    assert "no new verified block" in err
    assert time.monotonic() - t0 < 35
    nothing_at(tmp_path, "out.bin")


# --- item 4: redirects stay on the gateway's origin -----------------------------------


def test_redirect_policy() -> None:
    here = "http://127.0.0.1:8080/ipfs/x"
    assert may_follow("same-origin", here, "http://127.0.0.1:8080/elsewhere")
    assert may_follow("same-origin", here, "HTTP://127.0.0.1:8080/x")
    assert not may_follow("same-origin", here, "http://127.0.0.1:8081/ipfs/x")
    assert not may_follow("same-origin", here, "http://localhost:8080/ipfs/x")
    assert not may_follow("same-origin", here, "https://127.0.0.1:8080/ipfs/x")
    assert not may_follow("same-origin", "https://a/x", "https://b/x")
    assert may_follow("https", "https://a/x", "https://b:444/x")
    assert may_follow("https", "http://a/x", "https://b/x")
    assert not may_follow("https", "https://a/x", "http://b/x")
    assert not may_follow("https", "http://a/x", "http://b/x")
    assert may_follow("https", "https://a/x", "https://a:443/y")


async def test_cross_origin_redirect_is_not_followed(big: tuple[DagStore, str, bytes],
                                                     tmp_path: Path) -> None:
    store, cid, _ = big
    async with fault_gateway(store) as target:
        async with fault_gateway(store, Fault("redirect", location=target.url)) as gw:
            code, _, err = await run_cli("get", "-g", gw.url, cid, "-o", "out.bin",
                                         timeout=30)
    assert code == 6, err
    assert "not followed" in err
    assert gw.log and target.log == []  # carget never asked the other port
    nothing_at(tmp_path, "out.bin")


async def test_same_origin_redirect_is_followed(big: tuple[DagStore, str, bytes],
                                                tmp_path: Path) -> None:
    store, cid, data = big
    async with fault_gateway(store) as gw:
        orig = gw.respond

        async def respond(stream: Any, entry: Any, headers: dict[str, str]) -> None:
            if entry.path.startswith("/old/"):  # moved to /ipfs/ on this same origin
                query = "&".join(f"{k}={v}" for k, v in entry.query.items())
                new = "/ipfs/" + entry.path[len("/old/"):] + "?" + query
                await gw.simple(stream, entry, 301, b"", extra=[("Location", new)])
                return
            await orig(stream, entry, headers)

        gw.respond = respond  # type: ignore[method-assign]
        url = f"{gw.url}/old/{cid}?format=car&dag-scope=block"
        with trio.fail_after(10):
            async with open_http(url) as resp:
                assert resp.status == 200
                assert resp.url.startswith(gw.url + "/ipfs/")
    assert [e.path.split("/")[1] for e in gw.log] == ["old", "ipfs"]
    _ = data
