"""Helpers shared by the fetcher tests (a uniquely named module: the test folders are not
packages, so every test area's ``conftest`` is importable only by pytest itself)."""

from __future__ import annotations

import sys

import trio

from sharedpath import CONFORMANCE

#: the gateway-conformance fixtures (see tests/sharedpath.py)
FIXTURES = CONFORMANCE
#: no test may take longer than this even if the code under test hangs
CLI_TIMEOUT = 60.0


def content(n: int, seed: int = 1) -> bytes:
    """Deterministic, incompressible-enough test bytes."""
    import hashlib

    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


class ByteSink:
    """A writable stream for ``cat``'s output that keeps what it is given."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, b: bytes) -> int:
        self.buf += b
        return len(b)

    def flush(self) -> None:
        pass


async def run_cli(*args: str, timeout: float = CLI_TIMEOUT) -> tuple[int, bytes, str]:
    """Run ``python -m carget ARGS``; return (exit code, stdout bytes, stderr text)."""
    with trio.fail_after(timeout):
        proc = await trio.run_process(
            [sys.executable, "-m", "carget", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")
