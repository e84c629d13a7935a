"""``cat`` with several streams: segments fetched at once, bytes still written in order."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway
from fetchhelp import content

from carget.errors import VerificationError
from carget.fetcher import FetchOptions
from carget.fetcher.cat import run_cat

SIZE = 600_000
SEGMENT = 65536  # unit_bytes: the segment size of a split cat (and its steal size / 8)


@pytest.fixture
def big(store: DagStore) -> tuple[DagStore, str, bytes]:
    data = content(SIZE, seed=11)
    root = store.add_bytes(data, cid_version=1, chunker="size-16384")
    return store, str(root), data


def opts(*gateways: str, events: list[dict[str, Any]] | None = None, **kw: Any) -> FetchOptions:
    o = FetchOptions(gateways=list(gateways), idle_timeout=kw.pop("idle_timeout", 1.0),
                     unit_bytes=kw.pop("unit_bytes", SEGMENT), **kw)
    if events is not None:
        o.progress = events.append
    return o


def entity_ranges(gw: Any) -> list[tuple[int, int]]:
    out = []
    for r in gw.log:
        if r.query.get("dag-scope") == "entity" and "entity-bytes" in r.query:
            a, b = r.query["entity-bytes"].split(":")
            out.append((int(a), int(b)))
    return out


async def test_cat_is_split_across_gateways_and_stays_in_order(
        big: tuple[DagStore, str, bytes]) -> None:
    store, cid, data = big
    buf = io.BytesIO()
    with trio.fail_after(30):
        async with fault_gateway(store) as a, fault_gateway(store) as b:
            res = await run_cat(cid, opts(a.url, b.url, streams_per_gateway=2,
                                          digest="sha256:" + hashlib.sha256(data).hexdigest()),
                                buf)
    assert buf.getvalue() == data
    assert res.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    ra, rb = entity_ranges(a), entity_ranges(b)
    assert ra and rb, (ra, rb)  # both gateways served segments
    assert all(hi - lo < SEGMENT for lo, hi in ra + rb)  # ranges of a segment, not the file


async def test_cat_split_drops_a_liar_and_finishes_from_the_honest_gateway(
        big: tuple[DagStore, str, bytes]) -> None:
    store, cid, data = big
    buf = io.BytesIO()
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("flip", at=3, only_scope="entity")) as liar, \
                fault_gateway(store) as honest:
            await run_cat(cid, opts(liar.url, honest.url, events=events), buf)
    assert buf.getvalue() == data
    assert [e["gateway"] for e in events if e["event"] == "gateway-dropped"] == [liar.url]


async def test_cat_split_with_only_liars_writes_only_verified_bytes(
        big: tuple[DagStore, str, bytes]) -> None:
    store, cid, data = big
    buf = io.BytesIO()
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("flip", at=6, only_scope="entity")) as a, \
                fault_gateway(store, Fault("substitute", at=4, only_scope="entity")) as b:
            with pytest.raises(VerificationError):
                await run_cat(cid, opts(a.url, b.url), buf)
    assert data.startswith(buf.getvalue())  # a verified prefix, nothing after a gap


async def test_cat_split_slow_gateway_is_taken_over_and_gets_no_fresh_segments(
        big: tuple[DagStore, str, bytes]) -> None:
    # the slow gateway's segment would hold the head back: the fast one takes over the
    # back half of it, again and again; once the slow one has shown its speed it starts
    # no fresh segment while the fast one is alive, so it ends up sending little
    store, cid, data = big
    buf = io.BytesIO()
    events: list[dict[str, Any]] = []
    slow_fault = Fault("drip", only_scope="entity", drip_size=1024, drip_delay=0.02)
    with trio.fail_after(30):
        async with fault_gateway(store, slow_fault) as slow, fault_gateway(store) as fast:
            await run_cat(cid, opts(slow.url, fast.url, streams_per_gateway=1,
                                    events=events), buf)
    assert buf.getvalue() == data
    slow_sent = sum(r.sent for r in slow.log if r.query.get("dag-scope") == "entity")
    assert slow_sent < SIZE // 8, slow_sent
    assert any(e["event"] == "takeover" for e in events)


async def test_cat_split_window_bounds_memory_while_the_head_is_slow(
        big: tuple[DagStore, str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    # the head segment drips in; the fast stream may not run ahead of it by more than
    # the window (one segment per stream, plus the halves it takes over), so the bytes
    # held in memory do not grow with the file
    import carget.fetcher.inorder as inorder
    from carget.fetcher.outputs.stdout import SegmentBuffer

    alive: list[SegmentBuffer] = []

    class Tracked(SegmentBuffer):
        def __init__(self, lo: int, hi: int) -> None:
            super().__init__(lo, hi)
            alive.append(self)

    monkeypatch.setattr(inorder, "SegmentBuffer", Tracked)
    store, cid, data = big
    buf = io.BytesIO()
    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, sum(len(s.buf) for s in alive))
            await trio.sleep(0.001)

    slow_head = Fault("drip", only_scope="entity", drip_size=1024, drip_delay=0.01, times=1)
    with trio.fail_after(30):
        async with fault_gateway(store, slow_head) as slow, fault_gateway(store) as fast:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                await run_cat(cid, opts(slow.url, fast.url, streams_per_gateway=1), buf)
                nursery.cancel_scope.cancel()
    assert buf.getvalue() == data
    assert len(alive) >= SIZE // SEGMENT  # many segments went through
    assert 0 < peak <= 4 * SEGMENT < SIZE // 2, peak


async def test_cat_from_one_slow_gateway_splits_over_its_connections(
        big: tuple[DagStore, str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    # each connection drips (a per-connection limit): the straight answer proves slow,
    # is cut a leaf past what is written, and the rest comes as segments over the
    # gateway's two connections, still in order
    import carget.fetcher.split as split

    monkeypatch.setattr(split, "SPLIT_AFTER", 0.2)
    store, cid, data = big
    buf = io.BytesIO()
    events: list[dict[str, Any]] = []
    drip = Fault("drip", only_scope="entity", drip_size=4096, drip_delay=0.01)
    with trio.fail_after(30):
        async with fault_gateway(store, drip) as gw:
            res = await run_cat(cid, opts(gw.url, streams_per_gateway=2, events=events,
                                          digest="sha256:" + hashlib.sha256(data).hexdigest()),
                                buf)
    assert buf.getvalue() == data
    assert res.size == SIZE
    splits = [e for e in events if e["event"] == "split"]
    assert len(splits) == 1 and 0 < splits[0]["start"] < SIZE // 2, splits
    whole = [r for r in gw.log if r.query.get("dag-scope") == "entity"
             and "entity-bytes" not in r.query]
    assert len(whole) == 1  # the straight answer, asked once
    ranges = entity_ranges(gw)
    assert len(ranges) >= 4, ranges  # then segments
    assert min(lo for lo, _ in ranges) >= splits[0]["start"]
    assert max(hi for _, hi in ranges) == SIZE - 1  # entity-bytes ends are inclusive


async def test_cat_from_one_fast_gateway_reads_one_answer(
        big: tuple[DagStore, str, bytes]) -> None:
    # a gateway that keeps up is read straight through: no split, one request
    store, cid, data = big
    buf = io.BytesIO()
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            await run_cat(cid, opts(gw.url, streams_per_gateway=2, events=events), buf)
    assert buf.getvalue() == data
    assert not [e for e in events if e["event"] == "split"]
    assert len([r for r in gw.log if r.query.get("dag-scope") == "entity"]) == 1
