"""A forward HTTP proxy for tests (trio, 127.0.0.1): absolute-form requests and CONNECT
tunnels, with names only it can resolve.

``names`` maps a host name (e.g. ``gw.invalid``, which no resolver knows: RFC 6761) to a
loopback address, so a fetch of ``http://gw.invalid:PORT`` succeeds only if the request
really went through the proxy, with the name left for the proxy to resolve. Every request
is logged as ``(method, target)``; with ``auth`` set, a request without that
``Proxy-Authorization: Basic`` is answered 407.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import trio

MAX_HEAD = 64 << 10


@dataclass
class ForwardProxy:
    names: dict[str, tuple[str, int]]
    auth: tuple[str, str] | None = None
    log: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def where(self, host: str, port: int) -> tuple[str, int]:
        return self.names.get(host, (host, port))

    async def handle(self, down: trio.SocketStream) -> None:
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = await down.receive_some(65536)
                if not data or len(buf) > MAX_HEAD:
                    return
                buf += data
            head, _, rest = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            self.log.append((method, target))
            fields = [ln for ln in lines[1:] if ln]
            if self.auth is not None:
                token = base64.b64encode(":".join(self.auth).encode()).decode()
                if f"proxy-authorization: basic {token}".lower() not in \
                        [f.lower() for f in fields]:
                    await down.send_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                        b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    return
            fields = [f for f in fields if not f.lower().startswith("proxy-")]
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up = await trio.open_tcp_stream(*self.where(host.strip("[]"), int(port)))
                await down.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    await up.send_all(rest)
            else:
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.hostname:
                    await down.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                        b"Connection: close\r\n\r\n")
                    return
                up = await trio.open_tcp_stream(*self.where(parts.hostname, parts.port or 80))
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                await up.send_all(f"{method} {path} HTTP/1.1\r\n".encode("latin-1")
                                  + "".join(f"{f}\r\n" for f in fields).encode("latin-1")
                                  + b"\r\n" + rest)
            async with up, trio.open_nursery() as nursery:
                nursery.start_soon(_pipe, down, up, nursery.cancel_scope)
                nursery.start_soon(_pipe, up, down, nursery.cancel_scope)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(down)


async def _pipe(src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while data := await src.receive_some(1 << 20):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()  # one side ended: so does the tunnel


@asynccontextmanager
async def forward_proxy(names: dict[str, tuple[str, int]],
                        auth: tuple[str, str] | None = None) -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy(names, auth)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy.handle, 0,
                                                host="127.0.0.1"))
        proxy.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
