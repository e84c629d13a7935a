"""Interrupted downloads: SIGKILL and SIGINT mid-download, then a rerun that re-checks the
kept leaves and fetches only the rest (proved by the gateway's request log)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway
from fetchhelp import content

from carget.fetcher import FetchOptions
from carget.fetcher.get import run_get
from carget.fetcher.outputs.journal import JOURNAL_SUFFIX, PARTIAL_SUFFIX

SIZE = 2_000_000


async def start_slow_get(url: str, cid: str, tmp: Path) -> trio.Process:
    with open(tmp / "stderr.txt", "wb") as out:  # the child keeps its own copy
        return await trio.lowlevel.open_process(
            [sys.executable, "-m", "carget", "get", "-g", url, cid, "-o", "out.bin",
             "--streams", "1", "--progress=false"], stdout=out, stderr=out)


async def wait_for(path: Path, timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not path.exists():
            await trio.sleep(0.05)


def entity_starts(log: list) -> list[int]:  # type: ignore[type-arg]
    return [int(r.query["entity-bytes"].split(":")[0]) for r in log
            if r.query.get("dag-scope") == "entity" and "entity-bytes" in r.query]


async def interrupted_then_resumed(store: DagStore, cid: str, data: bytes, tmp: Path,
                                   sig: int) -> int:
    drip = Fault("drip", drip_size=16384, drip_delay=0.02, only_scope="entity")
    async with fault_gateway(store, drip) as slow:
        proc = await start_slow_get(slow.url, cid, tmp)
        try:
            await wait_for(tmp / ("out.bin" + JOURNAL_SUFFIX))
            await trio.sleep(0.3)
            proc.send_signal(sig)
            with trio.fail_after(20):
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
    assert not (tmp / "out.bin").exists()
    assert (tmp / ("out.bin" + PARTIAL_SUFFIX)).exists()
    async with fault_gateway(store) as honest:
        with trio.fail_after(30):
            res = await run_get(cid, "out.bin", FetchOptions([honest.url], idle_timeout=2))
    assert (tmp / "out.bin").read_bytes() == data and res.size == SIZE
    starts = entity_starts(honest.log)
    assert starts and min(starts) > 0, starts  # only the missing part was asked for
    full = sum(len(b) for b in store.blocks.values())
    assert sum(r.sent for r in honest.log) < full
    assert not (tmp / ("out.bin" + PARTIAL_SUFFIX)).exists()
    assert not (tmp / ("out.bin" + JOURNAL_SUFFIX)).exists()
    return code


async def test_sigkill_then_resume(store: DagStore, tmp_path: Path) -> None:
    data = content(SIZE, seed=11)
    cid = str(store.add_bytes(data, cid_version=1, chunker="size-16384"))
    code = await interrupted_then_resumed(store, cid, data, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL


async def test_sigint_exit_130_keeps_partial_then_resume(store: DagStore,
                                                         tmp_path: Path) -> None:
    data = content(SIZE, seed=12)
    cid = str(store.add_bytes(data, chunker="size-16384"))  # CIDv0, dag-pb leaves
    code = await interrupted_then_resumed(store, cid, data, tmp_path, signal.SIGINT)
    assert code == 130


async def test_tampered_partial_bytes_are_refetched(store: DagStore, tmp_path: Path) -> None:
    data = content(SIZE, seed=13)
    cid = str(store.add_bytes(data, cid_version=1, chunker="size-16384"))
    drip = Fault("drip", drip_size=16384, drip_delay=0.02, only_scope="entity")
    async with fault_gateway(store, drip) as slow:
        proc = await start_slow_get(slow.url, cid, tmp_path)
        await wait_for(tmp_path / ("out.bin" + JOURNAL_SUFFIX))
        await trio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await proc.wait() == 130
    partial = tmp_path / ("out.bin" + PARTIAL_SUFFIX)
    with open(partial, "r+b") as f:  # corrupt the first kept leaf
        f.write(b"\xff" * 10)
    async with fault_gateway(store) as honest:
        with trio.fail_after(30):
            await run_get(cid, "out.bin", FetchOptions([honest.url], idle_timeout=2))
    assert (tmp_path / "out.bin").read_bytes() == data
    assert 0 in entity_starts(honest.log)  # the corrupted leaf was fetched again


async def test_car_of_a_resumed_get_holds_every_block(store: DagStore, tmp_path: Path) -> None:
    # the leaves kept from the interrupted run are not fetched again, but --car must
    # still hold the whole verified DAG: they are written to it as they are re-checked
    from carget.car.decoder import decode_car

    data = content(SIZE, seed=21)
    cid = str(store.add_bytes(data, cid_version=1, chunker="size-65536"))
    stall = Fault("stall", at=12, only_scope="entity")
    async with fault_gateway(store, stall) as gw:
        with trio.move_on_after(1.0):
            await run_get(cid, "out.bin", FetchOptions([gw.url], idle_timeout=30,
                                                      streams_per_gateway=1))
    assert (tmp_path / ("out.bin" + PARTIAL_SUFFIX)).exists()
    async with fault_gateway(store) as honest:
        with trio.fail_after(30):
            await run_get(cid, "out.bin", FetchOptions([honest.url], car_out="out.car"))
    assert (tmp_path / "out.bin").read_bytes() == data
    assert min(entity_starts(honest.log)) > 0  # resumed, not fetched from the start
    _, blocks = decode_car((tmp_path / "out.car").read_bytes(), verify=True)
    assert {b.cid for b in blocks} == set(store.blocks)  # the whole DAG, kept part too
