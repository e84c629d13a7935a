"""Helpers shared by the server tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from carget.car.decoder import decode_car
from sharedpath import CONFORMANCE

#: the gateway-conformance fixtures (see tests/sharedpath.py)
FIXTURES = str(CONFORMANCE)
CAR_TYPE = "application/vnd.ipld.car"

#: curl, the real third-party client the server tests drive
CURL = shutil.which("curl")
needs_curl = pytest.mark.requires_peer(
    None if CURL else "curl is not installed (CI: apt-get install curl)"
)


def run_curl(*args: str, max_time: float = 20) -> subprocess.CompletedProcess[bytes]:
    """``curl -sS --max-time MAX_TIME ARGS`` (the test marks itself ``needs_curl``)."""
    assert CURL is not None
    return subprocess.run([CURL, "-sS", "--max-time", f"{max_time:g}", *args],
                          capture_output=True, timeout=max_time + 10, check=False)


def fixture_cars() -> list[str]:
    return sorted(glob.glob(os.path.join(FIXTURES, "**", "*.car"), recursive=True))


def car_cids(body: bytes) -> list[str]:
    """CIDs of a CAR body in order; every block's hash is checked."""
    _, blocks = decode_car(body, verify=True)
    return [str(b.cid) for b in blocks]
