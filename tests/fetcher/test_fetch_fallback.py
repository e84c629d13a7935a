"""``--fallback-url``: a plain mirror fetched through httpx (with carget's trust store and
the environment's proxies), following redirects to the same origin or to https anywhere,
never to another plain-http origin."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway, plain_server
from fetchhelp import content

from carget.errors import NetworkError
from carget.fetcher import FetchOptions, connection
from carget.fetcher.get import run_get
from loopback import http_answer, one_answer


@asynccontextmanager
async def redirector(location: str) -> AsyncIterator[str]:
    """Answers every request with 302 to ``location``."""
    async with one_answer(http_answer("302 Found", {"Location": location})) as url:
        yield f"{url}/img"


async def test_fallback_goes_through_httpx_with_the_trust_store(
        store: DagStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = content(300_000, seed=41)
    cid = store.add_bytes(data, cid_version=1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    made: list[dict[str, Any]] = []
    real = httpx.AsyncClient.__init__

    def spy(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        made.append(kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", spy)
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("status", status=404)) as gw, \
                plain_server(data) as mirror:
            result = await run_get(str(cid), str(tmp_path / "out"),
                                   FetchOptions([gw.url], digest=digest, fallback_url=mirror))
    assert result.source == "fallback"
    assert (tmp_path / "out").read_bytes() == data
    assert len(made) == 1 and made[0]["verify"] is connection.ssl_context()


async def test_fallback_refuses_a_redirect_to_another_http_origin(store: DagStore,
                                                                  tmp_path: Path) -> None:
    data = content(100_000, seed=42)
    cid = store.add_bytes(data, cid_version=1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("status", status=404)) as gw, \
                plain_server(data) as mirror, redirector(mirror) as moved:
            with pytest.raises(NetworkError, match="not followed"):
                await run_get(str(cid), str(tmp_path / "a"), FetchOptions(
                    [gw.url], digest=digest, fallback_url=moved))
    assert not (tmp_path / "a").exists()
