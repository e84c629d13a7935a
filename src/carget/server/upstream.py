"""``--upstream``: the cache's filler. Content not held locally is fetched, verified, from
the named trustless gateways (and only those) with the fetcher's
:func:`~carget.fetcher.fetch_blocks` (racing, splitting, failover, ``Retry-After``; a
gateway that sends a wrong block is dropped), and every verified block goes into the disk
cache, which wakes the answers waiting for it.

An answer asks for a block together with what it is after (:class:`~.blocks.Want`: the
content root, its path, the file byte range): one fetch per distinct want, shared by every
answer that asks for the same while it runs, so concurrent requests for the same content
share one upstream fetch, and a ``Range`` request fetches only the blocks of its range
(``entity-bytes`` upstream). When a fetch ends, every block asked of it that did not come
fails with the fetch's error (or "not found"): the answer gets an error status before its
first byte, or is cut after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..cid import CID
from ..errors import CargetError, NotFoundError
from ..fetcher import FetchOptions, fetch_blocks
from .blocks import Want
from .cache import DiskCache

__all__ = ["Upstream"]

_Key = tuple[CID, tuple[str, ...], tuple[int, int] | None, str]


@dataclass
class _Fetch:
    asked: set[CID] = field(default_factory=set)


class Upstream:
    """Fills ``cache`` from ``gateways`` on request (a :class:`~.cache.Filler`). Fetches
    run in the nursery given to :meth:`run`."""

    def __init__(self, gateways: list[str], cache: DiskCache, *,
                 log: Callable[[str], None] | None = None, verbose: bool = False) -> None:
        self.cache = cache
        self.opts = FetchOptions(gateways=list(gateways), log=log, verbose=verbose)
        self._fetches: dict[_Key, _Fetch] = {}
        self._nursery: trio.Nursery | None = None
        #: fetches started (tests: to prove that concurrent answers shared one)
        self.started: list[_Key] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Hold the nursery the fetches run in until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def request(self, cid: CID, want: Want | None) -> None:
        """Get ``cid`` into the cache (trio thread; returns at once)."""
        key: _Key = (want.root, want.segments, want.byte_range, want.scope) \
            if want is not None else (cid, (), None, "block")
        job = self._fetches.get(key)
        if job is None:
            if self._nursery is None:
                self.cache.fail(cid, NotFoundError("the upstream fetcher is not running"))
                return
            job = self._fetches[key] = _Fetch()
            self.started.append(key)
            self._nursery.start_soon(self._fetch, key, job)
        job.asked.add(cid)

    async def _fetch(self, key: _Key, job: _Fetch) -> None:
        root, path, rng, scope = key
        error: CargetError | None = None
        try:
            await fetch_blocks(root, path, self._put, self.opts,
                               byte_range=None if rng is None else (rng[0], rng[1] + 1),
                               scope=scope)
        except CargetError as exc:
            error = exc
        finally:
            del self._fetches[key]  # later asks start a new fetch
        for cid in job.asked:
            if cid not in self.cache:
                self.cache.fail(cid, error or NotFoundError(
                    f"the upstream gateways' answer for /ipfs/{root} did not hold {cid}"))

    def _put(self, cid: CID, data: bytes | memoryview) -> None:
        self.cache.put(cid, data, verified=True)  # fetch_blocks hands out verified blocks
