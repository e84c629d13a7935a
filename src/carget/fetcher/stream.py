"""One CAR request to one gateway, and the bookkeeping every request shares (trio).

HTTP status handling (404 → not found, 429/5xx → retry after ``Retry-After`` or a backoff,
a 200 that is not a CAR → a lying gateway), then the body through the verifier into the
output. The bulk path, plain TCP and TLS alike, is one worker thread per stream that
receives with a blocking duplicate of the socket (1 MiB reads), one that verifies, and one
that writes, because a trio hand-off per piece halved throughput (bench_fetch.py).
``_Run`` holds the gateways' fates: a bad block drops a gateway for the run, failures back
it off, a 404 retires it.

An answer that goes on past what was asked (a gateway that ignores ``dag-scope`` or
``entity-bytes``) can be kept: the caller's ``follow`` hook decides whether the same
answer goes on to more of the file (:class:`Continuation`), so such a gateway sends each
byte once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any, Final, Generic, Protocol, TypeVar

import outcome
import trio

from ..cid import CID
from ..errors import (
    CARError,
    CargetError,
    DagCBORError,
    DagPBError,
    FetchTimeout,
    HashMismatch,
    IncompleteDAG,
    InputError,
    LimitExceeded,
    NetworkError,
    NotFoundError,
    OutputError,
    RetryLater,
    UnixFSError,
    UnsafePathError,
    UsageError,
    VerificationError,
    WrongAnswer,
)
from .api import ProgressCallback
from .gateways import normalize_gateway
from .http import READ_SIZE, STOP_POLL, ConnectionPool, HttpResponse, open_http
from .split import Pace
from .split import StreamState as _StreamState
from .target import Target
from .verifier import (
    DagVerifier,
    PathNotFound,
    VerifierEvent,
)

__all__ = ["Continuation", "FetchOptions", "Follow", "RetryLater", "WrongAnswer"]

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
#: body pieces waiting between a stream's receiving and verifying threads
PIPE_DEPTH: Final = 1
#: verified batches (each pinning its receive buffer) waiting for the writing thread
WRITE_QUEUE: Final = 1
#: pieces a stream holds at once: one being received and one waiting, one or two in the
#: verifier (the decoder keeps the last one), one batch waiting, one being written, and
#: a finished batch the verifier holds while the writer is busy (measured: ~8 MiB of RSS
#: a stream with 1 MiB reads)
PIECES_PER_STREAM: Final = 8
#: receive-buffer bytes a run may hold across all its streams: reads shrink from 1 MiB
#: as streams are added, so memory does not grow with --streams (the 100 MiB budget);
#: up to five streams read a MiB at a time
READ_BUDGET: Final = 40 << 20
MIN_READ: Final = 256 << 10
#: CAR bytes an answer may hold beyond the blocks it places (duplicates the verifier
#: drops, strays, blocks outside the asked range), on top of the whole file's size (a
#: gateway that ignores ``entity-bytes`` honestly sends the whole file): past it, an
#: answer that repeats blocks forever is refused instead of running forever
#: (:class:`~carget.errors.LimitExceeded`, which drops the gateway like a lying one)
DISCARD_LIMIT: Final = 32 << 20
#: CAR bytes of each placed block's section that are not block data (length varint and
#: CID: ~40 bytes for sha2-256, up to ~80 for longer hashes), so an honest answer of
#: tiny blocks never counts as discarding
SECTION_OVERHEAD: Final = 128
#: seconds between two looks of the progress watchdog at what an answer has placed
PROGRESS_POLL: Final = 0.25
#: seconds a cancelled stream waits for its worker threads, which look at their stop
#: flag every STOP_POLL (0.2 s): only a thread stuck in a system call (a write to a
#: full pipe) is still running then, and it is left behind rather than hang the run
STOP_GRACE: Final = 5.0


#: body bytes a complete answer may still send before its end, for its connection to be
#: kept (a chunked answer's last chunk is 5; more means it goes on, and it is cut off)
SETTLE_BYTES: Final = 64 << 10
#: seconds a finished answer waits for the block after its range to tell whether the
#: gateway is sending more than asked (honest answers end at once, so this is only
#: reached by a gateway that stops sending without ending its answer)
LOOK_AHEAD: Final = 1.0


class _Output(Protocol):
    @property
    def written(self) -> int: ...

    def handle(self, events: list[VerifierEvent]) -> int: ...


@dataclass
class Continuation:
    """Where an answer that goes on past its range continues: the terminal file's bytes
    ``[lo, hi)`` into ``out``, tracked by ``state``."""

    out: _Output
    lo: int
    hi: int
    state: _StreamState


#: called (on trio) when an answer's range is complete and its next block lies past it:
#: returns where the same answer goes on, or None to end it there
Follow = Callable[[DagVerifier], Awaitable[Continuation | None]]


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
    log: Callable[[str], None] | None = None
    #: also log each attempt's failure (a retry, a gateway's 404, a dropped gateway);
    #: otherwise only the final error names what failed with each gateway
    verbose: bool = False


class _Gateway:
    __slots__ = ("dropped", "failures", "last_error", "not_found", "ready_at", "url", "whole")

    def __init__(self, url: str) -> None:
        self.url = url
        self.dropped = False
        self.failures = 0
        self.not_found = False
        self.ready_at = 0.0
        self.last_error: CargetError | None = None
        #: it answers with the whole DAG whatever dag-scope and entity-bytes ask (seen
        #: once): every request to it costs the file again, so it gets one stream
        self.whole = False


async def _hold_back(gw: _Gateway, pace: Pace, work_left: bool,
                     changed: Callable[[], trio.Event]) -> bool:
    """A worker's turn on ``gw``: wait out the gateway's back-off, or, while there is
    work and a gateway far faster than this one still serves (``pace``), leave it to that
    one for up to a second before looking again (the fast one may fail). ``changed``
    gives the event that wakes workers when the work changes. True if it waited: the
    caller looks at the work again."""
    wait = gw.ready_at - trio.current_time()
    if wait <= 0 and not (work_left and pace.outpaced(gw)):
        return False
    with trio.move_on_after(wait if wait > 0 else 1.0):
        await changed().wait()
    return True


def _retry_after(value: str | None, failures: int) -> float:
    backoff = min(0.25 * float(1 << min(failures, 10)), 8.0)
    if not value:
        return backoff
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        from email.utils import parsedate_to_datetime  # rare: not worth its import time

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
        if target.gateway_hint:
            urls.append(normalize_gateway(target.gateway_hint))
        self.gateways = [_Gateway(u) for u in dict.fromkeys(urls)]
        self.errors: list[CargetError] = []
        #: streams that may run at once (set by whoever starts them): sizes their reads
        self.streams = 1
        self.bytes_done = 0
        self.total: int | None = None
        self._last_progress = 0.0
        #: kept connections to the gateways (closed by :meth:`close`)
        self.pool = ConnectionPool()

    def close(self) -> None:
        """Close the kept connections (at the end of the run)."""
        self.pool.close()

    # --- reporting ----------------------------------------------------------------------

    def event(self, name: str, **fields: Any) -> None:
        if self.opts.progress is not None:
            self.opts.progress({"event": name, **fields})

    def log(self, message: str) -> None:
        if self.opts.log is not None:
            self.opts.log(message)

    def detail(self, message: str) -> None:
        """A line about one attempt: logged only with ``verbose`` (the final error names
        what failed with each gateway)."""
        if self.opts.verbose:
            self.log(message)

    def progressed(self, n: int) -> None:
        self.bytes_done += n
        now = trio.current_time()
        if now - self._last_progress >= 0.1 or (self.total and self.bytes_done >= self.total):
            self._last_progress = now
            # a leaf that straddles a take-over cut is written by both streams: never
            # report more than the whole
            done = min(self.bytes_done, self.total) if self.total else self.bytes_done
            self.event("progress", bytes=done, total=self.total)

    def read_size(self) -> int:
        """Bytes per receive for each stream: 1 MiB, less once many streams share
        :data:`READ_BUDGET`."""
        per = READ_BUDGET // (PIECES_PER_STREAM * max(1, self.streams))
        return max(MIN_READ, min(READ_SIZE, per - per % 4096))

    # --- gateway bookkeeping ------------------------------------------------------------

    def usable(self) -> list[_Gateway]:
        return [g for g in self.gateways if not g.dropped and not g.not_found]

    def failed(self, gw: _Gateway, exc: CargetError) -> None:
        """Record a stream's failure and decide the gateway's fate."""
        self.errors.append(exc)
        gw.last_error = exc
        if gw.dropped:
            return  # another stream of this gateway already had it dropped
        if isinstance(exc, NotFoundError):
            gw.not_found = True
            self.detail(f"{gw.url}: not found: {exc}")
            return
        if isinstance(exc, (HashMismatch, CARError, WrongAnswer)) or (
                isinstance(exc, VerificationError) and not isinstance(exc, IncompleteDAG)):
            gw.dropped = True
            self.detail(f"{gw.url}: dropped for the rest of the run: {exc}")
            self.event("gateway-dropped", gateway=gw.url, reason=str(exc))
            return
        gw.failures += 1
        delay = exc.delay if isinstance(exc, RetryLater) else _retry_after(None, gw.failures)
        gw.ready_at = trio.current_time() + delay
        self.detail(f"{gw.url}: {exc} (retry in {delay:.2g} s)")
        if gw.failures >= MAX_FAILURES:
            gw.dropped = True
            self.event("gateway-dropped", gateway=gw.url, reason=str(exc))

    def gateway_failures(self) -> str:
        """What last failed with each gateway that failed, in one line ("" if none)."""
        if not any(g.last_error is not None for g in self.gateways):
            return ""
        return _each_gateway(self.gateways)

    def final_error(self, what: str) -> CargetError:
        """The error that describes why no gateway could serve ``what``."""
        if not self.gateways:
            return UsageError("no gateway to ask (use --gateway or IPFS_GATEWAY)")
        each = _each_gateway(self.gateways)
        if self.errors and all(isinstance(e, NotFoundError) for e in self.errors):
            return NotFoundError(f"{what}: not found on any gateway ({each})")
        for kind in (VerificationError, CARError, WrongAnswer):
            if any(isinstance(e, kind) for e in self.errors):
                return VerificationError(f"{what}: no gateway gave a verified answer "
                                         f"({each})")
        last = self.errors[-1] if self.errors else None
        if isinstance(last, FetchTimeout):
            return FetchTimeout(f"{what}: {last}")
        return NetworkError(f"{what}: every gateway failed ({each})")


def _each_gateway(gateways: list[_Gateway]) -> str:
    """What last failed with each gateway, in one line: ``URL: answered 404; URL: cannot
    connect: ...`` (the request URL each error repeats is left out)."""
    parts = []
    for gw in gateways:
        if gw.last_error is None:
            continue
        text = str(gw.last_error).removeprefix(gw.url)
        if text.startswith("/"):  # "{request url}: what happened"
            text = text.partition(": ")[2] or text
        text = text.lstrip(" :")
        parts.append(f"{gw.url}: {text.partition(' for http')[0]}")
    return "; ".join(parts) or "no answer"


#: errors that verified blocks prove (bad UnixFS, unsafe names, a path that does not
#: exist, a usage problem): asking another gateway cannot help, so they end the run
_CONTENT_ERRORS: Final = (PathNotFound, UsageError, UnixFSError, DagPBError, DagCBORError,
                          UnsafePathError, InputError, OutputError, OSError)


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
_T = TypeVar("_T")


class _Stopped(Exception):
    """A stream's threads were told to stop (the run was cancelled)."""


