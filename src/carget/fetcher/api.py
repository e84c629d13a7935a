"""``fetch_file`` / ``fetch_file_sync``: the one-call library API (what lima uses)."""

from __future__ import annotations

import os

from .types import FetchOptions, FetchResult, ProgressCallback

__all__ = ["fetch_file", "fetch_file_sync"]


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
    from .get import run_get  # the machinery only when a fetch starts (import time)

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
