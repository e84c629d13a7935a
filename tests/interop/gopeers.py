"""Where the Go peers built by tests/interop/build_peers.py are, and how to run them.

``require(name)`` returns a peer's binary. A peer that was not built fails the test (so a CI
run can never pass by silently skipping it) unless ``CARGET_SKIP_PEERS=1`` or
``CARGET_ALLOW_NO_INTEROP=1`` is set, which turn the failure into a skip. A peer the Go
module proxy refuses (recorded by the build script as ``UNAVAILABLE``) skips with the
proxy's words.

kubo and lassie only ever run inside ``unshare -n``: ``isolated(script)`` runs a shell
script in a new network namespace holding nothing but loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from build_peers import (
    CONFORMANCE_VERSION,
    CURL8_SUITE,
    GOCAR_VERSION,
    KUBO_VERSION,
    LASSIE_VERSION,
    Paths,
    peers_dir,
)

PATHS = Paths(peers_dir())
BUILD = "python3 tests/interop/build_peers.py"

_BINARIES = {
    "kubo": (PATHS.kubo, f"kubo {KUBO_VERSION}"),
    "gocar": (PATHS.gocar, f"go-car {GOCAR_VERSION} (tests/interop/gocar)"),
    "lassie": (PATHS.lassie, f"lassie {LASSIE_VERSION}"),
    "conformance": (PATHS.conformance, f"gateway-conformance {CONFORMANCE_VERSION}"),
    "curl8": (PATHS.curl8, f"curl 8 ({CURL8_SUITE})"),
}


def _opted_out() -> bool:
    return "1" in (os.environ.get("CARGET_SKIP_PEERS"), os.environ.get("CARGET_ALLOW_NO_INTEROP"))


def require(name: str) -> Path:
    """The built binary of peer ``name`` (kubo, gocar, lassie, conformance, curl8)."""
    binary, label = _BINARIES[name]
    refused = PATHS.unavailable(binary)
    if refused and not binary.is_file():
        pytest.skip(f"{label}: the Go module proxy does not serve it: {refused}")
    if not os.access(binary, os.X_OK):
        msg = f"{label} is not built at {binary}: run `{BUILD}`"
        if _opted_out():
            pytest.skip(msg)
        pytest.fail(f"{msg} (CARGET_SKIP_PEERS=1 skips instead)")
    return binary


def require_isolation() -> None:
    """``unshare -n`` needs root (CI runs as root) and ``ip`` to bring loopback up."""
    missing = [t for t in ("unshare", "ip") if shutil.which(t) is None]
    if missing or os.geteuid() != 0:
        msg = (f"{', '.join(missing)} missing" if missing else "not root") + \
            ": kubo and lassie only run inside `unshare -n`"
        if _opted_out():
            pytest.skip(msg)
        pytest.fail(msg)


def isolated(script: str, *, env: dict[str, str] | None = None, timeout: float = 600,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``sh -c script`` in a new network namespace with only loopback up."""
    require_isolation()
    full = "set -e\nip link set lo up\n" + script
    p = subprocess.run(["unshare", "-n", "sh", "-c", full], env={**os.environ, **(env or {})},
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"isolated script failed ({p.returncode}):\n{script}\n"
                             f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p


def carget_cmd() -> list[str]:
    """The carget command line of the running interpreter's install."""
    return [sys.executable, "-m", "carget"]


def carget(*args: str, check: bool = True, cwd: Path | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([*carget_cmd(), *args], capture_output=True, text=True, cwd=cwd,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"carget {' '.join(args)} failed ({p.returncode}):\n"
                             f"{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p


def run(binary: Path, *args: str, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a peer that needs no network (go-car) directly."""
    p = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{binary.name} {' '.join(args)} failed ({p.returncode}):\n"
                             f"{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p


def known_difference(reason: str) -> pytest.MarkDecorator:
    """A strict xfail for a case where carget is known to differ from the peer. Only an
    AssertionError counts, so a peer that is missing or crashes still fails the test."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)
