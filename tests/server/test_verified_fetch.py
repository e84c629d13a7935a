"""A real third-party client: npm ``@helia/verified-fetch`` configured with only the local
gateway (no libp2p, no bitswap, no routers) gets the right bytes from ``carget serve``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from carget.server.testing import running_gateway
from carget.tree import add_paths
from carget.unixfs.options import resolve_options

JS = Path(__file__).resolve().parents[1] / "interop" / "js"
SCRIPT = JS / "verified-fetch.mjs"
MODULE = JS / "node_modules" / "@helia" / "verified-fetch"
NODE = shutil.which("node")


def _skip_reason() -> str | None:
    if NODE is None:
        return "node is not installed"
    if not MODULE.is_dir():
        return f"{MODULE} is missing: run `npm install` in {JS}"
    return None


pytestmark = pytest.mark.requires_peer(_skip_reason())


def _fetch(gateway: str, path: str, fmt: str | None = None) -> dict[str, object]:
    assert NODE is not None
    args = [NODE, str(SCRIPT), gateway, path] + ([fmt] if fmt else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_verified_fetch_gets_the_right_bytes(tmp_path: Path) -> None:
    d = tmp_path / "share"
    (d / "docs").mkdir(parents=True)
    big = os.urandom(1_500_000)
    (d / "vm.img").write_bytes(big)
    (d / "docs" / "readme.txt").write_bytes(b"read me\n")
    cases = [({"cid_version": 1}, "vm.img", big),  # raw leaves, 6 leaves
             ({}, "vm.img", big),  # CIDv0, dag-pb leaves
             ({"cid_version": 1}, "docs/readme.txt", b"read me\n")]
    for opts, rel, expected in cases:
        root = add_paths([str(d)], resolve_options(**opts), jobs=1)[0]  # type: ignore[arg-type]
        with running_gateway([str(d)], **opts) as url:
            got = _fetch(url, f"{root}/{rel}")
        assert got["status"] == 200, got
        assert got["length"] == len(expected)
        assert got["sha256"] == hashlib.sha256(expected).hexdigest()


def test_verified_fetch_through_a_hamt_fixture(gateway: str) -> None:
    hamt = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"
    got = _fetch(gateway, f"{hamt}/685.txt")
    assert got["status"] == 200
    assert got["length"] == 1026
    assert got["sha256"] == "998785f13287a9aabc2d7048e4c2905d502ff13ef40f2d135f163b5a762701c5"


def test_verified_fetch_raw_block(gateway: str) -> None:
    raw = "bafkreihhpc5y2pqvl5rbe5uuyhqjouybfs3rvlmisccgzue2kkt5zq6upq"
    got = _fetch(gateway, raw, "raw")
    assert got["status"] == 200
    assert got["sha256"] == hashlib.sha256(b"hello application/vnd.ipld.raw\n").hexdigest()
