"""Racing, splitting and failing over across gateways (trio).

One run of ``carget get`` / ``carget cat`` / :func:`carget.fetcher.fetch_file`:

1. **Race** every gateway for the path's terminal block (``dag-scope=block``): the first
   verified answer wins and the other requests are cancelled (trio's happy-eyeballs
   pattern: attempts in one nursery, the winner cancels the others). A winning answer
   that goes on with the file's own blocks (a gateway that ignores ``dag-scope`` and
   ``entity-bytes``: a static server in front of ready-made CARs) is kept as the file's
   stream, so such a gateway sends the CAR once; afterwards it gets one stream only.
2. **Split** a multi-block file among every stream (gateways × connections): the ranges
   start even, cut at the root's child boundaries, one long ``entity-bytes`` request per
   stream; a stream that runs out of work takes over the back half of the busiest
   stream's range (:mod:`carget.fetcher.split`). Each stream receives, verifies and
   writes on three threads (:mod:`carget.fetcher.stream`) and ``pwrite``s leaves where
   they belong.
3. **Fail over**: a stream that stalls (idle timeout), breaks or is incomplete puts the
   rest of its range, from its last verified leaf, back in the queue; a gateway that
   sends a bad block is dropped for the rest of the run; 429/5xx answers wait
   ``Retry-After`` (or an exponential backoff) before that gateway is asked again.

Directories are fetched with ``dag-scope=all`` from one gateway at a time; after a failed
answer only the missing subtrees are asked for again. ``cat`` with two or more gateways
fetches a window of segments at once and writes them in order
(:mod:`carget.fetcher.inorder`); with one gateway it reads one answer, resuming from the
last verified leaf after a failure, and splits the rest over the gateway's connections
once that answer proves slow.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import trio

from ..atomic import atomic_file
from ..car.encoder import encode_header
from ..cid import CID, DAG_PB, RAW
from ..cpus import usable_cpus
from ..errors import (
    CargetError,
    DigestMismatch,
    FetchTimeout,
    NetworkError,
    NotFoundError,
    OutputError,
    UsageError,
)
from ..unixfs.node import Node, decode_unixfs
from .api import FetchResult
from .gateways import find_providers, normalize_gateway
from .output import EventOutput, FileOutput, StreamOutput, TreeOutput, file_digest, parse_digest
from .split import Pace, StreamState, Unit, steal
from .stream import (
    _CONTENT_ERRORS,
    UNIT_BYTES,
    Continuation,
    FetchOptions,
    _car_url,
    _Gateway,
    _hold_back,
    _nursery,
    _Run,
    _stream,
)
from .target import Target, parse_target
from .verifier import (
    DagVerifier,
    EntityStart,
    InnerNode,
    Scope,
    VerifierEvent,
)

__all__ = ["FetchOptions", "RangedOutput", "Resolved", "TreeTarget", "bounded",
           "fetch_file_units", "resolve", "run_cat", "run_get", "start_run", "whole_entity"]

#: a stream slower than :data:`SPLIT_BELOW` this many seconds into a fetch is held back by
#: the link or the gateway, not by verifying (one stream verifies ~1 GB/s on a core):
#: then more connections help where each one is limited. ``cat`` from one gateway reads
#: one answer straight through, the fastest way when the gateway keeps up
#: (bench_fetch.py), and splits the rest over the gateway's ``--streams`` connections
#: once it is slow; ``get`` opens a gateway's connections past the first few only then
SPLIT_AFTER = 1.0
#: bytes per second a stream below which it counts as slow
SPLIT_BELOW = 64e6


class RangedOutput(Protocol):
    """Where the file strategy puts a file's verified leaves (:class:`FileOutput`, or a
    block sink's output): thread-safe, as every stream's writing thread calls
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


class TreeTarget(Protocol):
    """Where the tree strategy puts a whole entity (:class:`TreeOutput`, or a block sink's
    output)."""

    def resume(self) -> int:
        """Take back what an earlier run left (blocking): the bytes kept."""
        ...

    def remaining(self, path: str, cid: CID) -> list[tuple[str, CID]]: ...

    def under(self, prefix: str) -> EventOutput: ...

    def abandon(self, keep: bool = False) -> None: ...


_Tree = TypeVar("_Tree", bound=TreeTarget)

# --- phase 1: race for the terminal block ------------------------------------------------

