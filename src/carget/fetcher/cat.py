"""``carget cat`` (trio): verified bytes of one file to stdout, in order.

With two or more gateways and a big file, a window of segments is fetched at once and
written in order (:mod:`carget.fetcher.inorder`). With one gateway, one answer straight
through (the fastest way when the gateway keeps up), resuming from the last verified
leaf after a failure, and split over the gateway's ``--streams`` connections once that
answer proves slow.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import trio

from ..cid import CID, DAG_PB
from ..digest import check_digest, parse_digest
from ..errors import CargetError, UsageError
from ..unixfs.node import decode_unixfs
from . import split
from .outputs.car import CarSink
from .outputs.stdout import StdoutOutput
from .race import Resolved, identity_events, resolve
from .request import Continuation, car_url, request_car
from .run import FATAL_ERRORS, Gateway, Run, bounded, open_nursery, prepare, spare_whole
from .split import Unit, UnitState
from .types import FetchOptions, FetchResult
from .verifier import DagVerifier, InnerNode, Scope

__all__ = ["run_cat"]


async def _cat_straight(run: Run, gw: Gateway, v: DagVerifier, out: StdoutOutput, url: str,
                        size: int, may_split: bool) -> bool:
    """One straight-through answer for ``cat`` from ``out.pos``. With ``may_split``, a
    watcher cuts the answer short once it has proved slow
    (:data:`~carget.fetcher.split.SPLIT_AFTER`, :data:`~carget.fetcher.split.SPLIT_BELOW`):
    the verifier is narrowed to stop a leaf past what is written.
    Returns True when it was cut and bytes are still missing."""
    lo = out.pos
    unit = Unit(lo, size)
    cut = False

    async def watch() -> None:
        nonlocal cut
        began = trio.current_time()
        await trio.sleep(split.SPLIT_AFTER)
        while True:
            pos, left = unit.left()
            if (pos - lo) / max(trio.current_time() - began, 1e-6) < split.SPLIT_BELOW and \
                    left > 2 * max(1, run.opts.unit_bytes):
                unit.hi = unit.state.narrow_to = pos + max(1, unit.state.leaf_len)
                cut = True
                run.event("split", start=unit.hi, streams=run.opts.streams_per_gateway)
                return
            await trio.sleep(split.SPLIT_AFTER / 4)

    async with open_nursery() as nursery:
        if may_split:
            nursery.start_soon(watch)
        await request_car(run, gw, v, out, url, state=unit.state)
        nursery.cancel_scope.cancel()
    return cut and out.pos < size


async def _cat_split(run: Run, cid: CID, size: int, out: StdoutOutput, workers: list[Gateway],
                     car: CarSink | None) -> None:
    from .inorder import SEGMENT_BYTES, cat_split  # cat only: off get's start-up

    await cat_split(run, cid, size, out, workers, car, min(SEGMENT_BYTES, run.opts.unit_bytes))


async def run_cat(target_text: str, opts: FetchOptions,
                  dest: BinaryIO | None = None) -> FetchResult:
    """``carget cat``: verified bytes of one file to ``dest`` (stdout if None), in order; each
    failed request resumes from the last verified leaf on the next gateway."""
    run = await prepare(target_text, opts)
    if opts.fallback_url is not None:
        raise UsageError("--fallback-url applies to get, not cat")
    algo = parse_digest(opts.digest)[0] if opts.digest else None
    out = StdoutOutput(dest if dest is not None else sys.stdout.buffer, algo)

    announced: list[Resolved] = []

    def announce(res: Resolved) -> None:
        if announced:
            return
        announced.append(res)
        run.event("resolved", cid=str(res.cid), kind=res.kind, size=res.size,
                  gateway=res.gateway.url if res.gateway else None)
        if res.kind != "file":
            raise UsageError(f"{run.target} is a {res.kind}: cat needs a file")
        run.total = res.size
        if car is not None:
            car.set_root(res.cid)
            for e in res.events:
                if isinstance(e, InnerNode):
                    car(e.cid, e.data)

    async def adopt(res: Resolved) -> Continuation | None:
        # the race's answer carries the whole file (a gateway that ignores dag-scope):
        # it goes on to stdout, in order, from the first byte
        if res.kind != "file" or res.size is None or out.pos:
            return None
        announce(res)
        return Continuation(out, 0, res.size, UnitState(0))

    async def go() -> FetchResult:
        res = await resolve(run, adopt)
        announce(res)
        assert res.size is not None
        gws = [g for g in (res.gateway,) if g] + [g for g in run.gateways if g is not res.gateway]
        if res.gateway is None:  # an identity CID: its bytes are already here
            await trio.to_thread.run_sync(out.handle, identity_events(res.cid, Scope.ENTITY))
            gws = []
        if out.pos >= res.size:  # the race's kept answer brought it all
            gws = []
        usable = spare_whole([g for g in gws if not g.dropped and not g.not_found])
        # a gateway that answers with the whole DAG gets one worker (see fetch_ranges)
        workers = [g for i in range(max(1, opts.streams_per_gateway)) for g in usable
                   if i == 0 or not g.whole]
        multi_block = res.cid.codec == DAG_PB and bool(decode_unixfs(res.cid, res.block).links)
        if len(usable) > 1 and multi_block and res.size > opts.unit_bytes:
            # several gateways, the bytes still in order: a window of segments in memory
            # (with one gateway, one answer straight through is faster: bench_fetch.py)
            await _cat_split(run, res.cid, res.size, out, workers, car)
            gws = []
        # one gateway with several connections: straight through, split if it proves slow
        may_split = multi_block and len(workers) > 1
        while gws:
            pending = [g for g in gws if not g.dropped and not g.not_found]
            if not pending:
                raise run.final_error(str(run.target))
            gw = min(pending, key=lambda g: g.ready_at)
            wait = gw.ready_at - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            lo = out.pos
            v = DagVerifier(res.cid, scope=Scope.ENTITY,
                            byte_range=(lo, res.size) if lo else None)
            url = car_url(gw.url, res.cid, (), Scope.ENTITY, (lo, res.size) if lo else None)
            try:
                if await _cat_straight(run, gw, v, out, url, res.size, may_split):
                    await _cat_split(run, res.cid, res.size, out, workers, car)
                break
            except FATAL_ERRORS:
                raise
            except CargetError as exc:
                run.failed(gw, exc)
        digest = None
        if out.hasher is not None and opts.digest is not None:
            algo = parse_digest(opts.digest)[0]
            digest = check_digest(f"{algo}:{out.hasher.hexdigest()}", opts.digest)
        return FetchResult(str(res.cid), out.pos, digest, "ipfs")

    car = CarSink(opts.car_out) if opts.car_out else None
    out.on_block = car
    ok = False
    try:
        result: FetchResult = await bounded(opts.timeout, go, run)
        ok = True
    finally:
        run.close()
        if car is not None:
            car.close(ok)
    run.event("done", cid=result.cid, size=result.size, digest=result.digest, source="ipfs")
    return result
