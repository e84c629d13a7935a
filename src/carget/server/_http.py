"""HTTP/1.1 under trio with h11: connections, timeouts, and streaming of CAR bodies.

Each connection is its own trio task, so a slow client only ever blocks itself. Bodies go
out in large writes (about a MiB per HTTP chunk). A block that lives in an unchanged file
(a leaf of a served file, a block of a served CAR) is sent straight from the page cache
with ``os.sendfile``, its section prefix and framing by plain writes beside it; a large
block held in memory is sent from where it lies; other blocks are packed into one reused
buffer, each read straight into it with ``os.preadv``.

Memory does not grow with the number of clients. An answer's buffer starts at
:data:`FIRST_BUFFER` and grows (doubling, up to the write size) only after its client has
taken a whole chunk, and only while the bytes of all grown buffers stay within
``ServerLimits.buffer_budget``: a client that asks for a CAR and never reads holds a few
KiB, however many of them there are (issue 12: 600 such clients held a MiB each, ~700 MiB).
Chunks are prepared on the event loop (``ServerLimits.thread_reads`` can move them to
worker threads, which only pays when blocks must be read rather than sent from files).

Limits (all in :class:`ServerLimits`, with the reason beside each):

* ``max_connections``: at the cap, the connection that has waited longest for a request
  to complete (idle, or still sending its head) is closed to make room; only if every
  connection is being answered does the newcomer get a canned 503 with ``Retry-After``.
  Thousands of idle sockets cost one small task each, never a crash; and since a head
  counts as waiting until it is whole, sockets that trickle a header byte every few
  seconds cannot hold the slots either (issue 12: 1,100 of them got every real request
  a 503);
* ``idle_timeout``: a keep-alive connection with no new request is closed;
* ``header_timeout``: once a request has begun, its head must complete (slow-loris);
* ``send_timeout``: a client that reads nothing of one write for this long is dropped.

Descriptors are budgeted for the whole process from ``RLIMIT_NOFILE`` (:class:`FdBudget`):
a reserve for the process itself, a share for files, the rest for connections (so
``max_connections`` may be lowered to fit). A CAR answer holds as many file tokens as it
has files open, and before preparing each chunk it takes enough for the most that chunk
can open (:data:`STEP_FILES`); when the budget is short, it closes its own files and
waits. So an open never fails for want of descriptors, which tore answers mid-body
(issue 12: ``ulimit -n 1024``, a tree of 100 files, 64 clients: 5 torn); an answer that
cannot get them within ``fd_wait`` before its status line is a 503 with ``Retry-After``.

A CAR stream that meets a missing or changed block stops where it is: the connection is
closed without the terminating chunk, so the client sees an incomplete response, never a
padded or wrong one.
"""

from __future__ import annotations

import email.utils
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from http import HTTPStatus

import h11
import trio

from ..car.encoder import section_prefix
from ..cid import CID
from ..errors import (
    CargetError,
    FetchTimeout,
    IncompleteDAG,
    NetworkError,
    NotFoundError,
    VerificationError,
)
from ._car import car_blocks
from ._filebody import file_pieces
from ._pathgw import FileBody
from ._routes import CarPlan, Plan, error_plan, not_modified, plan_request, split_target
from ._sniff import SNIFF_BYTES
from .blocks import (
    SPAN_FILES,
    SPAN_MIN,
    FileSpan,
    Need,
    NeedBlock,
    ServedSource,
    Waiter,
    Waiting,
    Want,
)

__all__ = ["BufferBudget", "FdBudget", "HTTPServer", "ServedStore", "ServerLimits", "fd_plan"]

