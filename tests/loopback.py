"""Test helper: a loopback HTTP server that gives every request the same answer (a plain
mirror, a redirect, a gateway that ignores paths and scopes). Shared by the test areas:
tests/ is on sys.path through its conftest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio


def http_answer(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """An HTTP/1.1 answer that closes its connection, with Content-Length."""
    head = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()),
            "Connection: close", f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(head).encode() + body


@asynccontextmanager
async def one_answer(answer: bytes) -> AsyncIterator[str]:
    """Serve ``answer`` (bytes of a whole HTTP answer) to every request on 127.0.0.1;
    yields the base URL."""
    async def handle(stream: trio.SocketStream) -> None:
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            await stream.send_all(answer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        try:
            yield f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        finally:
            nursery.cancel_scope.cancel()
