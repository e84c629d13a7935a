"""Helpers shared by the server tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import glob
import os

from carget.car.decoder import decode_car

#: the shared/ folder sits beside the checkout (CI copies it there too)
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared",
                        "fixtures", "gateway-conformance")
CAR_TYPE = "application/vnd.ipld.car"


def fixture_cars() -> list[str]:
    return sorted(glob.glob(os.path.join(FIXTURES, "**", "*.car"), recursive=True))


def car_cids(body: bytes) -> list[str]:
    """CIDs of a CAR body in order; every block's hash is checked."""
    _, blocks = decode_car(body, verify=True)
    return [str(b.cid) for b in blocks]
