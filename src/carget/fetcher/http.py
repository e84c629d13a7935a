"""A lean HTTP/1.1 GET for CAR bodies: trio streams, 1 MiB reads, no per-chunk machinery.

Why not httpx for the bulk body: measured on loopback (DESIGN "Performance",
``benchmarks/bench_fetch.py``), httpx's per-chunk layers (h11 events, decoders, byte-stream
wrappers) cost up to 3x against a bare trio stream read 1 MiB at a time. This module
writes one request and hands the bytes it receives to the one strict sans-IO framing
reader (:class:`~carget.fetcher.framing.ResponseReader`), which returns body pieces as
memoryview slices of the receive buffers (no copies) for Content-Length, chunked and
close-delimited bodies. The same reader frames the body whether trio receives it
(:meth:`HttpResponse.receive`) or a worker thread does
(:meth:`HttpResponse.read_body_blocking`), for plain TCP and TLS alike
(:mod:`carget.fetcher.connection`). httpx stays for the small JSON requests (delegated
routing), with the same trust store.

Proxies: every request here (gateway CAR and raw requests) goes through the proxy the
environment names for its URL (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
``NO_PROXY``, matched as httpx matches them, so the httpx requests agree:
:mod:`carget.fetcher.proxy`): ``http`` in absolute form to the proxy, ``https`` through a
``CONNECT`` tunnel; the gateway's name is then resolved by the proxy alone.

Redirects (:func:`open_http`'s ``redirects``), the one policy for every request carget
makes with this module:

* ``"same-origin"`` (gateway CAR and raw requests, the default): a redirect is followed
  only to the same scheme, host and port, at most :data:`MAX_REDIRECTS` times. A gateway
  that redirects elsewhere is failing (:class:`NetworkError` naming the target), so a
  gateway can never aim carget's requests at another ``host:port``.
* ``"https"`` (the ``--fallback-url`` mirror, whose bytes ``--digest`` checks; fetched
  with httpx, which asks :func:`may_follow` about each redirect): also follows redirects
  to ``https`` URLs on any host (mirrors hand off to CDNs), never from ``https`` down to
  ``http``.

Every receive has the idle timeout (no bytes for that long is :class:`FetchTimeout`).
Errors: :class:`NetworkError` for refused connections, broken streams, malformed HTTP and
refused redirects.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urljoin, urlsplit

import trio

from ..errors import FetchTimeout, NetworkError
from .buffers import ReceiveBuffers
from .connection import (
    RCVBUF,
    Connection,
    ConnectionPool,
    PoolKey,
    open_connection,
    proxy_authorization,
    ssl_context,
)
from .framing import END, NEED_DATA, Head, ResponseReader
from .proxy import proxy_for

__all__ = ["MAX_REDIRECTS", "RCVBUF", "READ_SIZE", "STOP_POLL", "USER_AGENT", "ConnectionPool",
           "HttpResponse", "RedirectPolicy", "may_follow", "open_http", "ssl_context"]

#: bytes asked of each receive: large reads are what make the body path fast
READ_SIZE: Final = 1 << 20
#: redirects followed before giving up (httpx's default is 20; gateways use one or two)
MAX_REDIRECTS: Final = 5
#: seconds a blocking receive waits before it looks at its stop flag again: a worker
#: thread ends this soon after the run is cancelled (trio's to_thread guidance)
STOP_POLL: Final = 0.2
USER_AGENT: Final = "carget/0.1"

RedirectPolicy = Literal["same-origin", "https"]

@dataclass
class HttpResponse:
    """The head of a response (``headers`` keyed in lower case) and its body reader."""

    url: str
    status: int
    reason: str
    headers: dict[str, str]
    _conn: Connection
    _idle: float
    _reader: ResponseReader = field(default_factory=ResponseReader)
    key: PoolKey | None = None  # where its connection goes back to in a pool
    keep_alive: bool = False  # the server allows another request on the connection

    @property
    def finished(self) -> bool:
        """True once the whole body was read."""
        return self._reader.finished

    @property
    def reusable(self) -> bool:
        """The connection may carry another request: the body is complete, and the
        server allows it."""
        return (self.keep_alive and self._reader.finished and self.key is not None
                and not self._conn.aborted)

    @property
    def garbled(self) -> bool:
        """True once the body turned out malformed (not merely cut short)."""
        return self._reader.garbled

    @property
    def detachable(self) -> bool:
        """True while there is body left for :meth:`read_body_blocking` to read (plain TCP
        and TLS alike: see :mod:`carget.fetcher.connection`)."""
        return not self._reader.finished

    def read_body_blocking(self, consume: Callable[[memoryview | None], bool],
                           read_size: int = READ_SIZE,
                           stopped: Callable[[], bool] = lambda: False,
                           receiving: Callable[[], bool] = lambda: False,
                           buffers: ReceiveBuffers | None = None) -> None:
        """On a worker thread: read the rest of the body, ``read_size`` bytes at most at a
        time, calling ``consume(piece)`` for each piece and ``consume(None)`` at its end;
        stop early when ``consume`` returns True, or (within :data:`STOP_POLL` s, without
        calling ``consume(None)``) once ``stopped()`` is true. ``receiving()`` is called
        before each receive, once every piece of what came before is consumed (stop when
        it returns True), so a caller can hand the pieces of one receive on together.
        Receives go into buffers from ``buffers`` when given (reused once no piece of
        them is referenced), else into a new one each.
        Raises :class:`NetworkError` for a broken or malformed body,
        :class:`FetchTimeout` after the idle timeout with no bytes. Call :meth:`abort`
        from trio to make it return at once."""
        sock = self._conn.blocking_reader(min(self._idle, STOP_POLL), buffers)
        reader = self._reader
        try:
            heard = time.monotonic()
            while True:
                event = reader.next_event()
                if isinstance(event, memoryview):
                    if consume(event) or stopped():
                        return
                elif event is END:
                    consume(None)
                    return
                elif event is NEED_DATA:
                    if receiving():
                        return
                    try:
                        data = sock.recv(read_size)
                    except TimeoutError:
                        if stopped():
                            return
                        if time.monotonic() - heard >= self._idle:
                            raise FetchTimeout(f"{self.url}: no bytes for {self._idle:g} s"
                                               ) from None
                        continue
                    except OSError as exc:
                        raise NetworkError(f"{self.url}: connection broke: {exc}") from None
                    heard = time.monotonic()
                    if data:
                        reader.feed(data)
                    else:
                        reader.feed_eof()
                else:  # pragma: no cover - a second head cannot follow the first
                    raise NetworkError(f"{self.url}: unexpected {event!r}")
        finally:
            sock.close()

    def abort(self) -> None:
        """Shut the connection down so a blocking body read ends at once."""
        self._conn.abort()

    async def _recv(self) -> bytes:
        with trio.move_on_after(self._idle) as scope:
            try:
                data = await self._conn.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise NetworkError(f"{self.url}: connection broke: {exc}") from None
        if scope.cancelled_caught:
            raise FetchTimeout(f"{self.url}: no bytes for {self._idle:g} s")
        return data

    async def _next_event(self) -> Head | memoryview | None:
        """The reader's next head or body piece (None at the end of the body), receiving
        as it needs."""
        reader = self._reader
        while True:
            event = reader.next_event()
            if event is NEED_DATA:
                data = await self._recv()
                if data:
                    reader.feed(data)
                else:
                    reader.feed_eof()
                continue
            if event is END:
                return None
            assert isinstance(event, (Head, memoryview))
            return event

    async def receive(self) -> memoryview | None:
        """The next piece of body (a memoryview, valid as long as you keep it), or None
        once the body is complete. Raises :class:`NetworkError` if it ends early or is
        malformed, :class:`FetchTimeout` after the idle timeout with no bytes."""
        event = await self._next_event()
        if isinstance(event, Head):  # pragma: no cover - the head was taken by _open_once
            raise NetworkError(f"{self.url}: a second response head")
        return event


async def _connect(url: str, idle: float, pool: ConnectionPool | None
                   ) -> tuple[Connection, str, PoolKey, bool]:
    """A connection for ``url`` (a kept one from ``pool`` if there is one), the start of
    its request, its pool key, and whether it was kept."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetworkError(f"unsupported URL {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        proxy = proxy_for(url)
    except ValueError as exc:
        raise NetworkError(f"{url}: {exc}") from None
    key: PoolKey = (parts.scheme, parts.hostname, port, proxy)
    conn = pool.take(key) if pool is not None else None
    kept = conn is not None
    if conn is None:
        conn = await open_connection(url, parts.scheme, parts.hostname, port, idle, proxy)
        if pool is not None:
            pool.opened += 1
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.netloc.rpartition("@")[2]
    if proxy is not None and parts.scheme == "http":
        # absolute form to the proxy (RFC 9112 §3.2.2): the proxy resolves the name
        return conn, (f"GET http://{host}{target} HTTP/1.1\r\nHost: {host}\r\n"
                      f"{proxy_authorization(proxy)}"), key, kept
    return conn, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n", key, kept


async def _open_once(url: str, headers: dict[str, str], idle: float,
                     pool: ConnectionPool | None) -> HttpResponse:
    for _ in range(2):
        conn, request, key, kept = await _connect(url, idle, pool)
        try:
            # without a pool, say so: the server need not wait for another request
            lines = [request, f"User-Agent: {USER_AGENT}\r\n"]
            if pool is None:
                lines.append("Connection: close\r\n")
            lines += [f"{k}: {v}\r\n" for k, v in headers.items()]
            lines.append("\r\n")
            try:
                with trio.fail_after(idle):
                    await conn.send_all("".join(lines).encode("latin-1"))
            except trio.TooSlowError:
                raise FetchTimeout(f"{url}: sending the request took more than {idle:g} s"
                                   ) from None
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise NetworkError(f"{url}: connection broke: {exc}") from None
            resp = HttpResponse(url, 0, "", {}, conn, idle, ResponseReader(url), key=key)
            head = await resp._next_event()
            if not isinstance(head, Head):  # pragma: no cover - the reader gives a head first
                raise NetworkError(f"{url}: no response head")
            resp.status, resp.reason, resp.headers = head.status, head.reason, head.headers
            resp.keep_alive = head.keep_alive
            return resp
        except NetworkError:
            await conn.aclose()
            if kept and not conn.received:
                continue  # a kept connection the server had closed meanwhile: a fresh one
            raise
        except BaseException:
            await conn.aclose()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: no origin to match
        port = -1
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def may_follow(policy: RedirectPolicy, here: str, there: str) -> bool:
    """The redirect policy of the module docstring: same origin always; with ``"https"``
    also any ``https`` URL."""
    if _origin(there) == _origin(here):
        return True
    return policy == "https" and urlsplit(there).scheme.lower() == "https"


@asynccontextmanager
async def open_http(url: str, *, headers: dict[str, str] | None = None,
                    idle_timeout: float = 30.0,
                    redirects: RedirectPolicy = "same-origin",
                    pool: ConnectionPool | None = None) -> AsyncIterator[HttpResponse]:
    """GET ``url`` and yield the response once its head is in, following redirects as
    ``redirects`` allows (see the module docstring).

    With a ``pool``, the request takes a kept connection to the same origin when there
    is one (a kept connection the server closed meanwhile is replaced once, before any
    byte of an answer), and gives it back when the context exits after a complete body
    the server allows to keep (:attr:`HttpResponse.reusable`); otherwise the connection
    is closed then (and, without a pool, the request says ``Connection: close``). Raises
    :class:`NetworkError` (also for a redirect the policy refuses, or more than
    :data:`MAX_REDIRECTS`) / :class:`FetchTimeout`.
    """
    hdrs = dict(headers or {})
    for _ in range(MAX_REDIRECTS + 1):
        resp = await _open_once(url, hdrs, idle_timeout, pool)
        location = resp.headers.get("location")
        if resp.status in (301, 302, 303, 307, 308) and location:
            await resp._conn.aclose()
            there = urljoin(url, location)
            if not may_follow(redirects, url, there):
                allowed = "same-origin or https" if redirects == "https" else "same-origin"
                raise NetworkError(f"{url} redirects to {there[:200]}: not followed (only "
                                   f"{allowed} redirects are)")
            url = there
            continue
        try:
            yield resp
        finally:
            if pool is not None and resp.reusable and resp.key is not None:
                pool.put(resp.key, resp._conn)
            else:
                await resp._conn.aclose()
        return
    raise NetworkError(f"{url}: more than {MAX_REDIRECTS} redirects")
