"""One client connection, plain TCP or TLS, readable from trio and from a worker thread.

A :class:`Connection` is a trio TCP stream, optionally with TLS on top. TLS is one
``ssl.SSLObject`` over two memory BIOs that carget drives itself (not ``trio.SSLStream``),
so the same TLS session serves both halves of a request:

* trio does the handshake, sends the request and receives the response head
  (:meth:`Connection.send_all`, :meth:`Connection.receive_some`), with trio's
  cancellation and timeouts;
* a worker thread receives the body (:meth:`Connection.blocking_reader`): a blocking
  duplicate of the socket read in large pieces (``recv_into`` up to 1 MiB), decrypted
  record by record into one buffer, so a TLS body arrives in the same large pieces as a
  plain one and its decryption runs off the event loop (``SSLObject.read`` releases the
  GIL), beside the verifier's hashing.

Measured on loopback (``benchmarks/bench_fetch.py``): with trio's ``SSLStream`` on the
event loop a whole fetch ran at 0.09x of hashlib's SHA-256. On the thread path HTTPS
costs the client ~0.3 s more CPU per 512 MiB than plain HTTP: the AES-GCM decryption
(~0.16 s, with AES-NI) and the copies (into the memory BIO, into OpenSSL's record
buffer, out into the piece). Decrypted bytes are not copied again: the framing hands the
verifier slices of the piece they were decrypted into. Pieces are decrypted into a run's
reused buffers (:mod:`carget.fetcher.buffers`), not fresh ones: zeroing a fresh piece and
faulting its pages in took ~5-7% of the client's ``perf`` samples over HTTPS, ~2% with
reused ones. A blocking ``ssl.SSLSocket`` read the same way spends as much: without
OpenSSL's read-ahead (which Python does not expose) it makes two ``recv`` calls a
record, which cost what the copies it saves did.

One trust store for every request carget makes (:func:`ssl_context`): the system's
default verify paths, which OpenSSL takes from ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``
when they are set; httpx is handed the same context (delegated routing).

Proxies (:mod:`carget.fetcher.proxy`): the connection goes to the proxy; ``https``
through a ``CONNECT`` tunnel, the TLS session then end to end with the gateway. The
gateway's name is never looked up locally when a proxy carries the request.

Errors: :class:`~carget.errors.NetworkError` (refused, broken, TLS failures, naming the
certificate problem, a proxy that refuses the tunnel), :class:`~carget.errors.FetchTimeout`
while connecting.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
from collections.abc import Callable
from typing import Final, cast

import trio

from ..errors import FetchTimeout, NetworkError
from .buffers import ReceiveBuffers
from .framing import NEED_DATA, Head, ResponseReader
from .proxy import Proxy

__all__ = ["POOL_PER_ORIGIN", "RCVBUF", "TLS_RECORD", "BlockingReader", "Connection",
           "ConnectionPool", "PoolKey", "open_connection", "proxy_authorization", "ssl_context"]

#: socket receive buffer asked for (the kernel may cap it at net.core.rmem_max): a big
#: buffer lets one receive return up to a read's size, so the verifier gets fewer,
#: larger pieces
RCVBUF: Final = 4 << 20
#: a TLS record's plaintext is at most 16 KiB (RFC 8446 §5.1): the bytes trio's side
#: asks of the session at a time
TLS_RECORD: Final = 16 << 10

_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The one client TLS context of the process: the system trust store, honouring
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` (read when it is first made)."""
    global _context
    if _context is None:
        _context = ssl.create_default_context()
    return _context