@dataclass
class Resolved:
    cid: CID
    kind: str
    size: int | None
    block: bytes
    events: list[VerifierEvent]
    gateway: _Gateway | None  # None: resolved locally from an identity CID


def _identity_events(cid: CID, scope: str) -> list[VerifierEvent]:
    """Verify an identity CID's DAG with no gateway: its block is inside the CID, so a CAR
    of just a header completes it (the verifier resolves identity CIDs itself)."""
    v = DagVerifier(cid, (), scope=scope)
    return v.feed(memoryview(encode_header([cid]))) + v.feed_eof()


#: (on trio) given the race's winner, where its answer goes on when that answer carries
#: the rest of the file (a gateway that ignores dag-scope), or None to end it
Adopt = Callable[["Resolved"], Awaitable[Continuation | None]]


async def resolve(run: _Run, adopt: Adopt | None = None) -> Resolved:
    """Race the gateways for the path's terminal block; the first verified answer wins.

    A winning answer that goes on past the block with the file's own blocks (a gateway
    that ignores ``dag-scope``, such as a static server in front of ready-made CARs) is
    kept when ``adopt`` says where it goes: the same answer then carries the file (the
    gateway sends each byte once), and this returns once it has ended; what it did not
    bring is left to the caller."""
    target = run.target
    winner: list[Resolved] = []
    scopes: dict[_Gateway, trio.CancelScope] = {}

    def resolved(collect: list[VerifierEvent], gw: _Gateway) -> bool:
        """Take this answer as the winner, unless there is one: cancel the others."""
        if winner:
            return False
        start = next(e for e in collect if isinstance(e, EntityStart) and e.path == "")
        block = next((bytes(e.data) for e in collect
                      if isinstance(e, InnerNode) and e.cid == start.cid), b"")
        winner.append(Resolved(start.cid, start.kind, start.size, block, collect, gw))
        for other, scope in scopes.items():
            if other is not gw:
                scope.cancel()
        return True

    async def attempt(gw: _Gateway) -> None:
        last: list[DagVerifier] = []  # this gateway's latest answer
        with scopes[gw]:
            while not gw.dropped and not gw.not_found:
                wait = gw.ready_at - trio.current_time()
                if wait > 0:
                    await trio.sleep(wait)
                v = DagVerifier(target.cid, target.path, scope=Scope.BLOCK)
                last[:] = [v]
                collect: list[VerifierEvent] = []
                url = _car_url(gw.url, target.cid, target.path, Scope.BLOCK, None)
                kept = False

                async def follow(_: DagVerifier, collect: list[VerifierEvent] = collect
                                 ) -> Continuation | None:
                    nonlocal kept
                    gw.whole = True
                    if adopt is None or not resolved(collect, gw):
                        return None
                    run.event("whole-answer", gateway=gw.url)
                    cont = await adopt(winner[0])
                    kept = cont is not None
                    return cont

                try:
                    await _stream(run, gw, v, None, url, collect, follow=follow)
                except _CONTENT_ERRORS:
                    raise  # the content itself is bad or absent: every gateway would agree
                except CargetError as exc:
                    run.failed(gw, exc)
                    if isinstance(exc, NotFoundError) or kept:
                        return  # a kept answer that broke: the caller fetches the rest
                    continue
                resolved(collect, gw)
                return
        # cancelled: another gateway won. If this answer was going on with the file's
        # blocks, this gateway sends whole DAGs (and has just sent one): see
        # fetch_file_units
        if last and last[0].beyond():
            gw.whole = True

    if target.cid.is_identity and not target.path:
        # the CID holds its block (bafkqaaa, --inline): no gateway is asked or trusted
        local = _identity_events(target.cid, Scope.BLOCK)
        start = next(e for e in local if isinstance(e, EntityStart))
        block = next((bytes(e.data) for e in local if isinstance(e, InnerNode)), b"")
        return Resolved(start.cid, start.kind, start.size, block, local, None)
    async with _nursery() as nursery:
        for gw in run.usable():
            scopes[gw] = trio.CancelScope()
            nursery.start_soon(attempt, gw)
    if not winner:
        raise run.final_error(str(target))
    return winner[0]


# --- phase 2: files, split across gateways ----------------------------------------------

