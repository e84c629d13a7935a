"""HTTPS bodies on the worker-thread path, and one trust store for every request.

A TLS server on 127.0.0.1 (stdlib ssl on a thread, certificate from a trustme CA) sends
bodies of many TLS records; the lean reader must hand a TLS body to the blocking reader
(:meth:`HttpResponse.read_body_blocking`) as it does a plain one, in large pieces, and
frame it with the same reader. The trust store is the system's default verify paths with
``SSL_CERT_FILE``, for the CAR requests and for httpx (delegated routing) alike.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import trio
import trustme
from fetchhelp import content
from tlsserver import tls_server

from carget.cid import CID
from carget.errors import NetworkError
from carget.fetcher import connection
from carget.fetcher.gateways import find_providers
from carget.fetcher.http import open_http


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.setattr(connection, "_context", None)  # made again from the environment
    yield


def answering(ca: trustme.CA, answer: bytes) -> AbstractContextManager[int]:
    """A TLS server on 127.0.0.1 that answers every request with ``answer`` (head and
    body)."""
    return tls_server(ca.issue_cert("localhost", "127.0.0.1"),
                      lambda tls, _req: tls.sendall(answer))


def _chunked(body: bytes, size: int) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                   for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_tls_body_is_read_on_the_worker_thread(ca: trustme.CA, trusted: None,
                                                    framing: str) -> None:
    body = content(3 << 20, seed=3)  # ~200 TLS records
    if framing == "length":
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(
            body, 300_001)
    else:
        answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    with answering(ca, answer) as port:
        with trio.fail_after(30):
            async with open_http(f"https://localhost:{port}/x", idle_timeout=10) as resp:
                assert resp.status == 200
                assert resp.detachable  # TLS goes down the same path as plain TCP
                pieces: list[bytes] = []
                ended: list[bool] = []

                def consume(piece: memoryview | None) -> bool:
                    if piece is None:
                        ended.append(True)
                    else:
                        pieces.append(bytes(piece))
                    return False

                await trio.to_thread.run_sync(resp.read_body_blocking, consume, 1 << 20)
    assert ended == [True]
    assert b"".join(pieces) == body
    # whole records decrypted into one buffer: pieces far larger than one record
    assert max(len(p) for p in pieces) > 4 * connection.TLS_RECORD


async def test_tls_body_cut_short_is_a_network_error(ca: trustme.CA, trusted: None) -> None:
    body = content(1 << 20, seed=4)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(body) + 10) + body
    with answering(ca, answer) as port:
        with trio.fail_after(30):
            async with open_http(f"https://localhost:{port}/x", idle_timeout=10) as resp:
                with pytest.raises(NetworkError, match="early"):
                    await trio.to_thread.run_sync(resp.read_body_blocking,
                                                  lambda piece: False)


async def test_untrusted_certificate_names_the_problem(ca: trustme.CA, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    monkeypatch.setattr(connection, "_context", None)
    with answering(ca, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") as port:
        with trio.fail_after(30), pytest.raises(NetworkError, match=r"(?i)certificate"):
            async with open_http(f"https://localhost:{port}/x", idle_timeout=10):
                pass


async def test_routing_through_httpx_uses_the_same_trust_store(
        ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx is handed carget's one context: a router is trusted exactly when a gateway
    would be (here a context that trusts the test CA, with no SSL_CERT_FILE for httpx's
    own defaults to find)."""
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setattr(connection, "_context", ssl.create_default_context(cafile=str(pem)))
    body = json.dumps({"Providers": [{"Protocols": ["transport-ipfs-gateway-http"],
                                      "Addrs": ["/dns/gw.example/tcp/443/https"]}]}).encode()
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % len(body)) + body
    cid = CID.parse("bafkqaaa")
    with answering(ca, answer) as port:
        with trio.fail_after(30):
            got = await find_providers(f"https://localhost:{port}", cid, timeout=10)
    assert got == ["https://gw.example:443"]