class Connection:
    """A connected TCP stream to ``host:port`` (``tls`` when it speaks TLS).

    Trio's side: :meth:`send_all`, :meth:`receive_some`. A worker thread's side:
    :meth:`blocking_reader`. Never both at once: a request's head is trio's, its body
    the thread's, one after the other."""

    def __init__(self, tcp: trio.SocketStream, host: str, port: int,
                 tls: ssl.SSLObject | None = None,
                 bios: tuple[ssl.MemoryBIO, ssl.MemoryBIO] | None = None) -> None:
        self.tcp = tcp
        self.host = host
        self.port = port
        self._tls = tls
        self._in, self._out = bios if bios is not None else (ssl.MemoryBIO(), ssl.MemoryBIO())
        #: bytes trio's side received since the last request was sent (an answer began)
        self.received = 0
        #: shut down by abort(): never to be kept
        self.aborted = False

    @property
    def is_tls(self) -> bool:
        return self._tls is not None

    # --- trio's side --------------------------------------------------------------------

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self.tcp.send_all(data)

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Do the TLS handshake over the TCP stream. Raises ``ssl.SSLError`` (e.g. a
        certificate that does not verify), ``trio.BrokenResourceError`` / ``OSError``."""
        self._tls = context.wrap_bio(self._in, self._out, server_hostname=server_hostname)
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.tcp.receive_some(TLS_RECORD * 4)
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()
        await self._flush()

    async def send_all(self, data: bytes) -> None:
        self.received = 0
        if self._tls is None:
            await self.tcp.send_all(data)
            return
        self._tls.write(data)
        await self._flush()

    async def receive_some(self, max_bytes: int) -> bytes:
        """Some bytes (b"" at the end of the stream)."""
        tls = self._tls
        if tls is None:
            data = bytes(await self.tcp.receive_some(max_bytes))
            self.received += len(data)
            return data
        while True:
            try:
                data = tls.read(min(max_bytes, TLS_RECORD))
                self.received += len(data)
                return data
            except ssl.SSLWantReadError:
                data = await self.tcp.receive_some(max(max_bytes, TLS_RECORD))
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # the end of the stream, with or without close_notify: a body's framing
                # and the verifier tell whether it ended early
                return b""

    def abort(self) -> None:
        """Shut the connection down so a blocking read on any thread ends at once (it
        is never kept after this)."""
        self.aborted = True
        try:
            self.tcp.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.tcp.socket.close()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.tcp)

    # --- a worker thread's side ---------------------------------------------------------

    def blocking_reader(self, timeout: float, buffers: ReceiveBuffers | None = None
                        ) -> BlockingReader:
        """A reader over a blocking duplicate of the socket, for a worker thread: each
        receive waits at most ``timeout`` seconds (``TimeoutError``), into a buffer from
        ``buffers`` (else a new one each time). Close it when done."""
        return BlockingReader(self, timeout, buffers)


class BlockingReader:
    """Blocking receives of one :class:`Connection` on a worker thread (see there)."""

    def __init__(self, conn: Connection, timeout: float,
                 buffers: ReceiveBuffers | None = None) -> None:
        self._conn = conn
        self._buffers = buffers
        self._sock = socket.socket(fileno=os.dup(conn.tcp.socket.fileno()))
        self._sock.settimeout(timeout)
        self._raw = bytearray()
        self._eof = False
        recv: Callable[[int], bytes | memoryview]
        recv = self._recv_plain if conn._tls is None else self._recv_tls
        self.recv = recv

    def close(self) -> None:
        self._sock.close()

    def _recv_plain(self, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes, empty at the end; raises ``TimeoutError`` / ``OSError``."""
        if self._buffers is None:
            return self._sock.recv(n)
        view = self._buffers.take(n)
        return view[:self._sock.recv_into(view, n)]

    def _recv_tls(self, n: int) -> memoryview:
        """Up to ``n`` bytes of plaintext (empty at the end): whole records decrypted into
        one buffer from what one ``recv_into`` brought; raises ``TimeoutError`` only
        before any byte of it arrived, ``OSError`` / ``ssl.SSLError`` if it broke."""
        conn = self._conn
        tls = conn._tls
        assert tls is not None
        whole = memoryview(bytearray(n)) if self._buffers is None else self._buffers.take(n)
        view = whole[:n]
        got = 0
        try:
            while got < n:
                try:
                    # with a buffer, read() returns a count (typeshed says bytes)
                    k = cast(int, tls.read(n - got, view[got:]))
                except ssl.SSLWantReadError:
                    if got or self._eof:
                        break
                    raw = self._raw
                    if len(raw) < n:
                        raw = self._raw = bytearray(n)
                    k = self._sock.recv_into(raw)
                    if k:
                        with memoryview(raw) as rv:
                            conn._in.write(rv[:k])
                    else:
                        self._eof = True
                        conn._in.write_eof()
                    continue
                if not k:
                    break
                got += k
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            pass  # the end, with or without close_notify (see receive_some)
        finally:
            view.release()
        return whole[:got]


