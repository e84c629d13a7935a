"""Which proxy a request goes through: the environment's rules, as httpx and curl read them
(sans-IO: no sockets, no trio).

``HTTP_PROXY`` / ``http_proxy`` (for ``http://`` URLs), ``HTTPS_PROXY`` (for ``https://``),
``ALL_PROXY`` (for both), ``NO_PROXY`` (hosts that go direct), read through the
standard library's ``urllib.request.getproxies`` exactly as httpx reads them (lower case
wins over upper case; ``HTTP_PROXY`` is ignored under CGI), and matched as httpx matches
them (``httpx._utils.get_environment_proxies`` and ``URLPattern``):

* ``NO_PROXY=*`` turns every proxy off;
* ``NO_PROXY=example.com`` bypasses ``example.com`` and its subdomains, ``.example.com``
  only its subdomains; an IP address or ``localhost`` only itself; an entry with a
  scheme (``http://host:port``) only that;
* the most specific pattern wins: one with a port, then the longer host, then the
  longer scheme.

A proxy URL without a scheme is ``http://``. carget speaks to HTTP proxies only
(``http://[user:password@]host:port``): plain requests go to it in absolute form, and
``https`` through a ``CONNECT`` tunnel (:mod:`carget.fetcher.connection`); the target's
name is resolved by the proxy, never locally.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["Proxy", "proxy_for", "proxy_rules"]


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where to connect, and the Basic credentials to send, if any."""

    host: str
    port: int
    auth: tuple[str, str] | None = None

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """Raises ``ValueError`` for a proxy carget cannot use (not ``http://``)."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise ValueError(f"unsupported proxy {url!r} (carget speaks to http:// proxies)")
        auth = None
        if parts.username is not None:
            auth = (unquote(parts.username), unquote(parts.password or ""))
        return cls(parts.hostname, parts.port or 80, auth)


@dataclass(frozen=True, slots=True)
class _Pattern:
    scheme: str  # "" for any
    host: re.Pattern[str] | None  # None for any
    port: int | None
    host_len: int

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        if self.scheme and self.scheme != scheme:
            return False
        if self.host is not None and not self.host.match(host):
            return False
        return self.port is None or self.port == port

    @property
    def priority(self) -> tuple[int, int, int]:
        return (0 if self.port is not None else 1, -self.host_len, -len(self.scheme))


def _pattern(text: str) -> _Pattern:
    parts = urlsplit(text)
    scheme = "" if parts.scheme == "all" else parts.scheme
    host = (parts.hostname or "") if parts.netloc not in ("", "*") else ""
    raw = parts.netloc.rpartition("@")[2]
    if raw.startswith("*"):  # urlsplit keeps "*" in netloc but not in hostname rules
        host = raw.split(":")[0].lower()
    port = parts.port
    if not host or host == "*":
        rx = None
        host = ""
    elif host.startswith("*."):
        rx = re.compile(rf"^.+\.{re.escape(host[2:])}$")
    elif host.startswith("*"):
        rx = re.compile(rf"^(.+\.)?{re.escape(host[1:])}$")
    else:
        rx = re.compile(rf"^{re.escape(host)}$")
    return _Pattern(scheme, rx, port, len(host))


def _is_ip(text: str, version: int) -> bool:
    try:
        addr = ipaddress.ip_address(text.split("/")[0])
    except ValueError:
        return False
    return addr.version == version


def _environment_proxies() -> dict[str, str]:
    """``urllib.request.getproxies()``, without its import where it can only read the
    environment and the environment names no proxy (Linux with no ``*_proxy`` variable):
    urllib.request brings http.client and the email package, ~10% of a small ``get``'s
    start-up. macOS and Windows also read the system's settings, so they always ask it."""
    if sys.platform.startswith("linux") and not any(
            name[-6:].lower() == "_proxy" for name in os.environ):
        return {}
    import urllib.request

    return urllib.request.getproxies()


def proxy_rules(proxies: dict[str, str] | None = None) -> list[tuple[_Pattern, str | None]]:
    """The rules from ``proxies`` (``urllib.request.getproxies()`` by default: the
    environment), most specific first: (pattern, proxy URL or None for direct)."""
    info = _environment_proxies() if proxies is None else proxies
    rules: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if info.get(scheme):
            url = info[scheme]
            rules[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for host in (h.strip() for h in info.get("no", "").split(",")):
        if host == "*":
            return []
        if not host:
            continue
        if "://" in host:
            rules[host] = None
        elif _is_ip(host, 4) or host.lower() == "localhost":
            rules[f"all://{host}"] = None
        elif _is_ip(host, 6):
            rules[f"all://[{host}]"] = None
        else:
            rules[f"all://*{host}"] = None
    out = [(_pattern(k), v) for k, v in rules.items()]
    out.sort(key=lambda rule: rule[0].priority)
    return out


def proxy_for(url: str, proxies: dict[str, str] | None = None) -> Proxy | None:
    """The proxy ``url`` goes through (None: direct). Raises ``ValueError`` when the
    environment names a proxy carget cannot use for it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port == {"http": 80, "https": 443}.get(scheme):
        port = None  # httpx's URL.port leaves out the scheme's default
    for pattern, proxy in proxy_rules(proxies):
        if pattern.matches(scheme, host, port):
            return None if proxy is None else Proxy.parse(proxy)
    return None
