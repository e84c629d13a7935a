"""Interop tests run real peer implementations (npm packages under tests/interop/js).

`.ci/run` installs them with `npm ci`; on a machine without them these tests fail loudly
unless CARGET_ALLOW_NO_INTEROP=1 is set (then they skip with the reason), so a CI run can
never pass while silently skipping the peers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="session")
def node_js() -> Path:
    node = shutil.which("node")
    ready = node is not None and (JS / "node_modules" / "ipfs-unixfs-importer").is_dir()
    if not ready:
        msg = "npm interop packages missing: run `npm ci --prefix tests/interop/js`"
        if os.environ.get("CARGET_ALLOW_NO_INTEROP") == "1":
            pytest.skip(msg)
        pytest.fail(msg)
    return JS