def _units(node: Node | None, missing: list[tuple[int, int]], unit_bytes: int = UNIT_BYTES
           ) -> list[tuple[int, int]]:
    """Split the missing ranges at the root's child boundaries into ~unit_bytes pieces."""
    cuts: list[int] = []
    if node is not None and node.links:
        cuts = [b for _, _, b in node.file_children()]
    units: list[tuple[int, int]] = []
    for lo, hi in missing:
        start = lo
        inner = [c for c in cuts if lo < c < hi]
        for c in [*inner, hi]:
            if c - start >= unit_bytes or c == hi:
                if c > start:
                    units.append((start, c))
                start = c
    return units


def _spare_whole(gateways: list[_Gateway]) -> list[_Gateway]:
    """The gateways to split ranges among: those that answer with the whole DAG only when
    no other is left (each range asked of them costs the file from its start again,
    and they have sent it once already in the race)."""
    honest = [g for g in gateways if not g.whole]
    return honest or gateways


async def fetch_file_units(run: _Run, res: Resolved, out: RangedOutput,
                            missing: list[tuple[int, int]]) -> None:
    """Fetch the missing byte ranges with every usable stream (gateways × connections).

    The ranges start split evenly among the streams (at the root's child boundaries),
    so each stream makes one long request; a stream that runs out of work takes over
    the back half of the busiest stream's range, so a fast gateway ends up doing most of
    the work and no stream idles; a failed stream's rest goes back in the queue and
    continues from its last verified leaf, on another gateway if this one is dropped.

    Streams open one per gateway first, then more up to the CPUs there are to verify
    on; a gateway's further connections open only once its streams prove slow
    (:data:`SPLIT_AFTER`, :data:`SPLIT_BELOW` a stream): where the CPU, not the network,
    is the limit, more streams only contend for it."""
    node = decode_unixfs(res.cid, res.block) if res.cid.codec == DAG_PB else None
    gateways = _spare_whole(run.usable())
    per_gateway = max(1, run.opts.streams_per_gateway)
    # a gateway that answers with the whole DAG gets one stream: each request costs it
    # the file from its start again
    order = [gw for i in range(per_gateway) for gw in gateways if i == 0 or not gw.whole]
    workers = len(order)
    first = min(workers, max(len(gateways), usable_cpus()))  # streams that start at once
    run.streams = max(1, workers)
    todo = sum(b - a for a, b in missing)
    min_bytes = max(1, run.opts.unit_bytes)
    # one range per starting stream; streams opened later take over halves of them.
    # With a whole-file digest, units of unit_bytes in file order instead: the digest
    # follows the bytes as they land only where all the streams fill in near its
    # frontier (get --digest of 512 MiB in-process, medians of 8: 0.607 -> 0.577 s)
    unit = min_bytes if out.digesting else max(min_bytes, -(-todo // max(1, first)))
    queue = _units(node, missing, unit)
    inflight: list[Unit] = []
    pace = Pace()
    changed = trio.Event()
    streams: dict[_Gateway, int] = {}  # streams started, per gateway
    moved: dict[_Gateway, int] = {}  # file bytes its finished requests wrote
    serving: dict[Unit, _Gateway] = {}

    def notify() -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    async def worker(gw: _Gateway) -> None:
        pace.started(gw)
        try:
            await work(gw)
        finally:
            pace.stopped(gw)
            notify()

    async def work(gw: _Gateway) -> None:
        while not gw.dropped and not gw.not_found:
            if gw.whole and any(not g.whole and not g.dropped and not g.not_found
                                for g in gateways):
                return  # each further range would cost the file from its start again
            if await _hold_back(gw, pace, bool(queue or inflight), lambda: changed):
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
                await _stream(run, gw, v, out, _car_url(gw.url, res.cid, (), Scope.ENTITY,
                                                        (lo, hi)), state=unit.state,
                              follow=follow)
                pace.record(gw, unit.state.written_end - lo, trio.current_time() - began)
            except _CONTENT_ERRORS:
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

    async def grow(waiting: list[_Gateway]) -> None:
        began = trio.current_time()
        await trio.sleep(SPLIT_AFTER)
        while waiting and (queue or inflight):
            seconds = max(trio.current_time() - began, 1e-6)
            for gw in dict.fromkeys(waiting):  # each gateway once a round
                delivered = moved.get(gw, 0) + sum(u.state.written for u, g in serving.items()
                                                   if g is gw)
                if gw.dropped or gw.not_found:
                    waiting[:] = [g for g in waiting if g is not gw]
                elif delivered / seconds < SPLIT_BELOW * streams[gw]:
                    waiting.remove(gw)  # slow where it is: one more connection
                    start(gw)
                    run.event("streams", gateway=gw.url, streams=streams[gw])
            await trio.sleep(SPLIT_AFTER / 4)

    async with _nursery() as outer:
        async with _nursery() as nursery:
            def start(gw: _Gateway) -> None:
                streams[gw] = streams.get(gw, 0) + 1
                nursery.start_soon(worker, gw)

            for gw in order[:first]:
                start(gw)
            if first < workers:
                outer.start_soon(grow, order[first:])
        outer.cancel_scope.cancel()  # the streams are done: nothing left to grow
    if queue or not out.covered():
        raise run.final_error(str(run.target))


async def whole_entity(run: _Run, res: Resolved, make_out: Callable[[], _Tree]) -> _Tree:
    """Fetch a whole entity (a tree, ``dag-scope=all``) from one gateway at a time.

    When an answer fails, what it completed stays in place: the next request (this
    gateway after its back-off, or the next one) asks only for the subtrees still
    missing, entry by entry under the directories already verified (a sharded directory
    or a partly written file is asked for again whole). A run that is interrupted keeps
    the partial tree and its journal; the next one re-verifies them and goes on from
    there (:meth:`TreeOutput.resume`)."""
    first = [g for g in (res.gateway,) if g] + [g for g in run.usable() if g is not res.gateway]
    out = make_out()
    try:
        kept = await trio.to_thread.run_sync(out.resume)
        if kept:
            run.detail(f"resuming: {kept} verified bytes kept")
            run.event("resume", bytes=kept)
        pending = out.remaining("", res.cid)
        for gw in first:
            while pending and not gw.dropped and not gw.not_found:
                wait = gw.ready_at - trio.current_time()
                if wait > 0:
                    await trio.sleep(wait)
                path, cid = pending[0]
                v = DagVerifier(cid, scope=Scope.ALL)
                try:
                    await _stream(run, gw, v, out.under(path),
                                  _car_url(gw.url, cid, (), Scope.ALL, None))
                    pending.pop(0)
                except _CONTENT_ERRORS:
                    raise
                except CargetError as exc:
                    pending[0:1] = out.remaining(path, cid)
                    if pending:
                        run.log(f"continuing with {len(pending)} missing subtree(s)")
                    run.failed(gw, exc)
            if not pending:
                return out
        raise run.final_error(str(run.target))
    except BaseException as exc:
        # interrupted, timed out or cut off: keep what is verified for a rerun; a
        # verification failure leaves nothing behind
        out.abandon(keep=not isinstance(exc, CargetError) or isinstance(exc, NetworkError))
        raise


# --- the runs ---------------------------------------------------------------------------

async def _prepare(target_text: str, opts: FetchOptions) -> _Run:
    target = parse_target(target_text)
    if opts.digest is not None:
        parse_digest(opts.digest)
    if opts.fallback_url is not None and opts.digest is None:
        raise UsageError("--fallback-url needs --digest: a plain mirror is unverified otherwise")
    return await start_run(target, opts)


async def start_run(target: Target, opts: FetchOptions) -> _Run:
    """The shared state of a run for ``target``: ``opts.gateways`` and the target's hint,
    plus what ``opts.routers`` name as providers. Raises UsageError with no gateway."""
    run = _Run(target, opts)
    for router in opts.routers:
        try:
            extra = await find_providers(router, target.cid, timeout=opts.idle_timeout)
        except NetworkError as exc:
            run.log(f"routing: {exc}")
            continue
        known = {g.url for g in run.gateways}
        for url in extra:
            if normalize_gateway(url) not in known:
                run.gateways.append(_Gateway(normalize_gateway(url)))
    if not run.gateways:
        raise UsageError("no gateway to ask (use --gateway, IPFS_GATEWAY or --routing)")
    return run


class _CarSink:
    """``--car``: every verified block, in arrival order, behind a lock (threads)."""

    def __init__(self, path: str) -> None:
        from ..car.writer import open_car_writer

        self.path = path
        self._stack = ExitStack()
        self._writer = self._stack.enter_context(open_car_writer(path))
        self._lock = threading.Lock()
        self._seen: set[CID] = set()

    def set_root(self, cid: CID) -> None:
        self._writer.set_roots([cid])

    def __call__(self, cid: CID, data: bytes | memoryview) -> None:
        from ..cid import Block

        with self._lock:
            if cid not in self._seen and not cid.is_identity:
                self._seen.add(cid)
                try:
                    self._writer.write_block(Block(cid, bytes(data)))
                except OSError as exc:
                    raise self._error(exc) from None

    def close(self, ok: bool) -> None:
        """Finish the CAR (``ok``) or throw it away; a second call does nothing."""
        stack, self._stack = self._stack, ExitStack()
        if ok:
            try:
                stack.close()  # the last buffered blocks go out here
            except OSError as exc:
                raise self._error(exc) from None
        else:
            try:
                stack.__exit__(CargetError, CargetError("aborted"), None)
            except OSError:
                pass  # its flush failed: it is thrown away all the same (atomic_file)

    def _error(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self.path}: {exc.strerror or exc}")


async def _ipfs_get(run: _Run, out_path: str) -> FetchResult:
    opts = run.opts
    car = _CarSink(opts.car_out) if opts.car_out else None
    opened: list[FileOutput] = []

    def announce(res: Resolved) -> None:
        run.event("resolved", cid=str(res.cid), kind=res.kind, size=res.size,
                  gateway=res.gateway.url if res.gateway else None)
        if car is not None:
            car.set_root(res.cid)
            for e in res.events:
                if isinstance(e, InnerNode):
                    car(e.cid, e.data)

    async def open_file(res: Resolved) -> FileOutput:
        """The file's output, made once (by the race's kept answer or after the race),
        with what a journal of an earlier run vouches for already in place."""
        if opened:
            return opened[0]
        assert res.size is not None
        announce(res)
        run.total = res.size
        fout = FileOutput(out_path, res.cid, res.size, target=str(run.target))
        opened.append(fout)
        fout.on_block = car
        if opts.digest is not None:
            fout.start_digest(parse_digest(opts.digest)[0])
        done = await trio.to_thread.run_sync(fout.resume)
        if done:
            kept = sum(b - a for a, b in done)
            run.detail(f"resuming: {kept} verified bytes kept")
            run.event("resume", bytes=kept)
            run.bytes_done = kept
        return fout

    async def adopt(res: Resolved) -> Continuation | None:
        # the race's answer carries the whole file: it goes on into the output, from
        # the first byte still missing to the end of that gap
        if res.kind != "file" or res.size is None:
            return None
        fout = await open_file(res)
        missing = fout.missing()
        if not missing:
            return None
        lo, hi = missing[0]
        return Continuation(fout, lo, hi, StreamState(lo))

    ok = False
    try:
        try:
            res = await resolve(run, adopt)
        except BaseException as exc:
            if opened:  # the kept answer was cut off: as below
                keep = not isinstance(exc, CargetError) or isinstance(exc, NetworkError)
                opened[0].abandon(keep=keep and opened[0].written > 0)
            raise
        if res.kind == "file":
            assert res.size is not None
            fout = await open_file(res)
            keep = False
            try:
                if res.cid.codec == RAW or not decode_unixfs(res.cid, res.block).links:
                    v = DagVerifier(res.cid, scope=Scope.ENTITY)
                    from ..car.encoder import encode_header, section_prefix

                    blob = (encode_header([res.cid]) + section_prefix(res.cid, len(res.block))
                            + res.block)
                    n = fout.handle(v.feed(blob) + v.feed_eof())
                    run.progressed(n)
                else:
                    missing = fout.missing()
                    if missing:
                        await fetch_file_units(run, res, fout, missing)
                digest = None
                if opts.digest is not None:
                    digest = _match_digest(await trio.to_thread.run_sync(fout.finish_digest),
                                           opts.digest)
                if car is not None:
                    car.close(True)  # the CAR complete before the file appears
                fout.commit()
            except BaseException as exc:
                # interrupted, timed out or cut off: keep what is verified for a rerun;
                # a verification or digest failure leaves nothing behind
                keep = not isinstance(exc, CargetError) or isinstance(exc, NetworkError)
                fout.abandon(keep=keep and (fout.written > 0 or run.bytes_done > 0))
                raise
            size = res.size
        elif res.kind in ("directory", "symlink"):
            announce(res)
            if opts.digest is not None:
                raise UsageError("--digest applies to files, and this is a " + res.kind)

            def make() -> TreeOutput:
                t = TreeOutput(out_path, res.cid, target=str(run.target))
                t.on_block = car
                return t

            tree = await whole_entity(run, res, make)
            if car is not None:
                try:
                    car.close(True)  # the CAR complete before the tree appears
                except OutputError:
                    tree.abandon(keep=False)
                    raise
            tree.commit()
            size = tree.file_bytes()
            digest = None
        else:
            announce(res)
            raise UsageError(f"{res.cid} is {res.cid.codec_name}, not a UnixFS file or "
                             f"directory")
        ok = True
    finally:
        if car is not None:
            car.close(ok)
    return FetchResult(str(res.cid), size, digest, "ipfs")


def _match_digest(got: str, expected: str) -> str:
    """Return ``got`` if it is the ``expected`` ``algo:HEX``; else raise DigestMismatch."""
    algo, want = parse_digest(expected)
    if got != f"{algo}:{want}":
        raise DigestMismatch(f"digest mismatch: expected {algo}:{want}, got {got}")
    return got


async def _check_digest(path: str, digest: str | None) -> str | None:
    if digest is None:
        return None
    algo = parse_digest(digest)[0]
    return _match_digest(await trio.to_thread.run_sync(file_digest, path, algo), digest)


async def _fallback(run: _Run, out_path: str) -> FetchResult:
    """Download the plain mirror to a temporary file beside ``out_path``; keep it only if
    its digest matches. Through httpx (a plain HTTP(S) download is what it is good at):
    the environment's proxies, the one trust store, redirects to https anywhere but
    never down to http (:func:`~carget.fetcher.http.may_follow`)."""
    import httpx

    from .connection import ssl_context
    from .http import MAX_REDIRECTS, USER_AGENT, may_follow

    url = run.opts.fallback_url
    assert url is not None and run.opts.digest is not None
    run.log(f"IPFS failed; trying the fallback mirror {url}")
    run.event("fallback", url=url)

    async def redirect_policy(response: httpx.Response) -> None:
        # called for every answer, before httpx follows a redirect
        if response.has_redirect_location:
            there = str(response.url.join(response.headers["location"]))
            if not may_follow("https", str(response.url), there):
                raise NetworkError(f"{response.url} redirects to {there[:200]}: not "
                                   f"followed (only same-origin or https redirects are)")

    idle = run.opts.idle_timeout
    with atomic_file(out_path) as (f, tmp):  # kept only if the digest matches
        try:
            async with httpx.AsyncClient(
                    verify=ssl_context(), follow_redirects=True, max_redirects=MAX_REDIRECTS,
                    timeout=httpx.Timeout(idle), headers={"User-Agent": USER_AGENT,
                                                          "Accept-Encoding": "identity"},
                    event_hooks={"response": [redirect_policy]}) as client:
                async with client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise NetworkError(f"fallback {url} answered {resp.status_code}")
                    total = resp.headers.get("content-length")
                    run.total = int(total) if total and total.isdigit() else None
                    run.bytes_done = 0
                    async for piece in resp.aiter_bytes(1 << 20):
                        await trio.to_thread.run_sync(f.write, piece)
                        run.progressed(len(piece))
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"fallback {url}: {exc or 'timed out'}") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"fallback {url}: {exc}") from None
        f.flush()
        digest = await _check_digest(tmp, run.opts.digest)
    return FetchResult("", os.path.getsize(out_path), digest, "fallback")


