"""Helpers shared by the server tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import glob
import os

from carget.car.decoder import decode_car
from sharedpath import CONFORMANCE

#: the gateway-conformance fixtures (see tests/sharedpath.py)
FIXTURES = str(CONFORMANCE)
CAR_TYPE = "application/vnd.ipld.car"


def fixture_cars() -> list[str]:
    return sorted(glob.glob(os.path.join(FIXTURES, "**", "*.car"), recursive=True))


def car_cids(body: bytes) -> list[str]:
    """CIDs of a CAR body in order; every block's hash is checked."""
    _, blocks = decode_car(body, verify=True)
    return [str(b.cid) for b in blocks]
