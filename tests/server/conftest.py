"""Shared fixtures: one gateway over every conformance CAR, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from servehelp import FIXTURES, fixture_cars

from carget.server.testing import running_gateway


@pytest.fixture(scope="session")
def gateway() -> Iterator[str]:
    cars = fixture_cars()
    if not cars:
        pytest.fail(f"gateway-conformance fixtures not found at {FIXTURES}")
    with running_gateway(cars) as url:
        yield url


@pytest.fixture(scope="session")
def client(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=10) as c:
        yield c
