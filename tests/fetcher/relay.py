"""A delaying relay for tests: a loopback TCP proxy that holds every piece of bytes, in
each direction, for ``delay`` seconds before passing it on, as a long network path does
(a round trip costs ``2 * delay``; throughput is not throttled: pieces queue, each leaves
``delay`` after it arrived). It passes TLS through untouched, so a client's handshakes
reach the server behind it. ``connections`` counts the TCP connections it accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

#: pieces a direction holds at most before it stops reading (backpressure)
QUEUED = 256


@dataclass
class Relay:
    target_port: int
    delay: float
    port: int = 0
    connections: int = 0

    async def _direction(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](QUEUED)

        async def take() -> None:
            async with send:
                while data := await src.receive_some(65536):
                    await send.send((trio.current_time() + self.delay, data))

        async def give() -> None:
            async with receive:
                async for due, data in receive:
                    await trio.sleep_until(due)
                    await dst.send_all(data)
            await dst.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take)
            nursery.start_soon(give)

    async def handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._direction, client, server)
                nursery.start_soon(self._direction, server, client)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # one side went away: the other is closed below
        finally:
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(server)


@asynccontextmanager
async def delaying_relay(target_port: int, delay: float = 0.02) -> AsyncIterator[Relay]:
    """Relay 127.0.0.1:``relay.port`` to 127.0.0.1:``target_port``, each direction
    delayed by ``delay`` seconds."""
    relay = Relay(target_port, delay)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, relay.handle, 0,
                                                host="127.0.0.1"))
        relay.port = listeners[0].socket.getsockname()[1]
        try:
            yield relay
        finally:
            nursery.cancel_scope.cancel()