#: largest request head (request line, headers and the blank line) accepted, exactly: a
#: CID, a deep path and the usual headers take well under 4 KiB; 16 KiB is h11's default
#: too. h11 checks its limit only against an *incomplete* head, so a whole head that came
#: in one read passed even when longer; :meth:`_Connection._next_event` therefore never
#: how long, and how much, a lingering close after an error answer reads before it closes
#: anyway: enough for a client to take the answer, too little to hold a slot
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 << 10
#: reads past this many bytes of head, and a head that does not end within them is a 431
MAX_HEAD_BYTES = 16 * 1024
#: request bodies are not expected on GET/HEAD; a little is drained, more closes the socket
MAX_DRAIN_BYTES = 64 * 1024
RECV_BYTES = 16 * 1024
#: file descriptors one chunk may need: the answer's span cache full, and one more for a
#: block read with ``os.preadv`` (opened and closed within the read)
STEP_FILES = SPAN_FILES + 1
#: descriptors kept out of every budget: stdio, trio's epoll and wake-up socket pair,
#: listeners, module imports, and the one a raw block or a path lookup opens and closes
FD_RESERVE = 64
#: connections refused with a 503 at once: each is a socket until its answer is sent (at
#: most 1 s); past this many, newcomers are closed without one
MAX_REFUSING = 16
#: an answer's first body buffer: the CAR header, section prefixes and the odd small block
#: fit; a client that never reads holds no more than this (and its socket's kernel buffer)
FIRST_BUFFER = 16 * 1024
#: an answer's buffer may grow to this size without drawing on the shared budget: one
#: block read into the buffer (those of SPAN_MIN or more are sent from their file or from
#: memory) and its section prefix always fit
BASE_BUFFER = SPAN_MIN + 4096
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
         b"Content-Length: 0\r\n\r\n")


#: plans of one request that may each wait for a block (a path through a deep DAG of
#: blocks not held yet needs one wait per block on it)
MAX_PLAN_WAITS = 256

ServedStore = ServedSource  # the name this module's users know


@dataclass(frozen=True, slots=True)
class ServerLimits:
    #: concurrent connections served; enough for a LAN mirror, far below the fd limit
    max_connections: int = 1024
    #: keep-alive idle time (nginx's keepalive_timeout is 75 s; 30 s frees sockets sooner)
    idle_timeout: float = 30.0
    #: time for a started request head to arrive in full (slow-loris guard)
    header_timeout: float = 10.0
    #: time one write may wait for a client that reads nothing
    send_timeout: float = 60.0
    #: bytes per body write: large enough that per-write overhead vanishes
    write_size: int = 1024 * 1024
    #: bytes of body buffers beyond BASE_BUFFER, all answers together: 64 clients reading
    #: at full speed get whole 1 MiB writes; past that, answers keep 68 KiB buffers (slower
    #: only for trees of small blocks: large blocks never pass through a buffer)
    buffer_budget: int = 64 * 1024 * 1024
    #: how long a CAR answer may wait for file descriptors before its status line (then
    #: 503 with Retry-After) and before a later chunk (then it is cut)
    fd_wait: float = 10.0
    #: prepare CAR chunks on worker threads while at most this many CAR streams run; 0
    #: never. Blocks of files go out by sendfile, so a chunk costs little to prepare and
    #: the hand-off costs more than it saves (bench_serve.py, 512 MiB to curl: one client
    #: 1.86x on threads, 2.25x on the event loop; 16 clients 1.55x / 2.55x). Threads
    #: only pay when most blocks must be read and re-hashed (files changed since import).
    thread_reads: int = 0
    #: how long an answer waits for one block a filler (the upstream) is getting: the
    #: trustless spec's "no new bytes for 30 s" is a timeout, so the same here
    block_wait: float = 30.0


class _Close(Exception):
    """End this connection now (timeout, broken pipe, protocol error, aborted body)."""


class BufferBudget:
    """Bytes that answers' body buffers may hold beyond :data:`BASE_BUFFER` each, shared by
    all answers of a server (thread-safe: chunks may be prepared on worker threads)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (and nothing reserved) if that would pass the limit."""
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class FdBudget:
    """File descriptors that CAR answers may hold open, for the whole process (trio side:
    taken and given back on the event loop only)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._given = trio.Event()

    def try_take(self, n: int) -> bool:
        if self.free < n:
            return False
        self.free -= n
        return True

    async def take(self, n: int) -> None:
        """Wait until ``n`` are free and take them (cancel with a timeout around it)."""
        while self.free < n:
            await self._given.wait()
        self.free -= n

    def give(self, n: int) -> None:
        if n:
            self.free += n
            self._given.set()
            self._given = trio.Event()


def fd_plan(max_connections: int, nofile: int) -> tuple[int, int]:
    """(connections, file descriptors for answers) that fit in ``nofile`` descriptors:
    :data:`FD_RESERVE` for the process, a quarter of the rest (at least one chunk's
    :data:`STEP_FILES`) for files, the remainder (less :data:`MAX_REFUSING`) for
    connections, at most ``max_connections``."""
    usable = max(0, nofile - FD_RESERVE)
    files = max(STEP_FILES, usable // 4)
    conns = max(1, min(max_connections, usable - files - MAX_REFUSING))
    return conns, files


def _nofile() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


class Chunk:
    """One HTTP body write: byte views (section prefixes, dag-pb framing, blocks read into
    the buffer) and :class:`FileSpan` s (for their file range only: the span's head and
    tail are among the byte views), in order. ``len()`` is the total, so h11 can frame
    it without seeing the bytes."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: list[memoryview | FileSpan], size: int) -> None:
        self.parts = parts
        self.size = size

    def __len__(self) -> int:
        return self.size

    def to_bytes(self) -> bytes:
        """The chunk's bytes (reading the spans): for tests and non-socket streams."""
        out = bytearray()
        for p in self.parts:
            if isinstance(p, FileSpan):
                out += os.pread(p.fd, p.length, p.offset)
            else:
                out += p
        return bytes(out)


