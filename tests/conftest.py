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
