"""Third-party clients against the gateway: curl (raw and CAR) and the ``carget serve``
command itself run as a process."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from servehelp import CAR_TYPE, car_cids, needs_curl, run_curl

from carget.server.testing import running_gateway
from carget.tree import add_paths
from carget.unixfs.options import resolve_options

RAW_ASCII = "bafkreihhpc5y2pqvl5rbe5uuyhqjouybfs3rvlmisccgzue2kkt5zq6upq"



@needs_curl
def test_curl_raw_block(gateway: str) -> None:
    out = run_curl("-f", "-H", "Accept: application/vnd.ipld.raw", f"{gateway}/ipfs/{RAW_ASCII}")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hello application/vnd.ipld.raw\n"


@needs_curl
def test_curl_car_of_an_imported_file(tmp_path: Path) -> None:
    f = tmp_path / "img.bin"
    f.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    opts = {"cid_version": 1}
    root = add_paths([str(f)], resolve_options(**opts), jobs=1)[0]  # type: ignore[arg-type]
    with running_gateway([str(f)], **opts) as url:
        dest = tmp_path / "out.car"
        out = run_curl("-f", "-D", "-", "-o", str(dest), "-H", f"Accept: {CAR_TYPE}",
                    f"{url}/ipfs/{root}?dag-scope=all")
        assert out.returncode == 0, out.stderr
        assert b"application/vnd.ipld.car" in out.stdout
        cids = car_cids(dest.read_bytes())
        assert cids[0] == str(root) and len(cids) == 1 + 13  # root + 13 leaves of 256 KiB
        # a cut stream is an error for curl too: missing block -> transfer closed early
        bad = run_curl("-f", "-o", os.devnull, f"{url}/ipfs/"
                    "QmYhmPjhFjYFyaoiuNzYv8WGavpSRDwdHWe5B4M5du5Rtk?format=car")
        assert bad.returncode != 0


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_carget_serve_command(tmp_path: Path, stop: int) -> None:
    d = tmp_path / "site"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a.txt").write_bytes(b"alpha\n")
    (d / "b.bin").write_bytes(os.urandom(600_000))
    expected = subprocess.run([sys.executable, "-m", "carget", "add", "-r", "--cid-version=1",
                               str(d)], capture_output=True, text=True, check=True).stdout
    proc = subprocess.Popen([sys.executable, "-m", "carget", "serve", "--listen",
                             "127.0.0.1:0", "--cid-version=1", str(d)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        while True:
            line = proc.stdout.readline()
            assert line, f"serve exited early: {proc.stderr.read() if proc.stderr else ''}"
            if line.startswith("serving on "):
                url = line.split()[-1]
                break
            lines.append(line)
        assert "".join(lines) == expected  # the same `added` lines as carget add
        root = expected.splitlines()[-1].split()[1]
        r = httpx.get(f"{url}/ipfs/{root}/b.bin?format=car", timeout=10)
        assert r.status_code == 200
        assert len(r.content) > 600_000
        a = httpx.get(f"{url}/ipfs/{root}/sub/a.txt?format=car", timeout=10)
        a_cid = next(ln.split()[1] for ln in expected.splitlines() if ln.endswith("/a.txt"))
        assert car_cids(a.content)[-1] == a_cid
    finally:
        proc.send_signal(stop)
        rc = proc.wait(timeout=20)
    assert rc == 0
    assert "stopped" in (proc.stderr.read() if proc.stderr else "")


def test_serve_refuses_a_public_address_without_public(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"x")
    out = subprocess.run([sys.executable, "-m", "carget", "serve", "--listen", "0.0.0.0:0",
                          str(f)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "--public" in out.stderr


def test_serve_cli_digest_of_served_file_matches(tmp_path: Path) -> None:
    # the bytes a client reassembles from a CAR served from the original file are the file
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(1_000_000))
    with running_gateway([str(f)], cid_version=1, chunker="size-100000") as url:
        root = add_paths([str(f)], resolve_options(cid_version=1, chunker="size-100000"),
                         jobs=1)[0]
        r = httpx.get(f"{url}/ipfs/{root}?format=car", timeout=10)
        from carget.car.decoder import decode_car

        _, blocks = decode_car(r.content)
        data = b"".join(bytes(b.data) for b in blocks[1:])
        assert hashlib.sha256(data).digest() == hashlib.sha256(f.read_bytes()).digest()