#: put into a channel by :meth:`_Channel.wake`
_WAKE: Final = object()


class _Channel(Generic[_T]):
    """A bounded hand-off between two threads, made of two C-level ``SimpleQueue``s (items,
    and room tokens). ``queue.Queue`` runs a Python-level Condition on every put and get:
    GIL time that the hashing thread, back from a block's SHA-256, then waits for.

    Every wait looks at ``stop`` each :data:`~carget.fetcher.http.STOP_POLL` seconds and
    raises :class:`_Stopped` once it is set, so no thread outlives a cancelled run."""

    def __init__(self, depth: int, stop: threading.Event) -> None:
        self._items: SimpleQueue[_T] = SimpleQueue()
        self._room: SimpleQueue[None] = SimpleQueue()
        self._stop = stop
        for _ in range(depth):
            self._room.put(None)

    def _wait(self, queue: SimpleQueue[Any]) -> Any:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return queue.get(timeout=STOP_POLL)
            except Empty:
                continue

    def put(self, item: _T) -> None:
        self._wait(self._room)
        self._items.put(item)

    def get(self) -> _T:
        item: _T = self._wait(self._items)
        if item is _WAKE:
            raise _Stopped
        self._room.put(None)
        return item

    def wake(self) -> None:
        """After ``stop`` is set: end the waits blocked on this channel now rather than
        at their next look at the flag (a cancelled race waited STOP_POLL on them)."""
        self._items.put(_WAKE)  # type: ignore[arg-type]
        self._room.put(None)

    def get_within(self, seconds: float) -> _T | None:
        """:meth:`get`, or None after ``seconds`` (raises :class:`_Stopped` as soon as
        ``stop`` is set, as every wait here does)."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stop.is_set():
                raise _Stopped
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                item: _T = self._items.get(timeout=min(left, STOP_POLL))
            except Empty:
                continue
            if item is _WAKE:
                raise _Stopped
            self._room.put(None)
            return item

#: the receiver thread's last item
_FINISHED: Final = object()


def _car_url(gw: str, cid: CID, path: tuple[str, ...], scope: str,
             byte_range: tuple[int, int] | None) -> str:
    t = Target(cid, path)
    url = f"{gw}{t.url_path()}?format=car&dag-scope={scope}"
    if byte_range is not None:
        url += f"&entity-bytes={byte_range[0]}:{max(byte_range[0], byte_range[1] - 1)}"
    return url


def _torn(verifier: DagVerifier, resp: HttpResponse, exc: NetworkError) -> CargetError:
    """A body that broke between two blocks was ended by the gateway (as servers do on a
    missing block): an incomplete DAG. Torn inside a block, silent, or malformed HTTP
    (a garbage chunk-size line is no clean cut): the network."""
    if verifier.at_boundary and not isinstance(exc, FetchTimeout) and not resp.garbled:
        return IncompleteDAG(f"answer ended before the DAG was complete ({exc})")
    return exc


class _Discards:
    """The bound on what an answer may send beyond the blocks it places: repeats of blocks
    already placed, strays, blocks outside the asked range (:data:`DISCARD_LIMIT` plus
    ``allowance``). Blocks replayed from memory count as placed, so an honest ``dups=y``
    answer that resends them later stays inside the bound."""

    __slots__ = ("allowance", "blocks", "verifier")

    def __init__(self, verifier: DagVerifier, allowance: int) -> None:
        self.verifier = verifier
        self.allowance = DISCARD_LIMIT + allowance
        self.blocks = 0

    def check(self, events: list[VerifierEvent]) -> None:
        """After a feed on the verifying thread. Raises :class:`LimitExceeded` once the
        answer holds more unplaced bytes than allowed."""
        self.blocks += len(events)
        v = self.verifier
        extra = v.offset - v.placed_bytes - SECTION_OVERHEAD * self.blocks
        if extra > self.allowance:
            raise LimitExceeded(f"answer holds more than {self.allowance} bytes of repeated, "
                                f"stray or unasked blocks")


async def _body_on_thread(run: _Run, resp: HttpResponse, verifier: DagVerifier,
                          out: _Output | None, collect: list[VerifierEvent] | None,
                          state: _StreamState, discards: _Discards,
                          follow: Follow | None = None) -> None:
    """The bulk path for plain TCP: three worker threads joined by bounded queues,

    receive (blocking 1 MiB reads) → verify (CAR parsing, hashing) → write (pwrite),

    so the socket copy, SHA-256 and the file write overlap on both cores (all three drop
    the GIL for their bulk work; bench_fetch.py: a receiver that also hashes left one core
    idle). trio only waits and reports progress. Two flags end the threads: ``enough``
    (set by the verifier when it is done or failed: the receiver stops, the writer
    finishes what is verified) and ``cancelled`` (set when trio cancels the stream: every
    thread stops within :data:`~carget.fetcher.http.STOP_POLL` seconds, and the socket
    is shut so the receiver returns at once).

    With ``follow``, an answer whose range is complete but whose next block lies past it
    is offered to ``follow`` (see :class:`Continuation`): the verifier is extended and
    the same answer goes on, into the continuation's output."""

    token = trio.lowlevel.current_trio_token()
    sink: list[Any] = [out, state]  # the output and state now written to (follow moves them)
    cancelled = threading.Event()
    enough = threading.Event()
    pieces: _Channel[_Piece | object] = _Channel(PIPE_DEPTH, cancelled)
    queue: _Channel[list[VerifierEvent] | None] = _Channel(WRITE_QUEUE, cancelled)
    failed: list[BaseException] = []
    pending: list[object] = []  # a receiver's item the look-ahead took out of turn

    def receiver() -> None:
        # ends with exactly one _FINISHED (unless cancelled), after the body's None or
        # the error that broke it
        def hand_on(piece: memoryview | None) -> bool:
            pieces.put(piece)
            return enough.is_set()

        def stopped() -> bool:
            return enough.is_set() or cancelled.is_set()

        try:
            try:
                resp.read_body_blocking(hand_on, run.read_size(), stopped)
            except NetworkError as exc:
                pieces.put(exc)
            except _Stopped:
                return
            except BaseException as exc:  # pragma: no cover - a bug: let the verifier raise it
                failed.append(exc)
            pieces.put(_FINISHED)
        except _Stopped:
            pass

    def writer() -> None:
        # the output stage on its own thread, so pwrite overlaps hashing (both drop the
        # GIL); after an error it keeps draining so the verifier never blocks on put
        try:
            while (events := queue.get()) is not None:
                if failed:
                    continue
                into, st = sink
                try:
                    st.written += into.handle(events)
                except BaseException as exc:
                    failed.append(exc)
                    continue
                st.note(events)
        except _Stopped:
            pass

    def verify() -> None:
        nonlocal collect
        while True:
            while not verifier.done:
                piece = pieces.get()
                if failed:
                    raise failed[0]
                if isinstance(piece, NetworkError):
                    raise _torn(verifier, resp, piece)
                if piece is _FINISHED:  # pragma: no cover - the receiver always ends with None
                    raise NetworkError(f"{resp.url}: body ended without its end")
                assert piece is None or isinstance(piece, memoryview)
                sink[1].apply(verifier)
                events = verifier.feed_eof() if piece is None else verifier.feed(piece)
                del piece
                passed_on(events)
                del events
            if follow is None or not look_ahead():
                return
            cont = trio.from_thread.run(follow, verifier, trio_token=token)
            if cont is None:
                return
            # the same answer goes on into the continuation's output; what it verified
            # before (a race's terminal block) is the caller's already
            collect = None
            sink[:] = [cont.out, cont.state]
            discards.allowance = DISCARD_LIMIT + cont.hi - cont.lo
            passed_on(verifier.extend(cont.hi, cont.lo))

    def passed_on(events: list[VerifierEvent]) -> None:
        discards.check(events)
        if collect is not None:
            collect.extend(events)
        if sink[0] is not None and events:
            queue.put(events)

    def look_ahead() -> bool:
        """Whether the block after the range lies past it (verifier.beyond), waiting up
        to LOOK_AHEAD for the bytes that tell."""
        seen = verifier.beyond()
        while seen is None:
            piece = pieces.get_within(LOOK_AHEAD)
            if not isinstance(piece, memoryview):
                if piece is not None:
                    # the answer ended or broke there: hand the receiver's last item back
                    # for verify_stage's drain, which waits for _FINISHED
                    pending.append(piece)
                return False
            seen = verifier.beyond(piece)
            del piece
        return seen

    def settle() -> None:
        """After a complete answer: let the receiver read the body's end (a chunked
        answer's last chunk, usually in the same read), so the connection can carry the
        next request; give up after SETTLE_BYTES more bytes or LOOK_AHEAD seconds."""
        extra = 0
        deadline = time.monotonic() + LOOK_AHEAD
        while (left := deadline - time.monotonic()) > 0:
            item = pieces.get_within(left)
            if isinstance(item, memoryview):
                extra += len(item)
                if extra > SETTLE_BYTES:
                    return
                continue
            if item is None and not resp.finished:
                return  # waited LOOK_AHEAD in vain
            if item is _FINISHED:
                pending.append(item)
                return
            if item is not None:  # the body broke after the answer was complete
                return

    def verify_stage() -> None:
        clean = False
        try:
            verify()
            clean = not failed
        except _Stopped:
            return
        finally:
            if clean and _FINISHED not in pending:
                try:
                    settle()
                except _Stopped:
                    pass
            enough.set()
            if not resp.finished:
                resp.abort()  # done early or failed: the receiver need not wait for more
            try:
                queue.put(None)  # the writer ends after what is verified
                if _FINISHED not in pending:
                    while pieces.get() is not _FINISHED:  # let a blocked receiver finish
                        pass
            except _Stopped:
                pass

    def report() -> None:
        st = sink[1]
        n = st.written - st.reported
        if n:
            st.reported += n
            run.progressed(n)

    def stop_threads() -> None:
        cancelled.set()
        pieces.wake()
        queue.wake()
        resp.abort()

    async def ticker() -> None:
        while True:
            await trio.sleep(0.1)
            report()

    async with _nursery() as nursery:
        nursery.start_soon(ticker)
        try:
            await _run_stages(stop_threads, writer, receiver, verify_stage)
            if failed:
                raise failed[0]
        except CargetError:
            await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: not the gateway's fault
            raise
        finally:
            report()
        nursery.cancel_scope.cancel()


