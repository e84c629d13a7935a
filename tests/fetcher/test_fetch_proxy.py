"""Every request carget makes honours HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY.

A forward proxy on 127.0.0.1 (:mod:`fwdproxy`) is the only thing that can resolve
``gw.invalid`` (RFC 6761: no resolver knows ``.invalid``), so a fetch from it proves the
request went through the proxy with the name left to it: absolute-form requests for
``http``, ``CONNECT`` tunnels for ``https``. The matching rules are held to httpx's own.
"""

from __future__ import annotations

import hashlib
import unittest.mock
from pathlib import Path

import httpx
import httpx._utils as httpx_utils
import pytest
import trio
import trustme
from dagstore import DagStore
from faultgw import Fault, fault_gateway, plain_server
from fetchhelp import content
from fwdproxy import forward_proxy
from test_fetch_tls import tls_proxy

from carget.errors import NetworkError
from carget.fetcher import FetchOptions, connection
from carget.fetcher.get import run_get
from carget.fetcher.proxy import proxy_for

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
              "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_http_gateway_through_the_proxy(store: DagStore, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = content(3 << 20, seed=21)
    cid = store.add_bytes(data, cid_version=1)
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            async with forward_proxy({"gw.invalid": ("127.0.0.1", _port(gw.url))}) as proxy:
                monkeypatch.setenv("http_proxy", proxy.url)
                url = f"http://gw.invalid:{_port(gw.url)}"
                await run_get(str(cid), str(tmp_path / "out"), FetchOptions([url]))
    assert (tmp_path / "out").read_bytes() == data
    assert proxy.log and all(m == "GET" and t.startswith(f"{url}/ipfs/{cid}")
                             for m, t in proxy.log)
    assert len(gw.log) == len(proxy.log)


async def test_https_gateway_through_a_connect_tunnel(store: DagStore, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = content(3 << 20, seed=22)
    cid = store.add_bytes(data, cid_version=1)
    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.setattr(connection, "_context", None)
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            with tls_proxy(gw.url, ca.issue_cert("gw.invalid")) as tls_port:
                async with forward_proxy({"gw.invalid": ("127.0.0.1", tls_port)}) as proxy:
                    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
                    await run_get(str(cid), str(tmp_path / "out"),
                                  FetchOptions([f"https://gw.invalid:{tls_port}"]))
    assert (tmp_path / "out").read_bytes() == data
    assert proxy.log and all(entry == ("CONNECT", f"gw.invalid:{tls_port}")
                             for entry in proxy.log)


async def test_all_proxy_with_credentials(store: DagStore, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = content(100_000, seed=23)
    cid = store.add_bytes(data, cid_version=1)
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            names = {"gw.invalid": ("127.0.0.1", _port(gw.url))}
            async with forward_proxy(names, auth=("user", "p w:")) as proxy:
                url = f"http://gw.invalid:{_port(gw.url)}"
                monkeypatch.setenv("ALL_PROXY", proxy.url)  # no credentials: refused
                with pytest.raises(NetworkError):
                    await run_get(str(cid), str(tmp_path / "out"),
                                  FetchOptions([url], idle_timeout=2, timeout=10))
                monkeypatch.setenv("ALL_PROXY", proxy.url.replace("//", "//user:p%20w%3A@"))
                await run_get(str(cid), str(tmp_path / "out"), FetchOptions([url]))
    assert (tmp_path / "out").read_bytes() == data


async def test_no_proxy_goes_direct(store: DagStore, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = content(100_000, seed=24)
    cid = store.add_bytes(data, cid_version=1)
    with trio.fail_after(30):
        async with fault_gateway(store) as gw, forward_proxy({}) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
            await run_get(str(cid), str(tmp_path / "out"), FetchOptions([gw.url]))
    assert (tmp_path / "out").read_bytes() == data
    assert proxy.log == []
    assert gw.log


async def test_fallback_mirror_through_the_proxy(store: DagStore, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = content(200_000, seed=25)
    cid = store.add_bytes(data, cid_version=1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("status", status=404)) as gw, \
                plain_server(data) as mirror:
            names = {"mirror.invalid": ("127.0.0.1", _port(mirror.rsplit("/", 1)[0]))}
            async with forward_proxy(names) as proxy:
                monkeypatch.setenv("HTTP_PROXY", proxy.url)
                monkeypatch.setenv("NO_PROXY", "127.0.0.1")
                port = _port(mirror.rsplit("/", 1)[0])
                result = await run_get(str(cid), str(tmp_path / "out"), FetchOptions(
                    [gw.url], digest=digest,
                    fallback_url=f"http://mirror.invalid:{port}/file.bin"))
    assert result.source == "fallback"
    assert (tmp_path / "out").read_bytes() == data
    assert [m for m, _ in proxy.log] == ["GET"]


# --- the rules, held to httpx's --------------------------------------------------------

ENVS = [
    {"http": "proxy:3128", "https": "http://p2:8080",
     "no": "example.com,.internal,10.0.0.1,localhost,::1,http://special:81"},
    {"all": "http://allp:1", "no": "*"},
    {"all": "http://allp:1", "https": "http://sp:2", "no": " gw.example "},
]
URLS = ["http://example.com/x", "http://www.example.com", "http://wwwexample.com",
        "https://a.internal", "https://internal", "http://10.0.0.1:8080", "http://localhost",
        "http://[::1]:5", "http://special:81/", "http://special:82/", "https://gw.invalid/a",
        "https://example.com:443/", "https://gw.example", "https://sub.gw.example:8443"]


@pytest.mark.parametrize("env", ENVS)
def test_rules_match_httpx(env: dict[str, str]) -> None:
    with unittest.mock.patch.object(httpx_utils, "getproxies", lambda: env):
        mounts = httpx_utils.get_environment_proxies()
    patterns = sorted((httpx_utils.URLPattern(k), v) for k, v in mounts.items())
    for url in URLS:
        want = next((v for p, v in patterns if p.matches(httpx.URL(url))), None)
        got = proxy_for(url, env)
        if want is None:
            assert got is None, url
        else:
            assert got is not None, url
            assert (got.host, got.port) == (httpx.URL(want).host, httpx.URL(want).port or 80)
