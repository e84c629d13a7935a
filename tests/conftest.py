"""Fixtures shared by every test area."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture
def unprivileged() -> list[str]:
    """A command prefix that runs a program without root's power to read and write
    everything (CI runs as root, where permission tests would otherwise prove nothing):
    util-linux ``setpriv`` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding
    set, so mode bits apply again. Empty when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "util-linux setpriv is needed to drop root's DAC capabilities"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires_peer(reason): needs a real peer program (npm packages, curl); reason is None "
        "when it is present. Missing peers fail the test, so CI never passes by skipping them, "
        "unless CARGET_ALLOW_NO_INTEROP=1 turns the failure into a skip.",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires_peer"):
        reason = mark.args[0] if mark.args else None
        if reason is None:
            continue
        if os.environ.get("CARGET_ALLOW_NO_INTEROP") == "1":
            pytest.skip(f"peer missing: {reason}")
        pytest.fail(f"peer missing: {reason} (CARGET_ALLOW_NO_INTEROP=1 skips instead)")
