"""Where verified bytes and blocks go, one module per job; blocking code, called from
worker threads (no trio here).

``file`` (a single file, written atomically, resumable), ``tree`` (a directory tree,
resumable, and the ledger of what a tree has in place), ``stdout`` (``cat``: bytes in
order, and the segments split ``cat`` gathers in memory), ``car`` (``--car``: every
verified block), ``sink`` (blocks to a caller's callback: ``fetch_blocks``), ``journal``
(the resume journals' format), ``recheck`` (re-verifying kept bytes before trusting
them) and ``disk`` (reserving room, wording write errors).

Every output takes lists of :mod:`~carget.fetcher.verifier` events (:class:`EventOutput`).
"""

from __future__ import annotations

from typing import Protocol

from ..verifier import VerifierEvent

__all__ = ["EventOutput"]


class EventOutput(Protocol):
    """Takes verified events: ``handle`` places them and returns the file bytes it placed
    (called on a request's writing thread); ``written`` counts them."""

    @property
    def written(self) -> int: ...

    def handle(self, events: list[VerifierEvent]) -> int: ...