async def bounded(timeout: float | None, fn: Callable[[], Any], run: _Run) -> Any:
    if timeout is None:
        return await fn()
    try:
        with trio.fail_after(timeout):
            return await fn()
    except trio.TooSlowError:
        # with retries silent, the timeout is the one line: it names what failed so far
        failed = run.gateway_failures()
        raise FetchTimeout(f"the run took longer than --timeout {timeout:g} s"
                           + (f" ({failed})" if failed else "")) from None


async def run_get(target_text: str, out_path: str, opts: FetchOptions) -> FetchResult:
    """``carget get``: see the module docstring. Raises carget errors (exit codes)."""
    deadline = trio.current_time() + opts.timeout if opts.timeout is not None else None
    run = await _prepare(target_text, opts)
    if not out_path:
        out_path = run.target.default_name
    try:
        result: FetchResult = await bounded(opts.timeout, lambda: _ipfs_get(run, out_path), run)
    except CargetError as exc:
        if opts.fallback_url is None or isinstance(exc, UsageError):
            raise
        run.log(f"IPFS: {exc}")
        left = None if deadline is None else max(0.0, deadline - trio.current_time())
        result = await bounded(left, lambda: _fallback(run, out_path), run)
    finally:
        run.close()
    run.event("done", cid=result.cid, size=result.size, digest=result.digest,
              source=result.source, path=out_path)
    return result


