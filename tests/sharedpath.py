"""Where the shared gateway-conformance fixtures are.

They live in ``shared/`` beside the checkout (as on the project's machines and in CI). A
clone made elsewhere from a local checkout (``git clone -q . "$(mktemp -d)"``) finds them
beside the checkout it was cloned from; ``CARGET_SHARED_DIR`` names the folder outright.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def _candidates() -> list[Path]:
    out: list[Path] = []
    if os.environ.get("CARGET_SHARED_DIR"):
        out.append(Path(os.environ["CARGET_SHARED_DIR"]))
    out.append(_REPO.parent / "shared")
    try:
        origin = subprocess.run(["git", "-C", str(_REPO), "config", "--get",
                                 "remote.origin.url"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and os.path.isdir(origin):
        out.append(Path(origin).resolve().parent / "shared")
    return out


def shared_dir() -> Path:
    """The ``shared/`` folder (the first candidate that holds the fixtures)."""
    candidates = _candidates()
    for c in candidates:
        if (c / "fixtures" / "gateway-conformance").is_dir():
            return c
    return candidates[0]


#: shared/fixtures/gateway-conformance
CONFORMANCE = shared_dir() / "fixtures" / "gateway-conformance"