def proxy_authorization(proxy: Proxy) -> str:
    """The ``Proxy-Authorization`` header line for ``proxy`` ("" without credentials)."""
    if proxy.auth is None:
        return ""
    token = base64.b64encode(":".join(proxy.auth).encode()).decode("ascii")
    return f"Proxy-Authorization: Basic {token}\r\n"


async def _tunnel(conn: Connection, url: str, proxy: Proxy) -> None:
    """Ask the proxy for a tunnel to ``conn.host:conn.port`` (``CONNECT``); its name is
    the proxy's to resolve. Raises :class:`NetworkError` when the proxy refuses."""
    host = f"[{conn.host}]" if ":" in conn.host else conn.host
    await conn.send_all(f"CONNECT {host}:{conn.port} HTTP/1.1\r\nHost: {host}:{conn.port}\r\n"
                        f"{proxy_authorization(proxy)}\r\n".encode("latin-1"))
    reader = ResponseReader(f"{url}: proxy {proxy.host}:{proxy.port}", connect=True)
    while True:
        event = reader.next_event()
        if event is NEED_DATA:
            data = await conn.receive_some(TLS_RECORD)
            if data:
                reader.feed(data)
            else:
                reader.feed_eof()
            continue
        assert isinstance(event, Head)
        if not 200 <= event.status < 300:
            raise NetworkError(f"{url}: proxy {proxy.host}:{proxy.port} refused the tunnel: "
                               f"{event.status} {event.reason}")
        return


#: idle connections kept per origin: a run opens at most a handful of streams to one
#: gateway (--streams), and each returns its connection after a complete answer
POOL_PER_ORIGIN: Final = 8

PoolKey = tuple[str, str, int, "Proxy | None"]


class ConnectionPool:
    """Kept connections of one run (trio objects: a pool lives inside one trio run), by
    (scheme, host, port, proxy). :meth:`take` an idle one or None; :meth:`put` one back
    after a complete answer that allowed it; :meth:`close` at the end of the run."""

    def __init__(self) -> None:
        self._idle: dict[PoolKey, list[Connection]] = {}
        #: connections opened for the run: tests count handshakes with it
        self.opened = 0

    def take(self, key: PoolKey) -> Connection | None:
        idle = self._idle.get(key)
        return idle.pop() if idle else None

    def put(self, key: PoolKey, conn: Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < POOL_PER_ORIGIN and not conn.aborted:
            idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def open_connection(url: str, scheme: str, host: str, port: int, idle: float,
                          proxy: Proxy | None = None) -> Connection:
    """Connect to ``host:port`` (with TLS for ``https``), through ``proxy`` if given (a
    ``CONNECT`` tunnel for ``https``; for ``http`` the connection is to the proxy, and the
    request names the target in absolute form). Raises :class:`FetchTimeout` after
    ``idle`` seconds, :class:`NetworkError` when it cannot connect (``url`` starts the
    message)."""
    tcp: trio.SocketStream | None = None
    try:
        with trio.fail_after(idle):
            if proxy is None:
                tcp = await trio.open_tcp_stream(host, port)
            else:
                tcp = await trio.open_tcp_stream(proxy.host, proxy.port)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            conn = Connection(tcp, host, port)
            if proxy is not None and scheme == "https":
                await _tunnel(conn, url, proxy)
            if scheme == "https":
                await conn.start_tls(ssl_context(), host)
            return conn
    except trio.TooSlowError:
        if tcp is not None:
            tcp.socket.close()
        raise FetchTimeout(f"{url}: connecting took more than {idle:g} s") from None
    except NetworkError:
        if tcp is not None:
            tcp.socket.close()
        raise
    except (OSError, trio.BrokenResourceError) as exc:  # ssl.SSLError is an OSError
        if tcp is not None:
            tcp.socket.close()
        reason = exc if str(exc) else (exc.__cause__ or exc.__context__ or exc)
        raise NetworkError(f"{url}: cannot connect: {reason}") from None