async def _run_stages(stop: Callable[[], None], *stages: Callable[[], None]) -> None:
    """Run a stream's stages on trio's cached worker threads and wait until all have
    ended; raise the first error one of them raised.

    Each stage always starts (``start_thread_soon`` has no cancellation point): a stage
    that never ran would leave the others waiting on their queues forever, as could
    happen with one ``to_thread.run_sync`` per stage cancelled before its thread began.
    When the wait is cancelled, ``stop()`` tells the threads to stop (every blocking
    loop in them looks at a stop flag at least every
    :data:`~carget.fetcher.http.STOP_POLL` seconds), and the wait goes on, shielded, for
    up to :data:`STOP_GRACE` seconds, so the output is not cleaned up under a thread
    still writing it. Cached threads, not a new thread per request: a split ``cat``
    makes one request per segment, and each new thread brought its own malloc arena
    (~20 MiB of RSS a run)."""
    token = trio.lowlevel.current_trio_token()
    ended = trio.Event()
    results: list[outcome.Outcome[None]] = []

    def deliver(result: outcome.Outcome[None]) -> None:  # on the stage's thread
        def note() -> None:
            results.append(result)
            if len(results) == len(stages):
                ended.set()

        try:
            token.run_sync_soon(note)
        except trio.RunFinishedError:  # left behind past STOP_GRACE, and trio is gone
            pass

    for stage in stages:
        trio.lowlevel.start_thread_soon(stage, deliver, name=f"carget {stage.__name__}")
    try:
        await ended.wait()
    except trio.Cancelled:
        stop()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(STOP_GRACE):
                await ended.wait()
        raise
    for result in results:
        result.unwrap()


