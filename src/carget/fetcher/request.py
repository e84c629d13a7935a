r"""One CAR request to one gateway and its answer (trio, with worker threads).

HTTP status handling (404 → not found, 429/5xx → retry after ``Retry-After`` or a backoff,
a 200 that is not a CAR → a lying gateway), then the body through the verifier into the
output. The bulk path, plain TCP and TLS alike, is one worker thread per request that
receives with a blocking duplicate of the socket (1 MiB reads), one that verifies, and one
that writes, joined by bounded :class:`~carget.fetcher.channel.Channel`\ s, because a trio
hand-off per piece halved throughput (bench_fetch.py). The request fails when no new
verified block arrives for the idle timeout, and when its answer sends more than
:data:`DISCARD_LIMIT` bytes it does not place.

An answer that goes on past what was asked (a gateway that ignores ``dag-scope`` or
``entity-bytes``) can be kept: the caller's ``follow`` hook decides whether the same
answer goes on to more of the file (:class:`Continuation`), so such a gateway sends each
byte once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import outcome
import trio

from ..cid import CID
from ..errors import (
    CargetError,
    FetchTimeout,
    IncompleteDAG,
    LimitExceeded,
    NetworkError,
    NotFoundError,
    RetryLater,
    WrongAnswer,
)
from .channel import Channel, Stopped
from .http import HttpResponse, open_http
from .outputs import EventOutput
from .run import Gateway, Run, open_nursery, retry_after
from .split import UnitState
from .target import Target
from .verifier import DagVerifier, Scope, VerifierEvent

__all__ = ["CAR_ACCEPT", "Continuation", "Follow", "car_url", "request_car"]

CAR_ACCEPT: Final = "application/vnd.ipld.car; version=1; order=dfs; dups=y"
#: receives (the body pieces of one each) waiting between a request's receiving and
#: verifying threads
PIPE_DEPTH: Final = 1
#: verified batches (each pinning its receive buffer) waiting for the writing thread
WRITE_QUEUE: Final = 1
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
#: seconds a cancelled request waits for its worker threads, which look at their stop
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


@dataclass
class Continuation:
    """Where an answer that goes on past its range continues: the terminal file's bytes
    ``[lo, hi)`` into ``out``, tracked by ``state`` (for a sharded directory, its
    shards: ``lo`` and ``hi`` 0; for a whole tree, ``scope`` :attr:`Scope.ALL`, ``lo``
    and ``hi`` 0). ``complete`` is set once the answer placed all of it."""

    out: EventOutput
    lo: int
    hi: int
    state: UnitState
    scope: str = Scope.ENTITY
    complete: bool = False


#: called (on trio) when an answer's range is complete and its next block lies past it:
#: returns where the same answer goes on, or None to end it there
Follow = Callable[[DagVerifier], Awaitable[Continuation | None]]


#: the pieces of one receive (a chunked answer has several: kubo's gateway sends a
#: section's length and CID in one chunk and its block in the next), the body's end, or
#: the error that broke it
_Piece = list[memoryview] | None | NetworkError

#: the receiver thread's last item
_FINISHED: Final = object()


def car_url(gw: str, cid: CID, path: tuple[str, ...], scope: str,
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


async def _pipeline(run: Run, resp: HttpResponse, verifier: DagVerifier,
                          out: EventOutput | None, collect: list[VerifierEvent] | None,
                          state: UnitState, discards: _Discards,
                          follow: Follow | None = None) -> None:
    """The bulk path: three worker threads joined by bounded queues,

    receive (blocking 1 MiB reads) → verify (CAR parsing, hashing) → write (pwrite),

    so the socket copy, SHA-256 and the file write overlap on both cores (all three drop
    the GIL for their bulk work; bench_fetch.py: a receiver that also hashes left one core
    idle). trio only waits and reports progress. Two flags end the threads: ``enough``
    (set by the verifier when it is done or failed: the receiver stops, the writer
    finishes what is verified) and ``cancelled`` (set when trio cancels the request: every
    thread stops within :data:`~carget.fetcher.http.STOP_POLL` seconds, and the socket
    is shut so the receiver returns at once).

    With ``follow``, an answer whose range is complete but whose next block lies past it
    is offered to ``follow`` (see :class:`Continuation`): the verifier is extended and
    the same answer goes on, into the continuation's output."""

    token = trio.lowlevel.current_trio_token()
    sink: list[Any] = [out, state]  # the output and state now written to (follow moves them)
    cancelled = threading.Event()
    enough = threading.Event()
    pieces: Channel[_Piece | object] = Channel(PIPE_DEPTH, cancelled)
    queue: Channel[list[VerifierEvent] | None] = Channel(WRITE_QUEUE, cancelled)
    failed: list[BaseException] = []
    pending: list[object] = []  # a receiver's item the look-ahead took out of turn
    taken: deque[memoryview] = deque()  # pieces of a receive taken, not yet fed

    def receiver() -> None:
        # ends with exactly one _FINISHED (unless cancelled), after the body's None or
        # the error that broke it; the pieces of one receive go on as one item (one
        # hand-off per receive, however many chunks it held)
        batch: list[memoryview] = []

        def hand_on(piece: memoryview | None) -> bool:
            if piece is None:
                flush()
                pieces.put(None)
            else:
                batch.append(piece)
            return enough.is_set()

        def flush() -> bool:
            if batch:
                pieces.put(batch[:])
                batch.clear()
            return enough.is_set()

        def stopped() -> bool:
            return enough.is_set() or cancelled.is_set()

        try:
            try:
                resp.read_body_blocking(hand_on, run.read_size(), stopped, flush,
                                        run.buffers)
            except NetworkError as exc:
                flush()
                pieces.put(exc)
            except Stopped:
                return
            except BaseException as exc:  # pragma: no cover - a bug: let the verifier raise it
                failed.append(exc)
            pieces.put(_FINISHED)
        except Stopped:
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
        except Stopped:
            pass

    def next_item(within: float | None = None) -> object:
        """The receiver's next item, a receive's pieces one by one (None after
        ``within`` seconds)."""
        if not taken:
            item = pieces.get() if within is None else pieces.get_within(within)
            if not isinstance(item, list):
                return item
            taken.extend(item)
        return taken.popleft()

    def feed(received: list[memoryview]) -> list[VerifierEvent]:
        """Feed a receive's pieces; what is left once the verifier is done is kept for
        the look-ahead."""
        events: list[VerifierEvent] = []
        for i, piece in enumerate(received):
            if verifier.done:
                taken.extend(received[i:])
                break
            events += verifier.feed(piece)
        return events

    def verify() -> None:
        nonlocal collect
        cont: Continuation | None = None
        while True:
            while not verifier.done:
                if taken:  # a receive's pieces the look-ahead left
                    item: object = list(taken)
                    taken.clear()
                else:
                    item = pieces.get()
                if failed:
                    raise failed[0]
                if isinstance(item, NetworkError):
                    raise _torn(verifier, resp, item)
                if item is _FINISHED:  # pragma: no cover - the receiver always ends with None
                    raise NetworkError(f"{resp.url}: body ended without its end")
                sink[1].apply(verifier)
                if item is None:
                    events = verifier.feed_eof()
                else:
                    assert isinstance(item, list)
                    events = feed(item)
                del item
                passed_on(events)
                del events
            if cont is not None:
                cont.complete = True
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
            passed_on(verifier.extend(cont.hi, cont.lo, cont.scope))

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
            piece = next_item(LOOK_AHEAD)
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
            item = next_item(left)
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
        except Stopped:
            return
        finally:
            if clean and _FINISHED not in pending:
                try:
                    settle()
                except Stopped:
                    pass
            enough.set()
            if not resp.finished:
                resp.abort()  # done early or failed: the receiver need not wait for more
            try:
                queue.put(None)  # the writer ends after what is verified
                if _FINISHED not in pending:
                    while pieces.get() is not _FINISHED:  # let a blocked receiver finish
                        pass
            except Stopped:
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

    async with open_nursery() as nursery:
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
    """Run a request's stages on trio's cached worker threads and wait until all have
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
    bytes nor a run of repeated blocks keeps an answer alive."""
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