def car_chunks(store: ServedStore, plan: CarPlan, size: int,
               fds: dict[str, int] | None = None,
               budget: BufferBudget | None = None) -> Generator[Chunk, None, None]:
    """The CAR body as chunks of about ``size`` bytes. A chunk is valid until the next one
    is asked for (its buffer is reused). Blocks of unchanged files become spans when
    ``fds`` (an open-file cache the caller closes) is given; large blocks held in memory
    are passed by reference. The buffer starts at :data:`FIRST_BUFFER` and grows only
    when a chunk was cut for want of room, i.e. once the client has taken that chunk:
    up to :data:`BASE_BUFFER` freely, beyond it while ``budget`` grants the bytes (no
    budget: up to ``size``). Raises :class:`IncompleteDAG` for a missing block,
    :class:`HashMismatch` for a block whose file changed, after yielding the complete
    sections that came before."""
    most = size + BASE_BUFFER  # a full write plus one buffered block still fits
    held = 0  # bytes taken from ``budget``
    buf = bytearray(FIRST_BUFFER)
    mv = memoryview(buf)
    cap = len(buf)
    # the chunk being built: parts, then the buffered bytes mv[seg:pos]; total counts both
    parts: list[memoryview | FileSpan] = []
    h = plan.header
    seg, pos, total = 0, 0, 0
    #: (parts, seg, pos, total) where the last complete section ends: all that may be sent
    mark = (0, 0, 0, 0)

    def cut(at: tuple[int, int, int, int]) -> Chunk:
        n_parts, start, end, size_ = at
        out = parts[:n_parts]
        if end > start:
            out.append(mv[start:end])
        return Chunk(out, size_)

    def grow(want: int) -> None:
        """A larger buffer (only between chunks: no view of the old one is alive)."""
        nonlocal buf, mv, cap, held
        new = min(most, max(want, 2 * cap))
        extra = max(0, new - BASE_BUFFER)
        if extra > held and budget is not None and not budget.take(extra - held):
            new, extra = max(cap, min(new, BASE_BUFFER)), held
        if new <= cap:
            return
        if budget is not None and extra < held:
            budget.give(held - extra)
        held = extra
        buf = bytearray(new)
        mv = memoryview(buf)
        cap = new

    try:
        if len(h) > cap:
            grow(len(h))
        mv[: len(h)] = h
        pos = total = len(h)
        mark = (0, seg, pos, total)
        for cid in car_blocks(store, plan.resolved, plan.scope, plan.byte_range, plan.dups):
            n = store.size(cid)
            if n is None:
                raise IncompleteDAG(f"block {cid} is not available")
            prefix = section_prefix(cid, n)
            span = store.open_span(cid, fds) if fds is not None else None
            inmem = store.in_memory(cid) if span is None and n >= SPAN_MIN else None
            copied = (len(span.head) + len(span.tail) if span is not None
                      else 0 if inmem is not None else n)
            need = len(prefix) + copied
            if pos + need > cap:
                if total:
                    yield cut(mark)  # taken by the client: the buffer may grow now
                parts, seg, pos, total = [], 0, 0, 0
                mark = (0, 0, 0, 0)
                if cap < most:
                    grow(need)
                if need > cap:  # a block larger than the buffer (up to the 8 MiB CAR limit)
                    big = bytearray(need)
                    big[: len(prefix)] = prefix
                    store.read_into(cid, memoryview(big)[len(prefix):])
                    yield Chunk([memoryview(big)], need)
                    continue
            mv[pos: pos + len(prefix)] = prefix
            pos += len(prefix)
            if span is not None:
                mv[pos: pos + len(span.head)] = span.head
                pos += len(span.head)
                parts.append(mv[seg:pos])
                parts.append(span)
                seg = pos
                mv[pos: pos + len(span.tail)] = span.tail
                pos += len(span.tail)
            elif inmem is not None:
                parts.append(mv[seg:pos])
                parts.append(memoryview(inmem))
                seg = pos
            else:
                pos += store.read_into(cid, mv[pos:])
            total += len(prefix) + n
            mark = (len(parts), seg, pos, total)
            # spans hold open files from open_span's cache, which closes the least recently
            # used beyond SPAN_FILES: a chunk stays well below that, whatever ``size``
            if total >= size or len(parts) >= SPAN_FILES:
                yield cut(mark)
                parts, seg, pos, total = [], 0, 0, 0
                mark = (0, 0, 0, 0)
        if total:
            yield cut(mark)
    except (CargetError, OSError):
        if mark[3]:
            yield cut(mark)
        raise
    finally:
        if budget is not None and held:
            budget.give(held)


