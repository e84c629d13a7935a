"""carget's gateway server (``carget serve``): trio + h11. Trustless answers (raw blocks,
CARs) and path-gateway answers (the content itself), from a store of local files and CARs
(:mod:`.store`), a disk cache (:mod:`.cache`) and an upstream filler (:mod:`.upstream`).

>>> store = BlockStore(); store.add_car("fixtures.car")
>>> trio.run(serve, store, "127.0.0.1", 8080)

``serve`` reports the bound port through ``task_status`` (pass port 0 for an ephemeral
one), so ``port = await nursery.start(serve, store, "127.0.0.1", 0)`` works. For tests in
other areas, :func:`carget.server.testing.running_gateway` runs one on a background thread.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ._http import HTTPServer, ServedStore, ServerLimits
from .blocks import Waiter

__all__ = ["HTTPServer", "ServedStore", "ServerLimits", "serve"]

#: listen backlog: bursts of concurrent clients queue in the kernel instead of being refused
BACKLOG = 512


async def serve(store: ServedStore, host: str = "127.0.0.1", port: int = 8080, *,
                limits: ServerLimits | None = None, waiter: Waiter | None = None,
                log: Callable[[str], None] | None = None,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``store`` over HTTP/1.1 until cancelled; ``task_status.started(port)``.
    ``waiter`` makes missing blocks arrive (the disk cache with its filler); ``log`` gets
    one access-log line per request.

    Raises :class:`OSError` if the address cannot be bound.
    """
    if host == "localhost":
        host = "127.0.0.1"  # one listener, so an ephemeral port is the same for everyone
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=BACKLOG)
    server = HTTPServer(store, limits, waiter=waiter, log=log)
    bound = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.handle, listeners)
        task_status.started(bound)