async def request_car(run: Run, gw: Gateway, verifier: DagVerifier, out: EventOutput | None,
                  url: str, collect: list[VerifierEvent] | None = None,
                  state: UnitState | None = None, follow: Follow | None = None,
                  skipping: int = 0) -> None:
    """One CAR request, as a three-stage pipeline joined by bounded channels:

    network (1 MiB reads) → verifier (worker thread: CAR parsing, hashing) → output
    (another worker thread: pwrite / stdout), so hashing and writing use both cores.
    Raises what the request, the verifier or the output raised; :class:`FetchTimeout`
    when no new verified block arrives for the idle timeout (from the request on, so a
    head that drips in counts too); :class:`LimitExceeded` for an answer that keeps
    sending blocks it has sent before (:class:`_Discards`; ``skipping``: bytes the
    answer is expected to hold that the verifier skips, beyond the run's size). ``follow``:
    see :func:`_pipeline`.
    """
    idle = run.opts.idle_timeout
    with trio.CancelScope() as stalled:
        async with open_nursery() as nursery:
            nursery.start_soon(_watch_progress, verifier, idle, stalled)
            await _answer(run, gw, verifier, out, url, collect, state, follow, skipping)
            nursery.cancel_scope.cancel()
    if stalled.cancelled_caught:
        raise FetchTimeout(f"{url}: no new verified block for {idle:g} s")


async def _answer(run: Run, gw: Gateway, verifier: DagVerifier, out: EventOutput | None,
                  url: str, collect: list[VerifierEvent] | None,
                  state: UnitState | None, follow: Follow | None, skipping: int) -> None:
    """:func:`request_car` without its progress watchdog."""
    async with open_http(url, headers={"Accept": CAR_ACCEPT},
                         idle_timeout=run.opts.idle_timeout, pool=run.pool) as resp:
        status = resp.status
        if status in (404, 410):
            raise NotFoundError(f"{gw.url} answered {status} for {url}")
        if status == 429 or 500 <= status < 600:
            delay = retry_after(resp.headers.get("retry-after"), gw.failures)
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
        discards = _Discards(verifier, (run.total or 0) + skipping)
        state = state or UnitState()
        state.answered = True
        await _pipeline(run, resp, verifier, out, collect, state, discards, follow)
