"""Fixtures for the fetcher tests: an isolated environment (HOME and IPFS_PATH in temp
dirs, no IPFS_GATEWAY, so nothing can reach a public gateway), stores, and a CLI runner
that runs ``carget`` as a subprocess under a hard timeout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

sys.path.insert(0, os.path.dirname(__file__))

from dagstore import DagStore

FIXTURES = Path("/work/shared/fixtures/gateway-conformance")
#: no test may take longer than this even if the code under test hangs
CLI_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IPFS_PATH", str(home / "ipfs"))
    monkeypatch.delenv("IPFS_GATEWAY", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def store() -> DagStore:
    return DagStore()


def content(n: int, seed: int = 1) -> bytes:
    """Deterministic, incompressible-enough test bytes."""
    import hashlib

    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


async def run_cli(*args: str, timeout: float = CLI_TIMEOUT) -> tuple[int, bytes, str]:
    """Run ``python -m carget ARGS``; return (exit code, stdout bytes, stderr text)."""
    with trio.fail_after(timeout):
        proc = await trio.run_process([sys.executable, "-m", "carget", *args],
                                      capture_stdout=True, capture_stderr=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")
