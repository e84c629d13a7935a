"""A lean HTTP/1.1 GET for CAR bodies: trio streams, 1 MiB reads, no per-chunk machinery.

Why not httpx for the bulk body: measured on loopback (DESIGN "Performance",
``benchmarks/bench_fetch.py``), httpx's per-chunk layers (h11 events, decoders, byte-stream
wrappers) cost up to 3x against a bare trio stream read 1 MiB at a time. This module
writes one request, parses the response head itself, and hands body bytes straight from
``receive_some`` to the caller (memoryview slices, no copies) for Content-Length,
chunked and close-delimited bodies. httpx stays for the small JSON requests (delegated
routing) and the plain-HTTPS fallback, where its redirects, proxies and TLS matter more.

Every receive has the idle timeout (no bytes for that long is :class:`FetchTimeout`).
Errors: :class:`NetworkError` for refused connections, broken streams and malformed HTTP.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urljoin, urlsplit

import trio

from ..errors import FetchTimeout, NetworkError

__all__ = ["READ_SIZE", "HttpResponse", "open_http"]

#: bytes asked of each receive: large reads are what make the body path fast
READ_SIZE: Final = 1 << 20
#: socket receive buffer asked for (the kernel may cap it at net.core.rmem_max)
RCVBUF: Final = 4 << 20
#: a response head larger than this is refused (real gateways send ~1 KiB)
MAX_HEAD: Final = 64 << 10
#: redirects followed before giving up (httpx's default is 20; gateways use one or two)
MAX_REDIRECTS: Final = 5
#: the longest chunk-size line accepted in a chunked body
MAX_CHUNK_LINE: Final = 1024
USER_AGENT: Final = "carget/0.1"

_ssl_context: ssl.SSLContext | None = None


def _ssl() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


@dataclass
class HttpResponse:
    """The head of a response (``headers`` keyed in lower case) and its body reader."""

    url: str
    status: int
    reason: str
    headers: dict[str, str]
    _stream: trio.abc.Stream
    _idle: float
    _rest: memoryview = field(default_factory=lambda: memoryview(b""))
    _left: int | None = None  # Content-Length bytes still to come
    _chunked: bool = False
    _chunk_left: int = 0
    _finished: bool = False
    received: int = 0  # body bytes handed out so far

    @property
    def detachable(self) -> bool:
        """True for plain TCP, whose body :meth:`read_body_blocking` can read."""
        return isinstance(self._stream, trio.SocketStream) and not self._finished

    def read_body_blocking(self, consume: Callable[[memoryview | None], bool],
                           read_size: int = READ_SIZE) -> None:
        """On a worker thread: read the rest of the body, ``read_size`` bytes at most at a
        time, calling ``consume(piece)`` for each piece and ``consume(None)`` at its end;
        stop early when ``consume`` returns True. Raises :class:`NetworkError` /
        :class:`FetchTimeout`. Call :meth:`abort` from trio to make it return early."""
        assert isinstance(self._stream, trio.SocketStream)
        sock = socket.socket(fileno=os.dup(self._stream.socket.fileno()))
        try:
            sock.settimeout(self._idle)
            _BlockingBody(self, sock, read_size).run(consume)
        finally:
            self._finished = True
            sock.close()

    def abort(self) -> None:
        """Shut the connection down so a blocking body read ends at once."""
        if isinstance(self._stream, trio.SocketStream):
            try:
                self._stream.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    async def _recv(self) -> memoryview:
        with trio.move_on_after(self._idle) as scope:
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise NetworkError(f"{self.url}: connection broke: {exc}") from None
        if scope.cancelled_caught:
            raise FetchTimeout(f"{self.url}: no bytes for {self._idle:g} s")
        return memoryview(data)

    async def receive(self) -> memoryview | None:
        """The next piece of body (a memoryview, valid as long as you keep it), or None
        once the body is complete. Raises :class:`NetworkError` if it ends early."""
        if self._finished:
            return None
        if self._chunked:
            return await self._receive_chunked()
        if self._left == 0:
            self._finished = True
            return None
        data = self._rest if self._rest else await self._recv()
        self._rest = memoryview(b"")
        if not data:
            if self._left is None:  # close-delimited body
                self._finished = True
                return None
            raise NetworkError(f"{self.url}: body ends {self._left} bytes early")
        if self._left is not None:
            if len(data) > self._left:
                data = data[: self._left]  # ignore bytes past Content-Length
            self._left -= len(data)
        self.received += len(data)
        return data

    async def _line(self) -> bytes:
        while (found := _split_line(self._rest, self.url)) is None:
            more = await self._recv()
            if not more:
                raise NetworkError(f"{self.url}: chunked body ends early")
            self._rest = memoryview(bytes(self._rest) + bytes(more))  # a short partial line
        line, self._rest = found
        return line

    async def _receive_chunked(self) -> memoryview | None:
        if self._chunk_left == 0:
            line = await self._line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise NetworkError(f"{self.url}: bad chunk size {line[:40]!r}") from None
            if size < 0:
                raise NetworkError(f"{self.url}: bad chunk size {line[:40]!r}")
            if size == 0:
                while await self._line():  # trailers, up to the blank line
                    pass
                self._finished = True
                return None
            self._chunk_left = size
        data = self._rest if self._rest else await self._recv()
        if not data:
            raise NetworkError(f"{self.url}: chunked body ends early")
        take = min(len(data), self._chunk_left)
        piece, rest = data[:take], data[take:]
        self._chunk_left -= take
        if self._chunk_left == 0:
            while len(rest) < 2:  # the CRLF after the chunk
                more = await self._recv()
                if not more:
                    raise NetworkError(f"{self.url}: chunked body ends early")
                rest = memoryview(bytes(rest) + bytes(more))
            if bytes(rest[:2]) != b"\r\n":
                raise NetworkError(f"{self.url}: chunk not followed by CRLF")
            rest = rest[2:]
        self._rest = rest
        self.received += len(piece)
        return piece


def _split_line(rest: memoryview, url: str) -> tuple[bytes, memoryview] | None:
    """The CRLF-ended line at the start of ``rest`` and what follows it, or None while no
    CRLF has arrived. Looks at no more than a line's worth of bytes: a chunk-size line
    sits in front of up to a megabyte of body, which must not be copied per chunk.
    Raises :class:`NetworkError` for a line longer than MAX_CHUNK_LINE."""
    head = bytes(rest[: MAX_CHUNK_LINE + 2])
    end = head.find(b"\r\n")
    if end < 0:
        if len(head) > MAX_CHUNK_LINE:
            raise NetworkError(f"{url}: chunk-size line too long")
        return None
    return head[:end], rest[end + 2 :]


class _BlockingBody:
    """The rest of a response body read on a worker thread from a blocking duplicate of
    the connection's socket: no trio hand-off per piece (measured in bench_fetch.py: a
    hand-off to a worker thread per piece halved throughput against one thread that
    receives, verifies and writes)."""

    def __init__(self, resp: HttpResponse, sock: socket.socket, read_size: int) -> None:
        self.resp = resp
        self.sock = sock
        self.read_size = read_size
        self.rest = resp._rest

    def recv(self) -> memoryview:
        try:
            return memoryview(self.sock.recv(self.read_size))
        except TimeoutError:
            raise FetchTimeout(f"{self.resp.url}: no bytes for {self.resp._idle:g} s") from None
        except OSError as exc:
            raise NetworkError(f"{self.resp.url}: connection broke: {exc}") from None

    def take(self) -> memoryview:
        data = self.rest if self.rest else self.recv()
        self.rest = memoryview(b"")
        return data

    def line(self) -> bytes:
        while (found := _split_line(self.rest, self.resp.url)) is None:
            more = self.recv()
            if not more:
                raise NetworkError(f"{self.resp.url}: chunked body ends early")
            self.rest = memoryview(bytes(self.rest) + bytes(more))  # a short partial line
        line, self.rest = found
        return line

    def run(self, consume: Callable[[memoryview | None], bool]) -> None:
        resp = self.resp
        if not resp._chunked:
            left = resp._left
            while left != 0:
                data = self.take()
                if not data:
                    if left is None:
                        break
                    raise NetworkError(f"{resp.url}: body ends {left} bytes early")
                if left is not None:
                    data = data[:left]
                    left -= len(data)
                resp.received += len(data)
                if consume(data):
                    return
            consume(None)
            return
        while True:
            line = self.line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise NetworkError(f"{resp.url}: bad chunk size {line[:40]!r}") from None
            if size == 0:
                break
            while size:
                data = self.take()
                if not data:
                    raise NetworkError(f"{resp.url}: chunked body ends early")
                piece, self.rest = data[:size], data[size:]
                size -= len(piece)
                resp.received += len(piece)
                if consume(piece):
                    return
            if self.line():
                raise NetworkError(f"{resp.url}: chunk not followed by CRLF")
        consume(None)


def _parse_head(url: str, head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise NetworkError(f"{url}: not an HTTP/1.x response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise NetworkError(f"{url}: malformed header line {line[:80]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _close(tcp: trio.SocketStream | None) -> None:
    if tcp is not None:
        tcp.socket.close()


async def _connect(url: str, idle: float) -> tuple[trio.abc.Stream, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetworkError(f"unsupported URL {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    tcp: trio.SocketStream | None = None
    try:
        with trio.fail_after(idle):
            tcp = await trio.open_tcp_stream(parts.hostname, port)
            # a big receive buffer lets one receive_some return up to READ_SIZE: fewer,
            # larger pieces mean fewer hand-offs to the verifier thread
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            stream: trio.abc.Stream = tcp
            if parts.scheme == "https":
                tls = trio.SSLStream(tcp, _ssl(), server_hostname=parts.hostname)
                await tls.do_handshake()
                stream = tls
    except trio.TooSlowError:
        _close(tcp)
        raise FetchTimeout(f"{url}: connecting took more than {idle:g} s") from None
    except (OSError, trio.BrokenResourceError) as exc:
        _close(tcp)
        # trio wraps a failed TLS handshake in a BrokenResourceError with no text of its
        # own: name the underlying cause (e.g. the certificate that did not verify)
        reason = exc if str(exc) else (exc.__cause__ or exc.__context__ or exc)
        raise NetworkError(f"{url}: cannot connect: {reason}") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.netloc.rpartition("@")[2]
    return stream, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"


async def _open_once(url: str, headers: dict[str, str], idle: float) -> HttpResponse:
    stream, request = await _connect(url, idle)
    try:
        lines = [request, f"User-Agent: {USER_AGENT}\r\n", "Connection: close\r\n"]
        lines += [f"{k}: {v}\r\n" for k, v in headers.items()]
        lines.append("\r\n")
        try:
            with trio.fail_after(idle):
                await stream.send_all("".join(lines).encode("latin-1"))
        except trio.TooSlowError:
            raise FetchTimeout(f"{url}: sending the request took more than {idle:g} s") from None
        except (trio.BrokenResourceError, OSError) as exc:
            raise NetworkError(f"{url}: connection broke: {exc}") from None
        resp = HttpResponse(url, 0, "", {}, stream, idle)
        buf = b""
        while True:
            at = buf.find(b"\r\n\r\n")
            if at >= 0:
                break
            if len(buf) > MAX_HEAD:
                raise NetworkError(f"{url}: response head larger than {MAX_HEAD} bytes")
            more = await resp._recv()
            if not more:
                raise NetworkError(f"{url}: connection closed before a response")
            buf += more
        resp.status, resp.reason, resp.headers = _parse_head(url, buf[:at])
        resp._rest = memoryview(buf)[at + 4:]
        te = resp.headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            resp._chunked = True
        elif "content-length" in resp.headers:
            try:
                resp._left = int(resp.headers["content-length"])
            except ValueError:
                raise NetworkError(f"{url}: bad Content-Length") from None
        if resp.status in (204, 304) or 100 <= resp.status < 200:
            resp._left = 0
            resp._chunked = False
        return resp
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


@asynccontextmanager
async def open_http(url: str, *, headers: dict[str, str] | None = None,
                    idle_timeout: float = 30.0) -> AsyncIterator[HttpResponse]:
    """GET ``url`` and yield the response once its head is in, following redirects.

    The connection is closed when the context exits (each request is its own
    connection: on loopback and LAN the handshake is cheap next to a CAR body). Raises
    :class:`NetworkError` / :class:`FetchTimeout`.
    """
    hdrs = dict(headers or {})
    for _ in range(MAX_REDIRECTS + 1):
        resp = await _open_once(url, hdrs, idle_timeout)
        location = resp.headers.get("location")
        if resp.status in (301, 302, 303, 307, 308) and location:
            await trio.aclose_forcefully(resp._stream)
            url = urljoin(url, location)
            continue
        try:
            yield resp
        finally:
            await trio.aclose_forcefully(resp._stream)
        return
    raise NetworkError(f"{url}: more than {MAX_REDIRECTS} redirects")