def file_chunks(pieces: Generator[memoryview | FileSpan | Need, None, None],
                size: int) -> Generator[Chunk | Need, None, None]:
    """A file body's pieces as chunks of about ``size`` bytes; a :class:`Need` ends the
    chunk being built (it goes out first) and is passed on. Spans per chunk stay below
    half the open-file cache, so no file a chunk needs is closed before it is sent. A span
    that goes on where the one before it ends (:meth:`FileSpan.joined`) is sent with it."""
    parts: list[memoryview | FileSpan] = []
    total = spans = 0
    for piece in pieces:
        if isinstance(piece, Need):
            if parts:
                yield Chunk(parts, total)
                parts, total, spans = [], 0, 0
            yield piece
            continue
        last = parts[-1] if parts else None
        joined = last.joined(piece) if isinstance(last, FileSpan) and \
            isinstance(piece, FileSpan) else None
        if joined is not None:
            parts[-1] = joined
        else:
            parts.append(piece)
        if isinstance(piece, FileSpan):
            total += piece.length
            if joined is None:
                spans += 1
        else:
            total += len(piece)
        if total >= size or spans >= SPAN_FILES // 2:
            yield Chunk(parts, total)
            parts, total, spans = [], 0, 0
    if parts:
        yield Chunk(parts, total)


def planning_want(target: str) -> Want | None:
    """What a request is after, for a filler asked for a block while it is planned: the
    content path, and the first bytes (what a file answer reads to sniff its type)."""
    try:
        segs, _ = split_target(target)
        root = CID.parse(segs[0]) if segs else None
    except (CargetError, ValueError, IndexError, KeyError):
        return None
    if root is None:
        return None
    return Want(root, tuple(segs[1:]), (0, SNIFF_BYTES - 1))


def wait_status(exc: CargetError) -> int:
    """The status of an answer that could not get a block (nothing sent yet)."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, FetchTimeout):
        return 504
    if isinstance(exc, NetworkError | VerificationError):
        return 502
    return 500


def access_line(peer: str, method: str, target: str, status: int, sent: int,
                seconds: float, complete: bool) -> str:
    """One access-log line: time, client, request, status, body bytes, duration; "cut"
    when the answer ended before its end (the client saw it torn)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    shown = target if target.isprintable() else repr(target)
    return (f"{when} {peer} {method} {shown} {status or '-'} {sent} {seconds:.3f}s"
            + ("" if complete else " cut"))


