"""The file strategy (trio): a file's missing byte ranges split among every worker
(gateways × ``--streams`` connections), with take-overs and failover.

The ranges start split evenly among the workers (at the root's child boundaries), so
each makes one long ``entity-bytes`` request; a worker that runs out of work takes over
the back half of the busiest request's range (:mod:`carget.fetcher.split`), so a fast
gateway ends up doing most of the work and no worker idles. A request that stalls
(idle timeout), breaks or is incomplete puts the rest of its range, from its last
verified leaf, back in the queue, on another gateway if this one is dropped; 429/5xx
answers wait ``Retry-After`` first. Each request receives, verifies and writes on three
threads (:mod:`carget.fetcher.request`) into a :class:`RangedOutput` that puts leaves
where they belong.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ..cid import DAG_PB
from ..cpus import usable_cpus
from ..errors import CargetError
from ..unixfs.node import Node, decode_unixfs
from . import split
from .race import Resolved
from .request import Continuation, car_url, request_car
from .run import FATAL_ERRORS, Gateway, Run, hold_back, open_nursery, spare_whole
from .split import Pace, Unit, steal
from .types import UNIT_BYTES
from .verifier import DagVerifier, Scope, VerifierEvent

__all__ = ["RangedOutput", "fetch_ranges", "units"]


class RangedOutput(Protocol):
    """Where the file strategy puts a file's verified leaves (:class:`FileOutput`, or a
    block sink's output): thread-safe, as every request's writing thread calls
    :meth:`handle`."""

    @property
    def written(self) -> int: ...

    @property
    def digesting(self) -> bool:
        """A whole-file digest follows the bytes as they land (units in file order)."""
        ...

    def handle(self, events: list[VerifierEvent]) -> int: ...

    def missing(self) -> list[tuple[int, int]]:
        """The byte ranges still to fetch."""
        ...

    def covered(self) -> bool:
        """Every byte asked for is in place."""
        ...


def units(node: Node | None, missing: list[tuple[int, int]], unit_bytes: int = UNIT_BYTES
          ) -> list[tuple[int, int]]:
    """Split the missing ranges at the root's child boundaries into ~unit_bytes pieces."""
    cuts: list[int] = []
    if node is not None and node.links:
        cuts = [b for _, _, b in node.file_children()]
    out: list[tuple[int, int]] = []
    for lo, hi in missing:
        start = lo
        inner = [c for c in cuts if lo < c < hi]
        for c in [*inner, hi]:
            if c - start >= unit_bytes or c == hi:
                if c > start:
                    out.append((start, c))
                start = c
    return out


