"""The types a caller of :mod:`carget.fetcher` holds: options in, results and progress
events out, and the block sink of :func:`~carget.fetcher.fetch_blocks`.

A leaf module: it imports nothing else of the fetcher, so every module of it (and every
caller) can import these without pulling in the machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ..cid import CID

__all__ = [
    "IDLE_TIMEOUT",
    "STREAMS_PER_GATEWAY",
    "UNIT_BYTES",
    "BlockSink",
    "BlocksResult",
    "FetchOptions",
    "FetchResult",
    "ProgressCallback",
]

#: the spec's idle timeout: no new verified block for this long ends a request
IDLE_TIMEOUT: Final = 30.0
#: parallel requests (each on its own connection) per gateway: ``--streams``
STREAMS_PER_GATEWAY: Final = 2
#: a unit of split work: big enough that a request's overhead vanishes, small enough
#: that two gateways share a file evenly and a failover re-asks for little
UNIT_BYTES: Final = 16 << 20

#: progress(event: dict) — the same events ``carget get --json`` prints, one per call
ProgressCallback = Callable[[dict[str, Any]], None]

#: called with every verified block (path blocks, inner nodes, leaves), possibly from
#: worker threads and possibly more than once per CID, so it must be thread-safe; an
#: exception it raises aborts the fetch and is raised by ``fetch_blocks``. Identity CIDs
#: (their block is the CID) are not passed on.
BlockSink = Callable[[CID, bytes | memoryview], None]


@dataclass
class FetchOptions:
    """How a run fetches: the gateways to ask and race (base URLs), a whole-file
    ``digest`` ("sha256:HEX" / "sha512:HEX") to check, a plain ``fallback_url`` mirror
    (needs ``digest``), ``timeout`` for the whole run and ``idle_timeout`` per request
    (seconds), ``progress`` events, delegated ``routers`` to find more gateways,
    ``car_out`` (a CAR of every verified block), ``streams_per_gateway`` (``--streams``),
    ``unit_bytes`` (the split's unit), ``log`` lines, and ``verbose`` (also log each
    attempt's failure: a retry, a gateway's 404, a dropped gateway; otherwise only the
    final error names what failed with each gateway)."""

    gateways: list[str]
    digest: str | None = None
    fallback_url: str | None = None
    timeout: float | None = None
    idle_timeout: float = IDLE_TIMEOUT
    progress: ProgressCallback | None = None
    routers: list[str] = field(default_factory=list)
    car_out: str | None = None
    streams_per_gateway: int = STREAMS_PER_GATEWAY
    unit_bytes: int = UNIT_BYTES
    log: Callable[[str], None] | None = None
    verbose: bool = False


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What a finished fetch produced.

    ``cid`` is the resolved CID of the fetched entity (text), ``size`` its file bytes,
    ``digest`` "sha256:HEX" / "sha512:HEX" when one was asked for (else None), ``source``
    "ipfs" or "fallback".
    """

    cid: str
    size: int
    digest: str | None
    source: str


@dataclass(frozen=True, slots=True)
class BlocksResult:
    """What ``fetch_blocks`` found at the end of the path: the entity's CID, its kind as
    the race found it ("file", "directory", "symlink", or "other" for a non-UnixFS
    block) and, for a file, its size in bytes (else None)."""

    cid: CID
    kind: str
    size: int | None