class HTTPServer:
    """Serves one :class:`ServedStore` over HTTP/1.1; hand :meth:`handle` to
    ``trio.serve_listeners``."""

    def __init__(self, store: ServedStore, limits: ServerLimits | None = None, *,
                 waiter: Waiter | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.store = store
        #: makes a missing block arrive (the cache, filled by an upstream); None: a
        #: missing block is missing (404 before the status line, a cut after it)
        self.waiter = waiter
        #: gets one access-log line per request
        self.log = log
        self.limits = limits or ServerLimits()
        self.active = 0
        self.refusing = 0  # sockets being sent the canned 503
        self.streams = 0  # CAR bodies being sent right now
        self.buffers = BufferBudget(self.limits.buffer_budget)
        self.max_connections, files = fd_plan(self.limits.max_connections, _nofile())
        self.files = FdBudget(files)
        # connections waiting for a whole request head (idle or mid-head), longest waiting
        # first: at the cap the first is closed to make room, so neither idle sockets nor
        # slow heads can lock real clients out; only connections being answered are kept
        self.waiting: dict[_Connection, trio.CancelScope] = {}

    def _make_room(self) -> bool:
        if self.active < self.max_connections:
            return True
        if not self.waiting:
            return False
        oldest = next(iter(self.waiting))
        self.waiting.pop(oldest).cancel()
        return True

    async def handle(self, stream: trio.SocketStream) -> None:
        if not self._make_room():
            if self.refusing < MAX_REFUSING:  # else no descriptors to spare: close at once
                self.refusing += 1
                try:
                    with trio.move_on_after(1):
                        await stream.send_all(_BUSY)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
                finally:
                    self.refusing -= 1
            await trio.aclose_forcefully(stream)
            return
        self.active += 1
        conn = _Connection(self, stream)
        try:
            await conn.run()
        except _Close:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:  # a bug must cost one connection, never the server
            traceback.print_exc(file=sys.stderr)
        finally:
            self.waiting.pop(conn, None)
            self.active -= 1
            await trio.aclose_forcefully(stream)


class _Connection:
    def __init__(self, server: HTTPServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.limits = server.limits
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.declared = 0  # Content-Length of the current request's body
        self.files = 0  # descriptors of server.files this connection's answer holds
        self.status = 0  # of the answer being sent (for the access log)
        self.body_bytes = 0  # body bytes of the answer sent so far

    async def run(self) -> None:
        conn = self.conn
        while True:
            try:
                with trio.CancelScope() as waiting:
                    self.server.waiting[self] = waiting
                    event = await self._next_event(request=True)
                self.server.waiting.pop(self, None)  # answering now: never evicted
                if waiting.cancelled_caught:
                    return  # evicted to make room for a new connection
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(exc)
                return
            if isinstance(event, h11.ConnectionClosed) or event is None:
                return
            if not isinstance(event, h11.Request):
                return
            await self._answer(event)
            try:
                await self._drain()
            except h11.RemoteProtocolError:
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _next_event(self, request: bool = False) -> h11.Event | None:
        """Next h11 event; waits with the idle timeout until a request starts, then with
        the header timeout. Raises :class:`_Close` on timeout."""
        conn = self.conn
        deadline = trio.current_time() + (self.limits.idle_timeout if request
                                          else self.limits.header_timeout)
        started = False
        while True:
            event = conn.next_event()
            if event is h11.PAUSED:
                return None
            if event is not h11.NEED_DATA:
                assert isinstance(event, h11.Event)
                return event
            want = RECV_BYTES
            if request:
                want = min(want, MAX_HEAD_BYTES - len(conn.trailing_data[0]))
                if want <= 0:
                    raise h11.RemoteProtocolError(
                        f"request head longer than {MAX_HEAD_BYTES} bytes",
                        error_status_hint=431)
            with trio.move_on_at(deadline):
                data = await self.stream.receive_some(want)
                conn.receive_data(data)
                if request and not started and data:
                    started = True  # still evictable until the head is whole
                    deadline = trio.current_time() + self.limits.header_timeout
                continue
            raise _Close()

    async def _drain(self) -> None:
        """Read the rest of a request (GET bodies are pointless but legal) before reuse."""
        got = 0
        if self.conn.their_state is h11.SEND_BODY and self.declared > MAX_DRAIN_BYTES:
            raise _Close()  # not worth reading: close instead
        while self.conn.their_state is h11.SEND_BODY:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                got += len(event.data)
                if got > MAX_DRAIN_BYTES:
                    raise _Close()
            elif isinstance(event, h11.ConnectionClosed) or event is None:
                raise _Close()

    async def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            plan = error_plan(exc.error_status_hint, f"bad request: {exc}")
            plan.headers.append(("Connection", "close"))
            try:
                await self._send_head(plan.status, plan.headers)
                await self._send(h11.Data(data=plan.body))
                await self._send(h11.EndOfMessage())
                await self._linger()
            except (h11.LocalProtocolError, _Close):
                pass

    async def _linger(self) -> None:
        """After an error answer to a request we did not read whole (a 431 head), close
        our side first and read what the client still sends for a moment: closing with
        unread input makes the kernel send a reset, which can destroy the answer before
        the client reads it (RFC 9112 section 9.6, "lingering close")."""
        try:
            await self.stream.send_eof()
            with trio.move_on_after(LINGER_SECONDS):
                got = 0
                while got < LINGER_BYTES and (data := await self.stream.receive_some(65536)):
                    got += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def _send(self, event: h11.Event) -> None:
        if isinstance(event, h11.Data):
            self.body_bytes += len(event.data)
        parts = self.conn.send_with_data_passthrough(event)
        if not parts:
            return
        await self._send_bytes(parts[0] if len(parts) == 1 else b"".join(parts))

    async def _send_body(self, chunk: Chunk) -> None:
        # h11 frames the chunk (it only needs len() of data passed through); the frame's
        # header and trailer are tiny, the chunk's parts are sent as they are
        self.body_bytes += len(chunk)
        framed = self.conn.send_with_data_passthrough(
            h11.Data(data=chunk))  # type: ignore[arg-type]  # h11 passes any sized data through
        assert framed is not None
        sock = getattr(self.stream, "socket", None)
        if not isinstance(sock, trio.socket.SocketType):  # not a plain socket: copy
            await self._send_bytes(b"".join(p.to_bytes() if isinstance(p, Chunk) else p
                                            for p in framed))
            return
        pieces: list[bytes | memoryview | FileSpan] = []
        for part in framed:
            pieces.extend(part.parts if isinstance(part, Chunk) else [part])
        # System calls straight on the (non-blocking) socket, awaiting only when its buffer
        # is full: trio's await per piece (two pieces per block) cost more than the sends.
        # (No TCP_CORK to pack a section prefix with its block: with a client's fixed
        # receive buffer it stalled each chunk for the 200 ms cork timer; a 40-byte packet
        # per block costs nothing measurable.)
        fd = sock.fileno()
        for piece in pieces:
            if isinstance(piece, FileSpan):
                await self._send_span(sock, fd, piece)
            else:
                await self._send_raw(sock, fd, piece)
        await trio.lowlevel.checkpoint()

    async def _send_bytes(self, data: bytes | memoryview) -> None:
        with trio.move_on_after(self.limits.send_timeout):
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise _Close() from None
            return
        raise _Close()

    async def _send_raw(self, sock: trio.socket.SocketType, fd: int,
                        data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                await self._writable(sock)
                continue
            except OSError:
                raise _Close() from None
            view = view[n:]

    async def _send_span(self, sock: trio.socket.SocketType, fd: int, span: FileSpan) -> None:
        """A block's file range by ``os.sendfile``: no copy into this process. A file that
        shrank or changed meanwhile ends the answer (torn, so never taken as complete)."""
        offset, left = span.offset, span.length
        while left:
            try:
                n = os.sendfile(fd, span.fd, offset, left)
            except BlockingIOError:
                await self._writable(sock)
                continue
            except OSError:
                raise _Close() from None
            if n == 0:  # the file is shorter than when it was indexed
                raise _Close()
            offset += n
            left -= n
        if not span.unchanged():
            raise _Close()  # rewritten during the send: end here, torn

    async def _writable(self, sock: trio.socket.SocketType) -> None:
        with trio.move_on_after(self.limits.send_timeout):
            try:
                await trio.lowlevel.wait_writable(sock)
            except (trio.ClosedResourceError, OSError):
                raise _Close() from None
            return
        raise _Close()

    async def _send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        hdrs = [("Server", "carget"), ("Date", email.utils.formatdate(usegmt=True)), *headers]
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        await self._send(h11.Response(status_code=status, reason=reason,
                                      headers=[(k.encode(), v.encode()) for k, v in hdrs]))

    async def _answer(self, req: h11.Request) -> None:
        start = time.monotonic()
        self.status, self.body_bytes = 0, 0
        method = req.method.decode("ascii", "replace")
        target = req.target.decode("ascii", "replace")
        done = False
        try:
            await self._answer_request(req, method)
            done = True
        finally:
            log = self.server.log
            if log is not None:
                log(access_line(self._peer(), method, target, self.status, self.body_bytes,
                                time.monotonic() - start, done))

    def _peer(self) -> str:
        sock = getattr(self.stream, "socket", None)
        try:
            return str(sock.getpeername()[0]) if sock is not None else "-"
        except OSError:
            return "-"

    async def _plan(self, method: str, target: str, headers: dict[str, str]) -> Plan:
        """Plan the answer; while a block it needs is missing and the waiter can get it,
        wait and plan again. Waits that fail become error answers (nothing is sent yet)."""
        store = self.server.store
        waiter = self.server.waiter
        want = planning_want(target)
        for _ in range(MAX_PLAN_WAITS):
            try:
                plan = plan_request(method, target, headers,
                                    Waiting(store) if waiter is not None else store)
            except NeedBlock as need:
                error = await self._wait_block(need.cid, need.want or want)
                if error is not None:
                    return error
                continue
            if plan.car is not None and waiter is not None and method != "HEAD":
                error = await self._gather_car(plan.car, want)
                if error is not None:
                    return error
            return plan
        return error_plan(504, "too many blocks to wait for before answering")

    async def _gather_car(self, car: CarPlan, want: Want | None) -> Plan | None:
        """Before a CAR answer over a source that can still get blocks: walk it and wait
        until every block it carries is there (a CAR body cannot wait midway), so the
        body then streams from the cache. The walk starts again after each wait, on
        blocks mostly present by then (one fetch brings the whole entity)."""
        store = self.server.store
        if want is not None:
            rng = car.byte_range
            want = Want(want.root, want.segments,
                        None if rng is None else (rng.first, rng.last), car.scope)
        for _ in range(MAX_PLAN_WAITS):
            try:
                for cid in car_blocks(Waiting(store), car.resolved, car.scope,
                                      car.byte_range, car.dups):
                    if store.size(cid) is None:
                        raise NeedBlock(cid)
                return None
            except NeedBlock as need:
                error = await self._wait_block(need.cid, need.want or want)
                if error is not None:
                    return error
            except CargetError:
                return None  # the body meets it again, and ends there
        return error_plan(504, "too many blocks to wait for before answering")

    async def _wait_block(self, cid: CID, want: Want | None) -> Plan | None:
        """Wait for ``cid`` through the waiter: None once it is there, else the error
        answer to give (while no byte is out)."""
        waiter = self.server.waiter
        if waiter is None:
            return error_plan(502, f"block {cid} is not available")
        try:
            with trio.fail_after(self.limits.block_wait):
                await waiter.wait_for(cid, want)
        except trio.TooSlowError:
            return error_plan(504, f"block {cid} did not arrive within "
                               f"{self.limits.block_wait:g} s")
        except CargetError as exc:
            return error_plan(wait_status(exc), str(exc))
        return None

    async def _answer_request(self, req: h11.Request, method: str) -> None:
        headers: dict[str, str] = {}
        for k, v in req.headers:
            name = k.decode("ascii", "replace").lower()
            val = v.decode("latin-1")
            headers[name] = f"{headers[name]}, {val}" if name in headers else val
        length = headers.get("content-length", "0")
        self.declared = int(length) if length.isdigit() else MAX_DRAIN_BYTES + 1
        try:
            target = req.target.decode("ascii")
        except UnicodeDecodeError:
            plan = error_plan(400, "request target is not ASCII")
        else:
            try:
                plan = await self._plan(method, target, headers)
            except Exception as exc:  # a bug: answer 500, keep serving
                traceback.print_exc(file=sys.stderr)
                plan = error_plan(500, f"internal error: {type(exc).__name__}")
        if plan.status in (200, 206) and not_modified(headers.get("if-none-match"),
                                                       plan.etags):
            keep = {"Etag", "Cache-Control", "X-Ipfs-Path", "Ipfs-Uri", "Vary"}  # as kubo 0.43
            await self._send_head(304, [(k, v) for k, v in plan.headers if k in keep])
            await self._send(h11.EndOfMessage())
            return
        if (plan.car is not None or plan.file is not None) and method != "HEAD" \
                and not await self._take_files({}):
            plan = error_plan(503, "busy: no file descriptors to spare; try again")
            plan.headers.append(("Retry-After", "1"))
        try:
            if plan.file is not None and method != "HEAD":
                await self._send_file(plan, plan.file)
            else:
                await self._send_response(method, plan)
        finally:
            self.server.files.give(self.files)  # what the answer did not hand back itself
            self.files = 0

    async def _send_head_checked(self, plan: Plan) -> None:
        try:
            await self._send_head(plan.status, plan.headers)
        except h11.LocalProtocolError:
            # a header h11 will not write (it checks before anything is sent): a bug, since
            # every value from a request or a DAG is escaped; answer it, never a silent close
            traceback.print_exc(file=sys.stderr)
            plan = error_plan(500, "internal error: a response header could not be written")
            await self._send_head(plan.status, plan.headers)

    async def _send_response(self, method: str, plan: Plan) -> None:
        await self._send_head_checked(plan)
        if method == "HEAD":
            await self._send(h11.EndOfMessage())
            return
        if plan.car is not None:
            await self._stream_car(plan)
        else:
            if plan.body:
                await self._send(h11.Data(data=plan.body))
        await self._send(h11.EndOfMessage())

    async def _send_file(self, plan: Plan, body: FileBody) -> None:
        """A file answer: its first chunk is ready (every block it needs waited for)
        before the status line, so a block that never comes is an error status; after
        that, a block that never comes cuts the connection."""
        fds: dict[str, int] = {}
        gen = file_chunks(file_pieces(self.server.store, body.cid, body.size, body.first,
                                      body.last, fds), self.limits.write_size)
        try:
            first = await self._next_chunk(gen, fds, body)
            if isinstance(first, Plan):
                await self._send_response("GET", first)
                return
            await self._send_head_checked(plan)
            chunk = first
            while chunk is not None:
                await self._send_body(chunk)
                nxt = await self._next_chunk(gen, fds, body)
                if isinstance(nxt, Plan):
                    raise _Close()  # bytes are out: cut, so the client sees it torn
                chunk = nxt
            await self._send(h11.EndOfMessage())
        finally:
            gen.close()
            for fd in fds.values():
                os.close(fd)

    async def _next_chunk(self, gen: Generator[Chunk | Need, None, None],
                          fds: dict[str, int], body: FileBody) -> Chunk | Plan | None:
        """The next chunk of a file body (None at its end), waiting for blocks as the
        body asks; an error answer when that fails (a block that never came, a DAG
        that is not what it claims)."""
        while True:
            if not await self._take_files(fds):
                return error_plan(503, "busy: no file descriptors to spare; try again")
            try:
                item = next(gen, None)
            except CargetError as exc:
                return error_plan(wait_status(exc), str(exc))
            except OSError as exc:
                return error_plan(500, f"cannot read a block: {exc.strerror or exc}")
            finally:
                self._settle_files(fds)
            if not isinstance(item, Need):
                return item
            error = await self._wait_block(item.cid, body.want)
            if error is not None:
                return error

    async def _take_files(self, fds: dict[str, int]) -> bool:
        """Hold :data:`STEP_FILES` descriptors of the budget before a chunk is prepared.
        When the budget is short, close this answer's cached files first (the chunk that
        used them is sent) and wait up to ``fd_wait``; False if they never came."""
        budget = self.server.files
        want = STEP_FILES - self.files
        if want <= 0 or budget.try_take(want):
            self.files = max(self.files, STEP_FILES)
            return True
        for fd in fds.values():
            os.close(fd)
        fds.clear()
        budget.give(self.files)
        self.files = 0
        with trio.move_on_after(self.limits.fd_wait):
            await budget.take(STEP_FILES)
            self.files = STEP_FILES
            return True
        return False

    def _settle_files(self, fds: dict[str, int]) -> None:
        """After a chunk: keep tokens only for the files still open in the cache."""
        self.server.files.give(self.files - len(fds))
        self.files = len(fds)

    async def _stream_car(self, plan: Plan) -> None:
        assert plan.car is not None
        fds: dict[str, int] = {}
        gen = car_chunks(self.server.store, plan.car, self.limits.write_size, fds,
                         self.server.buffers)
        self.server.streams += 1
        try:
            await self._pump(gen, fds)
        finally:
            self.server.streams -= 1
            gen.close()
            for fd in fds.values():
                os.close(fd)

    async def _pump(self, gen: Generator[Chunk, None, None], fds: dict[str, int]) -> None:
        while True:
            if not await self._take_files(fds):
                raise _Close()  # descriptors never came: cut rather than fail an open
            try:
                if self.server.streams <= self.limits.thread_reads:
                    chunk = await trio.to_thread.run_sync(next, gen, None)
                else:
                    chunk = next(gen, None)
            except (CargetError, OSError):
                # missing, changed or malformed block: end the stream without its
                # terminating chunk, so the client cannot take it for a complete CAR
                raise _Close() from None
            finally:
                self._settle_files(fds)
            if chunk is None:
                return
            await self._send_body(chunk)