async def _cat_straight(run: _Run, gw: _Gateway, v: DagVerifier, out: StreamOutput, url: str,
                        size: int, may_split: bool) -> bool:
    """One straight-through answer for ``cat`` from ``out.pos``. With ``may_split``, a
    watcher cuts the answer short once it has proved slow (:data:`SPLIT_AFTER`,
    :data:`SPLIT_BELOW`): the verifier is narrowed to stop a leaf past what is written.
    Returns True when it was cut and bytes are still missing."""
    lo = out.pos
    unit = Unit(lo, size)
    cut = False

    async def watch() -> None:
        nonlocal cut
        began = trio.current_time()
        await trio.sleep(SPLIT_AFTER)
        while True:
            pos, left = unit.left()
            if (pos - lo) / max(trio.current_time() - began, 1e-6) < SPLIT_BELOW and \
                    left > 2 * max(1, run.opts.unit_bytes):
                unit.hi = unit.state.narrow_to = pos + max(1, unit.state.leaf_len)
                cut = True
                run.event("split", start=unit.hi, streams=run.opts.streams_per_gateway)
                return
            await trio.sleep(SPLIT_AFTER / 4)

    async with _nursery() as nursery:
        if may_split:
            nursery.start_soon(watch)
        await _stream(run, gw, v, out, url, state=unit.state)
        nursery.cancel_scope.cancel()
    return cut and out.pos < size


