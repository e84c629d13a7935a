"""``carget cat`` across several workers, with its bytes still written in order (trio).

The file is cut into segments of :data:`SEGMENT_BYTES`. Each worker (gateways ×
``--streams``) takes the next segment, fetches it with ``entity-bytes`` and gathers its
verified bytes in a :class:`~carget.fetcher.outputs.stdout.SegmentBuffer`; the writer
task sends the head segment's bytes to the output as they fill in, then moves on.

* A worker may only start a segment within as many segments of the head as there are
  workers, so memory stays near :data:`WINDOW_BYTES` whatever the file's size.
* A worker with nothing to start takes over the back half of what is left of the head
  segment (:func:`~carget.fetcher.split.steal`), so a slow gateway cannot hold the
  output back for long.
* A worker whose gateway proved far slower than another
  (:class:`~carget.fetcher.split.Pace`) leaves fresh segments to the faster workers
  instead of taking the next head-to-be.
* A request that fails puts the rest of its segment, from its last verified leaf, first
  in line for the next free worker (another gateway if this one is dropped), as ``get``
  does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

from ..cid import CID
from ..errors import CargetError, IncompleteDAG
from .outputs.stdout import SegmentBuffer, StdoutOutput
from .request import car_url, request_car
from .run import FATAL_ERRORS, Gateway, Run, hold_back, open_nursery
from .split import Pace, Unit, steal
from .verifier import DagVerifier, Scope

__all__ = ["SEGMENT_BYTES", "WINDOW_BYTES", "cat_split"]

#: bytes per segment at most: a request's set-up vanishes next to it
SEGMENT_BYTES: Final = 8 << 20
#: bytes of segments in memory (one per worker) at most: with each request's own pipeline
#: (a few MiB) this keeps four workers well inside the 100 MiB budget
WINDOW_BYTES: Final = 16 << 20


async def cat_split(run: Run, cid: CID, size: int, out: StdoutOutput, workers: list[Gateway],
                    on_block: Callable[[CID, bytes | memoryview], None] | None = None,
                    segment_bytes: int = SEGMENT_BYTES) -> None:
    """Fetch ``[out.pos, size)`` of the file ``cid`` with one worker per entry of
    ``workers`` (a gateway appears once per connection), writing it to ``out`` in order.
    Raises the run's final error when no gateway is left for a missing segment."""
    segment_bytes = max(1, min(segment_bytes, WINDOW_BYTES // max(1, len(workers))))
    run.concurrency = max(1, len(workers))
    segments = [SegmentBuffer(lo, min(lo + segment_bytes, size))
                for lo in range(out.pos, size, segment_bytes)]
    window = max(1, len(workers))
    head = 0  # the segment being written out
    emitted = 0  # bytes of it already written
    assigned = 0  # segments handed to a worker so far (in order)
    retry: list[SegmentBuffer] = []  # segments a failed request left unfinished
    inflight: dict[Unit, SegmentBuffer] = {}
    pace = Pace()
    spare: list[bytearray] = []  # buffers of written-out segments, for the next ones
    min_steal = max(1, segment_bytes // 4)
    alive = len(workers)
    token = trio.lowlevel.current_trio_token()
    changed = trio.Event()

    def notify() -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    def filled_more() -> None:  # on a writer thread: wake the writer task
        try:
            token.run_sync_soon(notify)
        except trio.RunFinishedError:  # pragma: no cover - the run is over
            pass

    for seg in segments:
        seg.on_block = on_block
        seg.on_progress = filled_more

    async def worker(gw: Gateway) -> None:
        nonlocal assigned, alive
        pace.started(gw)
        try:
            while not gw.dropped and not gw.not_found:
                if await hold_back(gw, pace, bool(retry or assigned < len(segments)),
                                    lambda: changed):
                    continue
                if retry:
                    seg = retry.pop(0)
                elif assigned < len(segments) and assigned < head + window:
                    seg = segments[assigned]
                    assigned += 1
                elif head >= len(segments):
                    return
                else:
                    # only the head segment holds the output back: a worker with nothing
                    # to start helps there (stealing from any segment made thousands of
                    # tiny requests when every request was fast and the window full).
                    # The cut must fall past what the victim already placed (and so past
                    # what was written out): its writer thread can be a batch ahead of the
                    # position its state reports, and these bytes must never go out twice
                    heads = [u for u, placed in inflight.items()
                             if head < len(segments) and placed is segments[head]]
                    for u in heads:
                        placed = inflight[u]
                        u.state.written_end = max(u.state.written_end,
                                                  placed.lo + placed.filled)
                    got = steal(heads, min_steal)
                    if got is None:
                        await changed.wait()
                        continue
                    victim, cut, hi = got
                    old = inflight[victim]
                    old.hi = cut  # its request stops there; the rest is a new segment
                    seg = SegmentBuffer(cut, hi)
                    seg.on_block, seg.on_progress = on_block, filled_more
                    segments.insert(segments.index(old) + 1, seg)
                    assigned += 1
                    run.event("takeover", gateway=gw.url, start=cut, end=hi)
                seg.start(spare)
                lo = seg.lo + seg.filled
                unit = Unit(lo, seg.hi)
                inflight[unit] = seg
                v = DagVerifier(cid, scope=Scope.ENTITY, byte_range=(lo, seg.hi))
                url = car_url(gw.url, cid, (), Scope.ENTITY, (lo, seg.hi))
                began, before = trio.current_time(), seg.filled
                try:
                    await request_car(run, gw, v, seg, url, state=unit.state)
                    if not seg.complete:  # the verifier placed its range: cannot happen
                        raise IncompleteDAG(f"segment {seg.lo}-{seg.hi} is incomplete after "
                                            f"a verified answer")
                    pace.record(gw, seg.filled - before, trio.current_time() - began)
                except FATAL_ERRORS:
                    raise
                except CargetError as exc:
                    if not seg.complete:
                        retry.insert(0, seg)
                    pace.failed(gw)
                    run.failed(gw, exc)
                finally:
                    del inflight[unit]
                    notify()
        finally:
            alive -= 1
            pace.stopped(gw)
            notify()

    async def writer() -> None:
        nonlocal head, emitted
        while head < len(segments):
            seg = segments[head]
            ready = seg.ready
            if ready > emitted:
                piece = memoryview(seg.buf)[emitted:ready]
                emitted = ready
                await trio.to_thread.run_sync(out.write_bytes, piece)
                del piece
                continue
            if seg.complete:
                seg.release(spare)
                head += 1
                emitted = 0
                notify()
                continue
            if alive == 0:
                raise run.final_error(str(run.target))
            await changed.wait()

    async with open_nursery() as nursery:
        for gw in workers:
            nursery.start_soon(worker, gw)
        await writer()
