"""Fixtures for the fetcher tests: an isolated environment (HOME and IPFS_PATH in temp
dirs, no IPFS_GATEWAY, so nothing can reach a public gateway), stores, and a CLI runner
that runs ``carget`` as a subprocess under a hard timeout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trustme

sys.path.insert(0, os.path.dirname(__file__))

from dagstore import DagStore
from fetchhelp import CLI_TIMEOUT, FIXTURES, content, run_cli  # noqa: F401  (re-exported)


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


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A test certificate authority (trustme) for the HTTPS tests."""
    return trustme.CA()
