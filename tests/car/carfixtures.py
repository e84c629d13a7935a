"""Shared helpers for the CAR and exporter tests: the gateway-conformance fixtures.

(No __init__.py in tests/: pytest puts this directory on sys.path, so tests import it
as ``carfixtures``; the name is unique across the test tree.)
"""

from __future__ import annotations

from carget.car import CarHeader, decode_car
from carget.cid import CID
from carget.unixfs.exporter import Exporter
from sharedpath import CONFORMANCE, shared_dir

_SHARED = shared_dir()
FIXTURES = CONFORMANCE  # see tests/sharedpath.py

ALL_CARS = sorted(FIXTURES.rglob("*.car"))


def load(rel: str) -> tuple[CarHeader, Exporter, dict[CID, bytes]]:
    header, blocks = decode_car((FIXTURES / rel).read_bytes())
    store = {b.cid: bytes(b.data) for b in blocks}
    return header, Exporter(store), store