async def fetch_ranges(run: Run, res: Resolved, out: RangedOutput,
                       missing: list[tuple[int, int]]) -> None:
    """Fetch the missing byte ranges of the file ``res`` into ``out`` with every usable
    worker (gateways × ``--streams``; one worker makes one request at a time).

    The ranges start split evenly among the workers (at the root's child boundaries),
    so each makes one long request; a worker that runs out of work takes over the back
    half of the busiest request's range, so a fast gateway ends up doing most of the
    work and no worker idles; a failed request's rest goes back in the queue and
    continues from its last verified leaf, on another gateway if this one is dropped.

    Workers start one per gateway, then more up to the CPUs there are to verify on; a
    gateway's further workers start only once its requests prove slow
    (:data:`~carget.fetcher.split.SPLIT_AFTER`, :data:`~carget.fetcher.split.SPLIT_BELOW`
    a request): where the CPU, not the network, is the limit, more requests only contend
    for it. Raises the run's final error when no gateway is left for a missing range."""
    node = decode_unixfs(res.cid, res.block) if res.cid.codec == DAG_PB else None
    gateways = spare_whole(run.usable())
    per_gateway = max(1, run.opts.streams_per_gateway)
    # a gateway that answers with the whole DAG gets one worker: each request costs it
    # the file from its start again
    order = [gw for i in range(per_gateway) for gw in gateways if i == 0 or not gw.whole]
    workers = len(order)
    first = min(workers, max(len(gateways), usable_cpus()))  # workers that start at once
    run.concurrency = max(1, workers)
    todo = sum(b - a for a, b in missing)
    min_bytes = max(1, run.opts.unit_bytes)
    # one range per starting worker; workers started later take over halves of them.
    # With a whole-file digest, units of unit_bytes in file order instead: the digest
    # follows the bytes as they land only where all the requests fill in near its
    # frontier (get --digest of 512 MiB in-process, medians of 8: 0.607 -> 0.577 s)
    unit = min_bytes if out.digesting else max(min_bytes, -(-todo // max(1, first)))
    queue = units(node, missing, unit)
    inflight: list[Unit] = []
    pace = Pace()
    changed = trio.Event()
    streams: dict[Gateway, int] = {}  # workers started, per gateway (up to --streams)
    moved: dict[Gateway, int] = {}  # file bytes its finished requests wrote
    serving: dict[Unit, Gateway] = {}

    def notify() -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    async def worker(gw: Gateway) -> None:
        pace.started(gw)
        try:
            await work(gw)
        finally:
            pace.stopped(gw)
            notify()

    async def work(gw: Gateway) -> None:
        while not gw.dropped and not gw.not_found:
            if gw.whole and any(not g.whole and not g.dropped and not g.not_found
                                for g in gateways):
                return  # each further range would cost the file from its start again
            if await hold_back(gw, pace, bool(queue or inflight), lambda: changed):
                continue
            if queue:
                lo, hi = queue.pop(0)
            else:
                got = steal(inflight, min_bytes)
                if got is None:
                    if not inflight:
                        return
                    await changed.wait()
                    continue
                _, lo, hi = got
                run.event("takeover", gateway=gw.url, start=lo, end=hi)
            unit = Unit(lo, hi)
            inflight.append(unit)
            serving[unit] = gw
            v = DagVerifier(res.cid, scope=Scope.ENTITY, byte_range=(lo, hi))
            began = trio.current_time()

            async def follow(_: DagVerifier, unit: Unit = unit) -> Continuation | None:
                # the answer goes on past its range (the gateway ignores entity-bytes):
                # it takes the queued range that starts where this one ends, if any
                gw.whole = True
                for i, (a, b) in enumerate(queue):
                    if a == unit.hi:
                        del queue[i]
                        unit.hi = b
                        return Continuation(out, a, b, unit.state)
                return None

            try:
                await request_car(run, gw, v, out, car_url(gw.url, res.cid, (), Scope.ENTITY,
                                                        (lo, hi)), state=unit.state,
                              follow=follow)
                pace.record(gw, unit.state.written_end - lo, trio.current_time() - began)
            except FATAL_ERRORS:
                raise
            except CargetError as exc:
                rest, _ = unit.left()
                if rest < unit.hi:
                    queue.insert(0, (rest, unit.hi))  # continue from the last verified leaf
                pace.failed(gw)
                run.failed(gw, exc)
            finally:
                moved[gw] = moved.get(gw, 0) + unit.state.written
                inflight.remove(unit)
                del serving[unit]
                notify()

    async def grow(waiting: list[Gateway]) -> None:
        began = trio.current_time()
        await trio.sleep(split.SPLIT_AFTER)
        while waiting and (queue or inflight):
            seconds = max(trio.current_time() - began, 1e-6)
            for gw in dict.fromkeys(waiting):  # each gateway once a round
                delivered = moved.get(gw, 0) + sum(u.state.written for u, g in serving.items()
                                                   if g is gw)
                if gw.dropped or gw.not_found:
                    waiting[:] = [g for g in waiting if g is not gw]
                elif delivered / seconds < split.SPLIT_BELOW * streams[gw]:
                    waiting.remove(gw)  # slow where it is: one more connection
                    start(gw)
                    run.event("streams", gateway=gw.url, streams=streams[gw])
            await trio.sleep(split.SPLIT_AFTER / 4)

    async with open_nursery() as outer:
        async with open_nursery() as nursery:
            def start(gw: Gateway) -> None:
                streams[gw] = streams.get(gw, 0) + 1
                nursery.start_soon(worker, gw)

            for gw in order[:first]:
                start(gw)
            if first < workers:
                outer.start_soon(grow, order[first:])
        outer.cancel_scope.cancel()  # the workers are done: nothing left to grow
    if queue or not out.covered():
        raise run.final_error(str(run.target))
