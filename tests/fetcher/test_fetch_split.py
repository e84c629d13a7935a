"""Sharing a file's range among streams: take-overs and gateway pace (sans-IO pieces)."""

from __future__ import annotations

import pytest

from carget.cid import CID, RAW
from carget.errors import UnixFSError
from carget.fetcher.outputs.stdout import SegmentBuffer
from carget.fetcher.split import SLOW_FACTOR, Pace, Unit, steal
from carget.fetcher.verifier import FileData


def test_steal_takes_the_back_half_of_the_busiest_range_at_a_leaf_boundary() -> None:
    a, b = Unit(0, 1000), Unit(1000, 9000)
    a.state.written_end = 600
    b.state.written_end = 2000
    b.state.leaf_len = 300  # leaves seen so far are 300 bytes long
    got = steal([a, b], min_bytes=100)
    assert got is not None
    victim, cut, hi = got
    # b has 7000 left from 2000: half is 3500, rounded down to whole leaves (3300)
    assert victim is b and (cut, hi) == (5300, 9000)
    assert b.hi == 5300 and b.state.narrow_to == 5300  # the victim is told where to stop


def test_steal_leaves_small_ranges_alone() -> None:
    u = Unit(0, 1000)
    u.state.written_end = 850
    assert steal([u], min_bytes=100) is None  # 150 left < 2 × 100
    assert u.hi == 1000 and u.state.narrow_to is None
    assert steal([], min_bytes=1) is None


def test_pace_holds_back_only_a_gateway_outpaced_by_a_live_one() -> None:
    pace = Pace()
    slow, fast = "slow", "fast"
    pace.started(slow)
    pace.started(fast)
    assert not pace.outpaced(slow)  # nothing measured yet
    pace.record(slow, 1_000, 1.0)
    pace.record(fast, int(1_000 * SLOW_FACTOR) + 1, 1.0)
    assert pace.outpaced(slow) and not pace.outpaced(fast)
    pace.record(fast, int(1_000 * SLOW_FACTOR) - 1, 1.0)
    assert not pace.outpaced(slow)  # not slower by the factor
    pace.record(fast, 10**9, 1.0)
    pace.failed(fast)  # it may be backing off now: it no longer holds the slow one back
    assert not pace.outpaced(slow)
    pace.record(fast, 10**9, 1.0)
    pace.stopped(fast)  # no stream of it left to take the work
    assert not pace.outpaced(slow)


def _leaf(offset: int, data: bytes) -> FileData:
    return FileData("", offset, data, CID.of(data, RAW), None)


def test_segment_ignores_leaves_past_an_end_another_stream_took_over() -> None:
    # the stream ran on past the cut before its verifier heard of it: those leaves belong
    # to the stream that took over, and must not be written out twice
    spare: list[bytearray] = []
    seg = SegmentBuffer(100, 500)
    seg.start(spare)
    assert seg.handle([_leaf(100, b"a" * 100), _leaf(200, b"b" * 100)]) == 200
    seg.hi = 300  # taken over from 300
    assert seg.handle([_leaf(300, b"c" * 100), _leaf(400, b"d" * 100)]) == 0
    assert seg.complete and seg.ready == 200
    assert bytes(seg.buf[:seg.ready]) == b"a" * 100 + b"b" * 100
    seg.release(spare)
    assert len(spare) == 1 and not seg.buf
    nxt = SegmentBuffer(300, 400)
    nxt.start(spare)  # reuses the written-out segment's buffer
    assert not spare and len(nxt.buf) >= 100


def test_segment_clips_a_leaf_that_straddles_its_start_and_refuses_gaps() -> None:
    seg = SegmentBuffer(150, 300)
    seg.start([])
    assert seg.handle([_leaf(100, b"x" * 50 + b"y" * 50)]) == 50  # only [150, 200)
    assert bytes(seg.buf[:50]) == b"y" * 50
    with pytest.raises(UnixFSError):
        seg.handle([_leaf(250, b"z" * 50)])  # [200, 250) never came


def test_reads_shrink_as_streams_are_added_so_memory_stays_bounded() -> None:
    from carget.fetcher import FetchOptions
    from carget.fetcher.run import MIN_READ, PIECES_PER_REQUEST, READ_BUDGET, Run
    from carget.fetcher.target import parse_target

    run = Run(parse_target("bafkqaaa"), FetchOptions(gateways=["http://127.0.0.1:1"]))
    sizes = {}
    for n in (1, 2, 5, 6, 16, 64):
        run.concurrency = n
        sizes[n] = run.read_size()
        assert n * PIECES_PER_REQUEST * sizes[n] <= max(READ_BUDGET,
                                                       n * PIECES_PER_REQUEST * MIN_READ)
    assert sizes[1] == sizes[5] == 1 << 20  # a few streams read a MiB at a time
    assert sizes[1] > sizes[6] > sizes[16] > sizes[64] == MIN_READ


async def test_progress_never_passes_the_whole() -> None:
    # a leaf that straddles a take-over cut is written by both streams: counted twice,
    # reported once
    from carget.fetcher import FetchOptions
    from carget.fetcher.run import Run
    from carget.fetcher.target import parse_target

    events: list[dict[str, object]] = []
    run = Run(parse_target("bafkqaaa"), FetchOptions(gateways=["http://127.0.0.1:1"],
                                                      progress=events.append))
    run.total = 1000
    run.progressed(600)
    run.progressed(600)  # 200 bytes of it twice
    assert run.bytes_done == 1200
    assert events[-1] == {"event": "progress", "bytes": 1000, "total": 1000}


def test_steal_does_not_cut_where_whole_leaves_leave_no_useful_half() -> None:
    u = Unit(0, 3000)
    u.state.leaf_len = 2000  # half of 3000 holds no whole 2000-byte leaf
    assert steal([u], min_bytes=500) is None and u.state.narrow_to is None
