"""Fetching over HTTPS, as from every public gateway: `carget serve` behind a TLS proxy on
loopback whose certificate comes from a test CA (trustme). With the CA trusted the file
arrives verified; without it the TLS handshake fails and nothing is written."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import trio
import trustme
from fetchhelp import CLI_TIMEOUT, content
from tlsserver import tls_server

from carget.add import add_file
from carget.server.testing import running_gateway
from carget.unixfs.options import resolve_options


def tls_proxy(upstream_url: str, cert: trustme.LeafCert) -> AbstractContextManager[int]:
    """A TLS front for a plain gateway, one request per connection (as the fetcher makes
    them): the request head is forwarded with `Connection: close` and the whole answer
    copied back."""
    upstream = int(upstream_url.rsplit(":", 1)[1])

    def forward(tls: ssl.SSLSocket, req: bytes) -> None:
        head, _, rest = req.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        with socket.create_connection(("127.0.0.1", upstream)) as up:
            up.sendall(b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + rest)
            while data := up.recv(1 << 20):
                tls.sendall(data)

    return tls_server(cert, forward)


async def _get(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    with trio.fail_after(CLI_TIMEOUT):
        proc = await trio.run_process([sys.executable, "-m", "carget", *args], env=env,
                                      capture_stdout=True, capture_stderr=True, check=False)
    return proc.returncode, proc.stderr.decode(errors="replace")


async def test_https_gateway_with_a_trusted_ca(tmp_path: Path, ca: trustme.CA) -> None:
    src = tmp_path / "img"
    src.write_bytes(content(5 * 1024 * 1024 + 123, seed=7))
    cid = add_file(src, resolve_options(cid_version=1)).cid
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    env = dict(os.environ, SSL_CERT_FILE=str(ca_pem))
    want = "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    with running_gateway([str(src)], cid_version=1) as gw, \
            tls_proxy(gw, ca.issue_cert("localhost", "127.0.0.1")) as port:
        out = tmp_path / "out"
        code, err = await _get(["get", f"ipfs://{cid}", "-o", str(out), "--digest", want,
                                "--gateway", f"https://localhost:{port}", "--idle-timeout", "10"],
                               env)
        assert code == 0, err
        assert out.read_bytes() == src.read_bytes()
        # the gateway-URL input form over https too
        out2 = tmp_path / "out2"
        code, err = await _get(["get", f"https://127.0.0.1:{port}/ipfs/{cid}", "-o", str(out2),
                                "--idle-timeout", "10"], env)
        assert code == 0, err
        assert out2.read_bytes() == src.read_bytes()


async def test_untrusted_certificate_is_refused(tmp_path: Path, ca: trustme.CA) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"secret bytes")
    cid = add_file(src, resolve_options(cid_version=1)).cid
    other_ca = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))  # not the CA that signed the proxy
    env = dict(os.environ, SSL_CERT_FILE=str(other_ca))
    with running_gateway([str(src)], cid_version=1) as gw, \
            tls_proxy(gw, ca.issue_cert("localhost")) as port:
        out = tmp_path / "out"
        code, err = await _get(["get", str(cid), "-o", str(out), "--gateway",
                                f"https://localhost:{port}", "--timeout", "3"], env)
        assert code == 6, err
        assert "certif" in err.lower()
        assert not out.exists()
