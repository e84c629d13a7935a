"""The README's bridge recipe, run as written: ``IPFS_GATEWAY=http://127.0.0.1:PORT curl
ipfs://CID/file`` with curl 8 (8.4 and later rewrite ``ipfs://CID/path`` to
``$IPFS_GATEWAY/ipfs/CID/path`` and expect the file itself back), against ``carget serve``
holding the content and against a bridge (``carget serve --upstream``) that fetches it
from that origin and verifies it. Every server is a real process on 127.0.0.1.

curl 8 comes from tests/interop/build_peers.py (Debian 12's own curl is 7.88, which has no
``ipfs://`` scheme).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from gopeers import require

from carget.server.testing import serve_process


def curl_ipfs(gateway: str, url: str, tmp: Path, *extra: str) -> tuple[int, bytes, str]:
    """curl 8 fetching ``url`` (ipfs://…) with IPFS_GATEWAY set: (exit code, body, stderr)."""
    curl = require("curl8")
    out = tmp / "curl.out"
    out.unlink(missing_ok=True)
    env = {**os.environ, "IPFS_GATEWAY": gateway, "HOME": str(tmp)}
    p = subprocess.run([str(curl), "-sS", "--fail", "-o", str(out), *extra, url], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    return p.returncode, out.read_bytes() if out.exists() else b"", p.stderr


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "images").mkdir(parents=True)
    (root / "images" / "ubuntu.img").write_bytes(os.urandom(3 << 20))  # 12 leaves
    (root / "index.html").write_text("<h1>hello</h1>\n")
    return root


def test_curl_ipfs_scheme_through_carget_serve_and_its_bridge(site: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    image = (site / "images" / "ubuntu.img").read_bytes()
    with serve_process(["--cid-version", "1", str(site)], env=env) as origin:
        root = origin.added["site"]
        with serve_process(["--upstream", origin.url, "--cache-dir", str(tmp_path / "cache")],
                           env=env) as bridge:
            for gateway, label in ((origin.url, "local"), (bridge.url, "bridged")):
                code, body, err = curl_ipfs(gateway, f"ipfs://{root}/images/ubuntu.img",
                                            tmp_path)
                assert code == 0 and body == image, (label, code, err)
                # a Range, as a resumed download asks
                code, body, err = curl_ipfs(gateway, f"ipfs://{root}/images/ubuntu.img",
                                            tmp_path, "-r", "1000000-1999999")
                assert code == 0 and body == image[1000000:2000000], (label, code, err)
                # a page, and a folder's listing (curl keeps a trailing slash after a
                # folder's name; after the bare CID it drops it, and a gateway then
                # redirects to the slash, kubo's as carget's, which curl does not follow)
                code, body, err = curl_ipfs(gateway, f"ipfs://{root}/index.html", tmp_path)
                assert code == 0 and body == b"<h1>hello</h1>\n", (label, code, err)
                code, body, err = curl_ipfs(gateway, f"ipfs://{root}/images/", tmp_path)
                assert code == 0 and b">ubuntu.img</a>" in body, (label, code, err)
            # a name that is not there: the bridge proves it absent (404), curl fails
            code, _, err = curl_ipfs(bridge.url, f"ipfs://{root}/images/missing.img",
                                     tmp_path)
            assert code == 22 and "404" in err, (code, err)


def test_curl_ipfs_scheme_through_a_bridge_that_cannot_verify(site: Path,
                                                              tmp_path: Path) -> None:
    """The bridge's only upstream is down: curl gets an error status, never bytes."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    with serve_process(["--cid-version", "1", str(site)], env=env) as origin:
        root = origin.added["site"]
    # the origin is gone now; its address refuses connections
    with serve_process(["--upstream", origin.url, "--cache-dir", str(tmp_path / "cache")],
                       env=env) as bridge:
        code, body, err = curl_ipfs(bridge.url, f"ipfs://{root}/images/ubuntu.img", tmp_path)
    assert code == 22 and body == b"", (code, err)
    assert any(f"error: {s}" in err for s in ("502", "504")), err