async def _cat_split(run: _Run, cid: CID, size: int, out: StreamOutput, workers: list[_Gateway],
                     car: _CarSink | None) -> None:
    from .inorder import SEGMENT_BYTES, cat_split  # cat only: off get's start-up

    await cat_split(run, cid, size, out, workers, car, min(SEGMENT_BYTES, run.opts.unit_bytes))


async def run_cat(target_text: str, opts: FetchOptions, stream: Any = None) -> FetchResult:
    """``carget cat``: verified bytes of one file to ``stream`` (stdout), in order; each
    stream failure resumes from the last verified leaf on the next gateway."""
    run = await _prepare(target_text, opts)
    if opts.fallback_url is not None:
        raise UsageError("--fallback-url applies to get, not cat")
    algo = parse_digest(opts.digest)[0] if opts.digest else None
    out = StreamOutput(stream if stream is not None else sys.stdout.buffer, algo)

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
        return Continuation(out, 0, res.size, StreamState(0))

    async def go() -> FetchResult:
        res = await resolve(run, adopt)
        announce(res)
        assert res.size is not None
        gws = [g for g in (res.gateway,) if g] + [g for g in run.gateways if g is not res.gateway]
        if res.gateway is None:  # an identity CID: its bytes are already here
            await trio.to_thread.run_sync(out.handle, _identity_events(res.cid, Scope.ENTITY))
            gws = []
        if out.pos >= res.size:  # the race's kept answer brought it all
            gws = []
        usable = _spare_whole([g for g in gws if not g.dropped and not g.not_found])
        # a gateway that answers with the whole DAG gets one stream (see fetch_file_units)
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
            url = _car_url(gw.url, res.cid, (), Scope.ENTITY, (lo, res.size) if lo else None)
            try:
                if await _cat_straight(run, gw, v, out, url, res.size, may_split):
                    await _cat_split(run, res.cid, res.size, out, workers, car)
                break
            except _CONTENT_ERRORS:
                raise
            except CargetError as exc:
                run.failed(gw, exc)
        digest = None
        if out.hasher is not None and opts.digest is not None:
            algo = parse_digest(opts.digest)[0]
            digest = _match_digest(f"{algo}:{out.hasher.hexdigest()}", opts.digest)
        return FetchResult(str(res.cid), out.pos, digest, "ipfs")

    car = _CarSink(opts.car_out) if opts.car_out else None
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
