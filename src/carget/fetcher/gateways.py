"""Which gateways to ask: explicit ones, the IPIP-280 environment convention, built-in
public trustless gateways, and providers found by delegated routing (``/routing/v1``).

Order (as curl and ipfsspec): ``--gateway`` flags, ``IPFS_GATEWAY``, the first line of
``$IPFS_PATH/gateway`` (else ``~/.ipfs/gateway``), then :data:`PUBLIC_GATEWAYS`. The
public list is a fallback for interactive use only; tests always pass loopback gateways.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ..cid import CID
from ..errors import NetworkError, UsageError

__all__ = [
    "GATEWAY_PROTOCOL",
    "PUBLIC_GATEWAYS",
    "discover_gateways",
    "find_providers",
    "multiaddr_to_url",
    "normalize_gateway",
]

#: public gateways that answer trustless requests (application/vnd.ipld.car, raw blocks)
PUBLIC_GATEWAYS: Final = (
    "https://trustless-gateway.link",
    "https://ipfs.io",
    "https://dweb.link",
)
#: the delegated-routing protocol name of a provider that speaks the trustless gateway API
GATEWAY_PROTOCOL: Final = "transport-ipfs-gateway-http"
#: providers taken from one routing answer (a hostile router could list thousands)
MAX_PROVIDERS: Final = 16
#: bytes of a routing answer read at most
MAX_ROUTING_BODY: Final = 1 << 20


def normalize_gateway(url: str) -> str:
    """``host:port`` or a URL → ``scheme://host[:port][/prefix]`` without a trailing slash.

    Raises :class:`UsageError` for a URL that is not http(s)."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise UsageError(f"gateway {url!r} is not an http(s) URL")
    url = url.rstrip("/")
    if url.endswith("/ipfs"):
        url = url[: -len("/ipfs")]
    return url


def discover_gateways(explicit: Sequence[str] = (), env: Mapping[str, str] | None = None,
                      *, include_public: bool = True) -> list[str]:
    """The gateway list in IPIP-280 order, duplicates removed."""
    env = os.environ if env is None else env
    found: list[str] = list(explicit)
    if env.get("IPFS_GATEWAY"):
        found += [g for g in env["IPFS_GATEWAY"].replace(",", " ").split() if g]
    ipfs_path = env.get("IPFS_PATH")
    home = env.get("HOME")
    candidates = [Path(ipfs_path) / "gateway"] if ipfs_path else []
    if home:
        candidates.append(Path(home) / ".ipfs" / "gateway")
    for path in candidates:
        try:
            first = path.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        if first:
            found.append(first)
            break
    if include_public:
        found += PUBLIC_GATEWAYS
    out: list[str] = []
    for g in found:
        n = normalize_gateway(g)
        if n not in out:
            out.append(n)
    return out


def multiaddr_to_url(addr: str) -> str | None:
    """``/ip4/1.2.3.4/tcp/8080/http`` or ``/dns/host/tcp/443/https`` (or ``/tls/http``) →
    a base URL; an http(s) URL is returned as is; anything else → None."""
    if addr.startswith(("http://", "https://")):
        return addr.rstrip("/")
    parts = addr.strip("/").split("/")
    if len(parts) < 5 or parts[2] != "tcp" or not parts[3].isdigit():
        return None
    proto, host, port, rest = parts[0], parts[1], parts[3], parts[4:]
    if proto not in ("ip4", "ip6", "dns", "dns4", "dns6"):
        return None
    if rest == ["http"]:
        scheme = "http"
    elif rest in (["https"], ["tls", "http"]) or (rest[:1] == ["tls"] and rest[-1:] == ["http"]):
        scheme = "https"
    else:
        return None
    if proto == "ip6":
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def providers_from_json(doc: Any) -> list[str]:
    """Gateway URLs of the ``transport-ipfs-gateway-http`` providers in a routing answer."""
    out: list[str] = []
    providers = doc.get("Providers") if isinstance(doc, dict) else None
    for p in providers or []:
        if not isinstance(p, dict):
            continue
        protocols = p.get("Protocols") or ([p["Protocol"]] if p.get("Protocol") else [])
        if GATEWAY_PROTOCOL not in protocols:
            continue
        for addr in p.get("Addrs") or []:
            url = multiaddr_to_url(addr) if isinstance(addr, str) else None
            if url and url not in out:
                out.append(url)
        if len(out) >= MAX_PROVIDERS:
            break
    return out[:MAX_PROVIDERS]


async def find_providers(router: str, cid: CID, *, timeout: float = 10.0) -> list[str]:
    """Ask a delegated router (``GET {router}/routing/v1/providers/{cid}``) for gateways.

    Raises :class:`NetworkError` when the router cannot be reached or answers garbage;
    a 404 (no providers) gives an empty list.
    """
    import json

    import httpx

    from .connection import ssl_context

    url = f"{router.rstrip('/')}/routing/v1/providers/{cid.to_v1()}"
    try:
        # the one trust store (carget.fetcher.connection), not httpx's default certifi
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True,
                                     verify=ssl_context()) as client:
            async with client.stream("GET", url,
                                     headers={"Accept": "application/json"}) as resp:
                if resp.status_code == 404:
                    return []
                if resp.status_code != 200:
                    raise NetworkError(f"router {router} answered {resp.status_code}")
                body = b""
                async for piece in resp.aiter_bytes():
                    body += piece
                    if len(body) > MAX_ROUTING_BODY:
                        raise NetworkError(f"router {router} answer is too large")
    except httpx.HTTPError as exc:
        raise NetworkError(f"router {router}: {exc}") from None
    try:
        return providers_from_json(json.loads(body))
    except ValueError:
        raise NetworkError(f"router {router} answered something that is not JSON") from None
