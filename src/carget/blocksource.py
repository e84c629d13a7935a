"""The one "get a block" protocol, used by the exporter (``car extract``, ``cat`` of a
CAR), the server's answers and every store behind them (local files and CARs, the disk
cache, the upstream fetcher).

A source's ``get(cid)`` returns the block's verified bytes, or None when it does not have
the block. Missing is an ordinary answer, never an exception: what a missing block means
is for the caller to decide, in one place each —

* :func:`require` turns it into :class:`~carget.errors.IncompleteDAG` (exit code 4), for
  walkers that need the whole DAG (the exporter, a CAR body);
* the server turns it into 404 while planning, a cut connection once bytes are out, or,
  when a source can still fill the block, a wait (:class:`carget.server.blocks.Need`).

A source may raise its own errors for a block it has but cannot give truthfully (a served
file that changed: :class:`~carget.errors.HashMismatch`). A plain ``dict[CID, bytes]``
is a source. Identity CIDs are answered by :func:`require` from the CID itself.
"""

from __future__ import annotations

from typing import Protocol

from .cid import CID
from .errors import IncompleteDAG
from .unixfs.node import identity_data

__all__ = ["BlockSource", "require"]


class BlockSource(Protocol):
    def get(self, cid: CID, /) -> bytes | None: ...


def require(source: BlockSource, cid: CID) -> bytes:
    """``cid``'s block from ``source`` (an identity CID from the CID itself). Raises
    :class:`IncompleteDAG` when the source does not have it."""
    inline = identity_data(cid)
    if inline is not None:
        return inline
    data = source.get(cid)
    if data is None:
        raise IncompleteDAG(f"block {cid} is not available")
    return data
