"""Racing, splitting and failing over across gateways (trio).

One run of ``carget get`` / ``carget cat`` / :func:`carget.fetcher.fetch_file`:

1. **Race** every gateway for the path's terminal block (``dag-scope=block``): the first
   verified answer wins and the other requests are cancelled (trio's happy-eyeballs
   pattern: attempts in one nursery, the winner cancels the scope).
2. **Split** a multi-block file into units aligned on the root's child boundaries and
   fetch them with ``entity-bytes`` from several gateways and connections at once; each
   stream runs its verifier on a worker thread (hashing releases the GIL, so two streams
   use two cores) and ``pwrite``s leaves where they belong.
3. **Fail over**: a stream that stalls (idle timeout), breaks or is incomplete puts the
   rest of its unit, from its last verified leaf, back in the queue; a gateway that sends
   a bad block is dropped for the rest of the run; 429/5xx answers wait ``Retry-After``
   (or an exponential backoff) before that gateway is asked again.

Directories are fetched with ``dag-scope=all`` from one gateway at a time (failover
restarts the tree); ``cat`` streams one file in order, resuming from the last verified
leaf on the next gateway.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from queue import Queue
from typing import Any, Final, Protocol

import trio

from ..cid import CID, DAG_PB, RAW
from ..errors import (
    CARError,
    CargetError,
    DagPBError,
    DigestMismatch,
    FetchTimeout,
    HashMismatch,
    IncompleteDAG,
    InputError,
    NetworkError,
    NotFoundError,
    UnixFSError,
    UnsafePathError,
    UsageError,
    VerificationError,
)
from ..unixfs.node import Node, decode_unixfs
from .api import FetchResult, ProgressCallback
from .gateways import find_providers, normalize_gateway
from .http import HttpResponse, open_http
from .output import FileOutput, StreamOutput, TreeOutput, file_digest, parse_digest
from .target import Target, parse_target
from .verifier import (
    DagVerifier,
    EntityStart,
    FileData,
    InnerNode,
    PathNotFound,
    Scope,
    VerifierEvent,
)

__all__ = ["FetchOptions", "run_cat", "run_get"]

CAR_ACCEPT: Final = "application/vnd.ipld.car; version=1; order=dfs; dups=y"
#: the spec's idle timeout: no new bytes for this long ends a stream
IDLE_TIMEOUT: Final = 30.0
#: a unit of split work: big enough that a request's overhead vanishes, small enough
#: that two gateways share a file evenly and a failover re-asks for little
UNIT_BYTES: Final = 16 << 20
#: connections per gateway for split downloads (HTTP/1.1 streams are cheap)
STREAMS_PER_GATEWAY: Final = 2
#: failures (timeouts, broken streams) after which a gateway is no longer asked
MAX_FAILURES: Final = 4
#: Retry-After values above this are capped (the run's --timeout bounds the wait anyway)
MAX_RETRY_AFTER: Final = 120.0
#: body pieces in flight between a stream's network task and its verifier thread
PIPE_DEPTH: Final = 4
#: verified batches (each up to ~1 MiB, pinning its receive buffer) waiting for the
#: writer thread: bounds memory per stream at a few MiB
WRITE_QUEUE: Final = 4


class _Output(Protocol):
    written: int

    def handle(self, events: list[VerifierEvent]) -> int: ...


@dataclass
class FetchOptions:
    gateways: list[str]
    digest: str | None = None
    fallback_url: str | None = None
    timeout: float | None = None
    idle_timeout: float = IDLE_TIMEOUT
    progress: ProgressCallback | None = None
    routers: list[str] = field(default_factory=list)
    car_out: str | None = None
    streams_per_gateway: int = STREAMS_PER_GATEWAY
    unit_bytes: int = UNIT_BYTES
    use_hint: bool = True
    log: Callable[[str], None] | None = None


class RetryLater(NetworkError):
    """A 429 or 5xx answer: ask this gateway again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class _Gateway:
    __slots__ = ("dropped", "failures", "not_found", "ready_at", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.dropped = False
        self.failures = 0
        self.not_found = False
        self.ready_at = 0.0


def _retry_after(value: str | None, failures: int) -> float:
    backoff = min(0.25 * float(1 << min(failures, 10)), 8.0)
    if not value:
        return backoff
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when: float = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return backoff
    import time

    return float(max(0.0, min(when - time.time(), MAX_RETRY_AFTER)))


class _Run:
    """State shared by the tasks of one run."""

    def __init__(self, target: Target, opts: FetchOptions) -> None:
        self.target = target
        self.opts = opts
        urls = [normalize_gateway(g) for g in opts.gateways]
        if opts.use_hint and target.gateway_hint:
            urls.append(normalize_gateway(target.gateway_hint))
        self.gateways = [_Gateway(u) for u in dict.fromkeys(urls)]
        self.errors: list[CargetError] = []
        self.bytes_done = 0
        self.total: int | None = None
        self._last_progress = 0.0

    # --- reporting ----------------------------------------------------------------------

    def event(self, name: str, **fields: Any) -> None:
        if self.opts.progress is not None:
            self.opts.progress({"event": name, **fields})

    def log(self, message: str) -> None:
        if self.opts.log is not None:
            self.opts.log(message)

    def progressed(self, n: int) -> None:
        self.bytes_done += n
        now = trio.current_time()
        if now - self._last_progress >= 0.1 or (self.total and self.bytes_done >= self.total):
            self._last_progress = now
            self.event("progress", bytes=self.bytes_done, total=self.total)

    # --- gateway bookkeeping ------------------------------------------------------------

    def usable(self) -> list[_Gateway]:
        return [g for g in self.gateways if not g.dropped and not g.not_found]

    def failed(self, gw: _Gateway, exc: CargetError) -> None:
        """Record a stream's failure and decide the gateway's fate."""
        self.errors.append(exc)
        if gw.dropped:
            return  # another stream of this gateway already had it dropped
        if isinstance(exc, NotFoundError):
            gw.not_found = True
            self.log(f"{gw.url}: not found: {exc}")
            return
        if isinstance(exc, (HashMismatch, CARError, WrongAnswer)) or (
                isinstance(exc, VerificationError) and not isinstance(exc, IncompleteDAG)):
            gw.dropped = True
            self.log(f"{gw.url}: dropped for the rest of the run: {exc}")
            self.event("gateway-dropped", gateway=gw.url, reason=str(exc))
            return
        gw.failures += 1
        delay = exc.delay if isinstance(exc, RetryLater) else _retry_after(None, gw.failures)
        gw.ready_at = trio.current_time() + delay
        self.log(f"{gw.url}: {exc} (retry in {delay:.2g} s)")
        if gw.failures >= MAX_FAILURES:
            gw.dropped = True
            self.event("gateway-dropped", gateway=gw.url, reason=str(exc))

    def final_error(self, what: str) -> CargetError:
        """The error that describes why no gateway could serve ``what``."""
        if not self.gateways:
            return UsageError("no gateway to ask (use --gateway or IPFS_GATEWAY)")
        if self.errors and all(isinstance(e, NotFoundError) for e in self.errors):
            return NotFoundError(f"{what}: not found on any gateway ({self.errors[-1]})")
        for kind in (VerificationError, CARError, WrongAnswer):
            bad = [e for e in self.errors if isinstance(e, kind)]
            if bad:
                err = VerificationError(f"{what}: no gateway gave a verified answer "
                                        f"(last: {bad[-1]})")
                return err
        last = self.errors[-1] if self.errors else None
        if isinstance(last, FetchTimeout):
            return FetchTimeout(f"{what}: {last}")
        return NetworkError(f"{what}: every gateway failed (last: {last})")


class WrongAnswer(CARError):
    """A 200 that is not a CAR (wrong Content-Type): the gateway is not trustless."""


#: errors that verified blocks prove (bad UnixFS, unsafe names, a path that does not
#: exist, a usage problem): asking another gateway cannot help, so they end the run
_CONTENT_ERRORS: Final = (PathNotFound, UsageError, UnixFSError, DagPBError, UnsafePathError,
                          InputError, OSError)


def _leaf_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception worth raising from a nursery's group: an interrupt first, then
    carget's own errors, then anything else but Cancelled, else Cancelled itself."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [eg]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(reversed(e.exceptions))
        else:
            leaves.append(e)
    for kind in (KeyboardInterrupt, CargetError, Exception):
        for e in leaves:
            if isinstance(e, kind):
                return e
    return leaves[0]


@asynccontextmanager
async def _nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery that raises its most telling child exception bare, not in a group, so
    callers can ``except CargetError`` (trio's strict exception groups)."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as eg:
        raise _leaf_error(eg) from None


_Piece = memoryview | None | NetworkError


def _car_url(gw: str, cid: CID, path: tuple[str, ...], scope: str,
             byte_range: tuple[int, int] | None) -> str:
    t = Target(cid, path)
    url = f"{gw}{t.url_path()}?format=car&dag-scope={scope}"
    if byte_range is not None:
        url += f"&entity-bytes={byte_range[0]}:{max(byte_range[0], byte_range[1] - 1)}"
    return url


class _StreamState:
    """What a stream got done: ``written_end`` is where the bytes it handed to the output
    stop (its leaves arrive in file order), the point a failover continues from;
    ``written`` / ``reported`` count bytes for progress (written on the stream's thread,
    reported from trio)."""

    __slots__ = ("reported", "written", "written_end")

    def __init__(self, start: int = 0) -> None:
        self.written_end = start
        self.written = 0
        self.reported = 0


def _torn(verifier: DagVerifier, exc: NetworkError) -> CargetError:
    """A body that broke between two blocks was ended by the gateway (as servers do on a
    missing block): an incomplete DAG. Torn inside a block, or silent: the network."""
    if verifier.at_boundary and not isinstance(exc, FetchTimeout):
        return IncompleteDAG(f"answer ended before the DAG was complete ({exc})")
    return exc


async def _body_on_thread(run: _Run, resp: HttpResponse, verifier: DagVerifier,
                          out: _Output | None, collect: list[VerifierEvent] | None,
                          state: _StreamState) -> None:
    """The bulk path for plain TCP: one worker thread receives (1 MiB reads), verifies
    and writes; trio only waits, reports progress, and on cancellation shuts the socket
    so the thread ends at once. See DESIGN "Performance" and bench_fetch.py."""

    queue: Queue[list[VerifierEvent] | None] = Queue(WRITE_QUEUE)
    failed: list[BaseException] = []

    def writer() -> None:
        # the output stage on its own thread, so pwrite overlaps hashing (both drop the
        # GIL); after an error it keeps draining so the verifier never blocks on put
        while (events := queue.get()) is not None:
            if failed:
                continue
            try:
                assert out is not None
                state.written += out.handle(events)
            except BaseException as exc:
                failed.append(exc)
                continue
            for ev in reversed(events):
                if isinstance(ev, FileData):
                    state.written_end = ev.offset + len(ev.data)
                    break

    def consume(piece: memoryview | None) -> bool:
        if failed:
            raise failed[0]
        events = verifier.feed_eof() if piece is None else verifier.feed(piece)
        if collect is not None:
            collect.extend(events)
        if out is not None and events:
            queue.put(events)
        return verifier.done

    def body() -> None:
        thread = threading.Thread(target=writer, name="carget-write", daemon=True)
        thread.start()
        try:
            resp.read_body_blocking(consume)
        except NetworkError as exc:
            raise _torn(verifier, exc) from None
        finally:
            queue.put(None)
            thread.join()
        if failed:
            raise failed[0]

    def report() -> None:
        n = state.written - state.reported
        if n:
            state.reported += n
            run.progressed(n)

    async def watch() -> None:
        try:
            await trio.sleep_forever()
        finally:
            resp.abort()

    async def ticker() -> None:
        while True:
            await trio.sleep(0.1)
            report()

    async with _nursery() as nursery:
        nursery.start_soon(watch)
        nursery.start_soon(ticker)
        try:
            await trio.to_thread.run_sync(body)
        except CargetError:
            await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: not the gateway's fault
            raise
        finally:
            report()
        nursery.cancel_scope.cancel()


async def _stream(run: _Run, gw: _Gateway, verifier: DagVerifier, out: _Output | None,
                  url: str, collect: list[VerifierEvent] | None = None,
                  state: _StreamState | None = None) -> None:
    """One CAR request, as a three-stage pipeline joined by bounded channels:

    network (trio task, 1 MiB reads) → verifier (worker thread: CAR parsing, hashing) →
    output (another worker thread: pwrite / stdout), so hashing and writing use both
    cores. Raises what the request, the verifier or the output raised.
    """
    async with open_http(url, headers={"Accept": CAR_ACCEPT},
                         idle_timeout=run.opts.idle_timeout) as resp:
        status = resp.status
        if status in (404, 410):
            raise NotFoundError(f"{gw.url} answered {status} for {url}")
        if status == 429 or 500 <= status < 600:
            delay = _retry_after(resp.headers.get("retry-after"), gw.failures)
            raise RetryLater(f"{gw.url} answered {status}", delay)
        if status != 200:
            raise NetworkError(f"{gw.url} answered {status} {resp.reason}")
        ctype = resp.headers.get("content-type", "")
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/vnd.ipld.car":
            raise WrongAnswer(f"{gw.url} answered {ctype or 'no Content-Type'}, not a CAR")
        params = {p.split("=", 1)[0].strip().lower(): p.split("=", 1)[-1].strip().lower()
                  for p in ctype.split(";")[1:]}
        verifier.ordered = params.get("order") == "dfs"
        if resp.detachable:
            await _body_on_thread(run, resp, verifier, out, collect, state or _StreamState())
            return
        # TLS: the same stages with trio receiving and worker threads verifying, writing
        # items: body pieces, None at the end of the body, or the error that broke it
        send, recv = trio.open_memory_channel[_Piece](PIPE_DEPTH)
        wsend, wrecv = trio.open_memory_channel[list[VerifierEvent]](PIPE_DEPTH)

        def verify(pieces: list[_Piece]) -> list[VerifierEvent]:
            events: list[VerifierEvent] = []
            for piece in pieces:
                if isinstance(piece, NetworkError):
                    raise _torn(verifier, piece)
                events += verifier.feed_eof() if piece is None else verifier.feed(piece)
                if verifier.done:
                    break
            return events

        def write(events: list[VerifierEvent]) -> int:
            assert out is not None
            n = out.handle(events)
            if state is not None:
                for ev in reversed(events):
                    if isinstance(ev, FileData):
                        state.written_end = ev.offset + len(ev.data)
                        break
            return n

        async def reader() -> None:
            async with send:
                while True:
                    try:
                        piece: _Piece = await resp.receive()
                    except NetworkError as exc:
                        piece = exc
                    await send.send(piece)
                    if not isinstance(piece, memoryview):
                        return

        async def writer() -> None:
            async with wrecv:
                async for events in wrecv:
                    n = await trio.to_thread.run_sync(write, events)
                    if n:
                        run.progressed(n)

        async with _nursery() as outer:
            if out is not None:
                outer.start_soon(writer)
            async with wsend:
                async with _nursery() as inner:
                    inner.start_soon(reader)
                    async with recv:
                        while not verifier.done:
                            batch: list[_Piece] = [await recv.receive()]
                            while isinstance(batch[-1], memoryview):
                                try:
                                    batch.append(recv.receive_nowait())
                                except (trio.WouldBlock, trio.EndOfChannel):
                                    break
                            events = await trio.to_thread.run_sync(verify, batch)
                            if collect is not None:
                                collect.extend(events)
                            if out is not None and events:
                                await wsend.send(events)
                            if not isinstance(batch[-1], memoryview):
                                break
                    # verified to the end: stop reading (a gateway that never ends is cut
                    # off here); closing wsend lets the writer finish what is verified
                    inner.cancel_scope.cancel()


# --- phase 1: race for the terminal block ------------------------------------------------

@dataclass
class _Resolved:
    cid: CID
    kind: str
    size: int | None
    block: bytes
    events: list[VerifierEvent]
    gateway: _Gateway


async def _resolve(run: _Run) -> _Resolved:
    """Race the gateways for the path's terminal block; the first verified answer wins."""
    target = run.target
    winner: list[_Resolved] = []

    async def attempt(gw: _Gateway, cancel: trio.CancelScope) -> None:
        while not gw.dropped and not gw.not_found:
            wait = gw.ready_at - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            v = DagVerifier(target.cid, target.path, scope=Scope.BLOCK)
            collect: list[VerifierEvent] = []
            url = _car_url(gw.url, target.cid, target.path, Scope.BLOCK, None)
            try:
                await _stream(run, gw, v, None, url, collect)
            except _CONTENT_ERRORS:
                raise  # the content itself is bad or absent: every gateway would agree
            except CargetError as exc:
                run.failed(gw, exc)
                if isinstance(exc, NotFoundError):
                    return
                continue
            start = next(e for e in collect if isinstance(e, EntityStart) and e.path == "")
            block = next((bytes(e.data) for e in collect
                          if isinstance(e, InnerNode) and e.cid == start.cid), b"")
            if not winner:
                winner.append(_Resolved(start.cid, start.kind, start.size, block,
                                        collect, gw))
                cancel.cancel()
            return

    async with _nursery() as nursery:
        for gw in run.usable():
            nursery.start_soon(attempt, gw, nursery.cancel_scope)
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


async def _fetch_file_units(run: _Run, res: _Resolved, out: FileOutput,
                            missing: list[tuple[int, int]]) -> None:
    node = decode_unixfs(res.cid, res.block) if res.cid.codec == DAG_PB else None
    queue = _units(node, missing, run.opts.unit_bytes)
    inflight = 0
    changed = trio.Event()

    def notify() -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    async def worker(gw: _Gateway) -> None:
        nonlocal inflight
        while not gw.dropped and not gw.not_found:
            if not queue:
                if inflight == 0:
                    return
                await changed.wait()
                continue
            wait = gw.ready_at - trio.current_time()
            if wait > 0:
                with trio.move_on_after(wait):
                    await changed.wait()
                continue
            lo, hi = queue.pop(0)
            inflight += 1
            v = DagVerifier(res.cid, scope=Scope.ENTITY, byte_range=(lo, hi))
            state = _StreamState(lo)
            try:
                await _stream(run, gw, v, out, _car_url(gw.url, res.cid, (), Scope.ENTITY,
                                                        (lo, hi)), state=state)
            except _CONTENT_ERRORS:
                raise
            except CargetError as exc:
                rest = max(lo, state.written_end)
                if rest < hi:
                    queue.insert(0, (rest, hi))  # continue from the last verified leaf
                run.failed(gw, exc)
            finally:
                inflight -= 1
                notify()
        notify()

    async with _nursery() as nursery:
        for gw in run.usable():
            for _ in range(max(1, run.opts.streams_per_gateway)):
                nursery.start_soon(worker, gw)
    if queue or not out.covered():
        raise run.final_error(str(run.target))


async def _whole_entity(run: _Run, res: _Resolved, make_out: Callable[[], Any]) -> Any:
    """Fetch a whole entity (a tree with dag-scope=all) from one gateway at a time."""
    first = [res.gateway] + [g for g in run.usable() if g is not res.gateway]
    for gw in first:
        while not gw.dropped and not gw.not_found:
            wait = gw.ready_at - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            out = make_out()
            v = DagVerifier(res.cid, scope=Scope.ALL)
            try:
                await _stream(run, gw, v, out, _car_url(gw.url, res.cid, (), Scope.ALL, None))
                return out
            except _CONTENT_ERRORS:
                out.abandon(False)
                raise
            except CargetError as exc:
                out.abandon(False)
                run.failed(gw, exc)
            except BaseException:
                out.abandon(False)
                raise
    raise run.final_error(str(run.target))


# --- the runs ---------------------------------------------------------------------------

async def _prepare(target_text: str, opts: FetchOptions) -> _Run:
    target = parse_target(target_text)
    if opts.digest is not None:
        parse_digest(opts.digest)
    if opts.fallback_url is not None and opts.digest is None:
        raise UsageError("--fallback-url needs --digest: a plain mirror is unverified otherwise")
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
        import threading
        from contextlib import ExitStack

        from ..car.writer import open_car_writer

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
                self._writer.write_block(Block(cid, bytes(data)))

    def close(self, ok: bool) -> None:
        if ok:
            self._stack.close()
        else:
            self._stack.__exit__(CargetError, CargetError("aborted"), None)


async def _ipfs_get(run: _Run, out_path: str) -> FetchResult:
    opts = run.opts
    res = await _resolve(run)
    run.event("resolved", cid=str(res.cid), kind=res.kind, size=res.size, gateway=res.gateway.url)
    car = _CarSink(opts.car_out) if opts.car_out else None
    ok = False
    try:
        if car is not None:
            car.set_root(res.cid)
            for e in res.events:
                if isinstance(e, InnerNode):
                    car(e.cid, e.data)
        if res.kind == "file":
            assert res.size is not None
            run.total = res.size
            fout = FileOutput(out_path, res.cid, res.size, target=str(run.target))
            fout.on_block = car
            keep = False
            try:
                done = await trio.to_thread.run_sync(fout.resume)
                if done:
                    kept = sum(b - a for a, b in done)
                    run.log(f"resuming: {kept} verified bytes kept")
                    run.event("resume", bytes=kept)
                    run.bytes_done = kept
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
                        await _fetch_file_units(run, res, fout, missing)
                digest = await _check_digest(fout.partial, opts.digest)
                fout.commit()
            except BaseException as exc:
                # interrupted, timed out or cut off: keep what is verified for a rerun;
                # a verification or digest failure leaves nothing behind
                keep = not isinstance(exc, CargetError) or isinstance(exc, NetworkError)
                fout.abandon(keep=keep and (fout.written > 0 or run.bytes_done > 0))
                raise
            size = res.size
        elif res.kind in ("directory", "symlink"):
            if opts.digest is not None:
                raise UsageError("--digest applies to files, and this is a " + res.kind)

            def make() -> TreeOutput:
                t = TreeOutput(out_path)
                t.on_block = car
                return t

            tree = await _whole_entity(run, res, make)
            tree.commit()
            size = tree.written
            digest = None
        else:
            raise UsageError(f"{res.cid} is {res.cid.codec_name}, not a UnixFS file or "
                             f"directory")
        ok = True
    finally:
        if car is not None:
            car.close(ok)
    return FetchResult(str(res.cid), size, digest, "ipfs")


async def _check_digest(path: str, digest: str | None) -> str | None:
    if digest is None:
        return None
    algo, want = parse_digest(digest)
    got = await trio.to_thread.run_sync(file_digest, path, algo)
    if got != f"{algo}:{want}":
        raise DigestMismatch(f"digest mismatch: expected {algo}:{want}, got {got}")
    return got


async def _fallback(run: _Run, out_path: str) -> FetchResult:
    """Download the plain mirror to a temporary file beside ``out_path``; keep it only if
    its digest matches."""
    url = run.opts.fallback_url
    assert url is not None and run.opts.digest is not None
    run.log(f"IPFS failed; trying the fallback mirror {url}")
    run.event("fallback", url=url)
    tmp = out_path + ".carget-fallback"
    try:
        async with open_http(url, idle_timeout=run.opts.idle_timeout) as resp:
            if resp.status != 200:
                raise NetworkError(f"fallback {url} answered {resp.status}")
            total = resp.headers.get("content-length")
            run.total = int(total) if total and total.isdigit() else None
            run.bytes_done = 0
            with open(tmp, "wb") as f:
                while (piece := await resp.receive()) is not None:
                    await trio.to_thread.run_sync(f.write, piece)
                    run.progressed(len(piece))
        digest = await _check_digest(tmp, run.opts.digest)
        os.replace(tmp, out_path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return FetchResult("", os.path.getsize(out_path), digest, "fallback")


async def _bounded(timeout: float | None, fn: Callable[[], Any]) -> Any:
    if timeout is None:
        return await fn()
    try:
        with trio.fail_after(timeout):
            return await fn()
    except trio.TooSlowError:
        raise FetchTimeout(f"the run took longer than --timeout {timeout:g} s") from None


async def run_get(target_text: str, out_path: str, opts: FetchOptions) -> FetchResult:
    """``carget get``: see the module docstring. Raises carget errors (exit codes)."""
    deadline = trio.current_time() + opts.timeout if opts.timeout is not None else None
    run = await _prepare(target_text, opts)
    if not out_path:
        out_path = run.target.default_name
    try:
        result: FetchResult = await _bounded(opts.timeout, lambda: _ipfs_get(run, out_path))
    except CargetError as exc:
        if opts.fallback_url is None or isinstance(exc, UsageError):
            raise
        run.log(f"IPFS: {exc}")
        left = None if deadline is None else max(0.0, deadline - trio.current_time())
        result = await _bounded(left, lambda: _fallback(run, out_path))
    run.event("done", cid=result.cid, size=result.size, digest=result.digest,
              source=result.source, path=out_path)
    return result


async def run_cat(target_text: str, opts: FetchOptions, stream: Any = None) -> FetchResult:
    """``carget cat``: verified bytes of one file to ``stream`` (stdout), in order; each
    stream failure resumes from the last verified leaf on the next gateway."""
    run = await _prepare(target_text, opts)
    if opts.fallback_url is not None:
        raise UsageError("--fallback-url applies to get, not cat")
    algo = parse_digest(opts.digest)[0] if opts.digest else None
    out = StreamOutput(stream if stream is not None else sys.stdout.buffer, algo)

    async def go() -> FetchResult:
        res = await _resolve(run)
        if res.kind != "file":
            raise UsageError(f"{run.target} is a {res.kind}: cat needs a file")
        run.total = res.size
        assert res.size is not None
        if car is not None:
            car.set_root(res.cid)
            for e in res.events:
                if isinstance(e, InnerNode):
                    car(e.cid, e.data)
        gws = [res.gateway] + [g for g in run.gateways if g is not res.gateway]
        while True:
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
                await _stream(run, gw, v, out, url)
                break
            except _CONTENT_ERRORS:
                raise
            except CargetError as exc:
                run.failed(gw, exc)
        digest = None
        if out.hasher is not None and opts.digest is not None:
            algo, want = parse_digest(opts.digest)
            digest = f"{algo}:{out.hasher.hexdigest()}"
            if digest != f"{algo}:{want}":
                raise DigestMismatch(f"digest mismatch: expected {algo}:{want}, got {digest}")
        return FetchResult(str(res.cid), out.pos, digest, "ipfs")

    car = _CarSink(opts.car_out) if opts.car_out else None
    out.on_block = car
    ok = False
    try:
        result: FetchResult = await _bounded(opts.timeout, go)
        ok = True
    finally:
        if car is not None:
            car.close(ok)
    run.event("done", cid=result.cid, size=result.size, digest=result.digest, source="ipfs")
    return result
