"""``fetch_file`` / ``fetch_file_sync``: the one-call library API (what lima uses)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FetchResult", "ProgressCallback", "fetch_file", "fetch_file_sync"]

#: progress(event: dict) — the same events ``carget get --json`` prints, one per call
ProgressCallback = Callable[[dict[str, Any]], None]


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


async def fetch_file(
    target: str,
    out_path: str | os.PathLike[str],
    *,
    gateways: list[str],
    digest: str | None = None,
    fallback_url: str | None = None,
    timeout: float | None = None,
    progress: ProgressCallback | None = None,
) -> FetchResult:
    """Fetch ``target`` (``ipfs://CID/path`` and friends) to ``out_path``, verified.

    Runs under trio. ``gateways`` are base URLs tried in order and raced; ``digest``
    ("sha256:HEX" or "sha512:HEX") is checked on the finished file; ``fallback_url`` is a
    plain HTTP(S) mirror used only when IPFS fails (requires ``digest``); ``timeout``
    bounds the whole run in seconds. Raises the errors listed in :mod:`carget.fetcher`.
    """
    from .engine import FetchOptions, run_get

    opts = FetchOptions(gateways=list(gateways), digest=digest, fallback_url=fallback_url,
                        timeout=timeout, progress=progress)
    return await run_get(target, os.fspath(out_path), opts)


def fetch_file_sync(
    target: str,
    out_path: str | os.PathLike[str],
    *,
    gateways: list[str],
    digest: str | None = None,
    fallback_url: str | None = None,
    timeout: float | None = None,
    progress: ProgressCallback | None = None,
) -> FetchResult:
    """Blocking wrapper around :func:`fetch_file` (runs its own ``trio.run``)."""
    import trio

    async def main() -> FetchResult:
        return await fetch_file(target, out_path, gateways=gateways, digest=digest,
                                fallback_url=fallback_url, timeout=timeout, progress=progress)

    return trio.run(main)
