"""The plain mirror (``--fallback-url``), used only when IPFS fails and only with a
digest: the download is kept only if its digest matches (trio)."""

from __future__ import annotations

import os

import trio

from ..atomic import atomic_file
from ..digest import check_digest, file_digest, parse_digest
from ..errors import FetchTimeout, NetworkError
from .run import Run
from .types import FetchResult

__all__ = ["fallback"]


async def _check_digest(path: str, digest: str | None) -> str | None:
    if digest is None:
        return None
    algo = parse_digest(digest)[0]
    return check_digest(await trio.to_thread.run_sync(file_digest, path, algo), digest)


async def fallback(run: Run, out_path: str) -> FetchResult:
    """Download the plain mirror to a temporary file beside ``out_path``; keep it only if
    its digest matches. Through httpx (a plain HTTP(S) download is what it is good at):
    the environment's proxies, the one trust store, redirects to https anywhere but
    never down to http (:func:`~carget.fetcher.http.may_follow`)."""
    import httpx

    from .connection import ssl_context
    from .http import MAX_REDIRECTS, USER_AGENT, may_follow

    url = run.opts.fallback_url
    assert url is not None and run.opts.digest is not None
    run.log(f"IPFS failed; trying the fallback mirror {url}")
    run.event("fallback", url=url)

    async def redirect_policy(response: httpx.Response) -> None:
        # called for every answer, before httpx follows a redirect
        if response.has_redirect_location:
            there = str(response.url.join(response.headers["location"]))
            if not may_follow("https", str(response.url), there):
                raise NetworkError(f"{response.url} redirects to {there[:200]}: not "
                                   f"followed (only same-origin or https redirects are)")

    idle = run.opts.idle_timeout
    with atomic_file(out_path) as (f, tmp):  # kept only if the digest matches
        try:
            async with httpx.AsyncClient(
                    verify=ssl_context(), follow_redirects=True, max_redirects=MAX_REDIRECTS,
                    timeout=httpx.Timeout(idle), headers={"User-Agent": USER_AGENT,
                                                          "Accept-Encoding": "identity"},
                    event_hooks={"response": [redirect_policy]}) as client:
                async with client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise NetworkError(f"fallback {url} answered {resp.status_code}")
                    total = resp.headers.get("content-length")
                    run.total = int(total) if total and total.isdigit() else None
                    run.bytes_done = 0
                    async for piece in resp.aiter_bytes(1 << 20):
                        await trio.to_thread.run_sync(f.write, piece)
                        run.progressed(len(piece))
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"fallback {url}: {exc or 'timed out'}") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"fallback {url}: {exc}") from None
        f.flush()
        digest = await _check_digest(tmp, run.opts.digest)
    return FetchResult("", os.path.getsize(out_path), digest, "fallback")