async def _watch_progress(verifier: DagVerifier, idle: float, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` once ``idle`` seconds pass in which the answer placed no new
    verified block: the idle timer counts progress, not bytes, so neither a drip of
    bytes nor a stream of repeated blocks keeps an answer alive."""
    last = verifier.placed_bytes
    since = trio.current_time()
    while True:
        await trio.sleep(min(PROGRESS_POLL, idle / 2))
        placed = verifier.placed_bytes
        now = trio.current_time()
        if placed != last:
            last, since = placed, now
        elif now - since >= idle:
            scope.cancel()
            return


async def _stream(run: _Run, gw: _Gateway, verifier: DagVerifier, out: _Output | None,
                  url: str, collect: list[VerifierEvent] | None = None,
                  state: _StreamState | None = None, follow: Follow | None = None) -> None:
    """One CAR request, as a three-stage pipeline joined by bounded channels:

    network (1 MiB reads) → verifier (worker thread: CAR parsing, hashing) → output
    (another worker thread: pwrite / stdout), so hashing and writing use both cores.
    Raises what the request, the verifier or the output raised; :class:`FetchTimeout`
    when no new verified block arrives for the idle timeout (from the request on, so a
    head that drips in counts too); :class:`LimitExceeded` for an answer that keeps
    sending blocks it has sent before (:class:`_Discards`). ``follow``: see
    :func:`_body_on_thread`.
    """
    idle = run.opts.idle_timeout
    with trio.CancelScope() as stalled:
        async with _nursery() as nursery:
            nursery.start_soon(_watch_progress, verifier, idle, stalled)
            await _answer(run, gw, verifier, out, url, collect, state, follow)
            nursery.cancel_scope.cancel()
    if stalled.cancelled_caught:
        raise FetchTimeout(f"{url}: no new verified block for {idle:g} s")


async def _answer(run: _Run, gw: _Gateway, verifier: DagVerifier, out: _Output | None,
                  url: str, collect: list[VerifierEvent] | None,
                  state: _StreamState | None, follow: Follow | None) -> None:
    """:func:`_stream` without its progress watchdog."""
    async with open_http(url, headers={"Accept": CAR_ACCEPT},
                         idle_timeout=run.opts.idle_timeout, pool=run.pool) as resp:
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
        discards = _Discards(verifier, run.total or 0)
        await _body_on_thread(run, resp, verifier, out, collect, state or _StreamState(),
                              discards, follow)
