"""Every golden file vector in tests/vectors/files.json (each kubo-0.43.1-confirmed, also run
through kubo v0.22 and the JS importer, never by carget) must come out of carget's importer
byte-identical."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from carget.add import import_stream

VECTORS = Path(__file__).parent.parent / "vectors"
sys.path.insert(0, str(VECTORS))
from content import make_bytes  # noqa: E402
from kuboflags import import_options  # noqa: E402

FILES = json.loads((VECTORS / "files.json").read_text())["vectors"]


class _Stream:
    """Feeds generated content without holding two copies (some vectors are ~45 MB)."""

    def __init__(self, data: bytes) -> None:
        self._mv = memoryview(data)
        self._pos = 0

    def readinto(self, buf: bytearray | memoryview) -> int:
        n = min(len(buf), len(self._mv) - self._pos)
        buf[:n] = self._mv[self._pos : self._pos + n]
        self._pos += n
        return n


def test_vectors_cover_the_issue() -> None:
    sizes = {v["content"]["size"] for v in FILES}
    assert {0, 1, 262143, 262144, 262145, 174 * 262144, 174 * 262144 + 1} <= sizes
    sources = " ".join(" ".join(v["source"]) for v in FILES)
    assert "kubo" in sources and "ipfs-unixfs-importer" in sources


@pytest.mark.parametrize("vector", FILES, ids=[v["name"] for v in FILES])
def test_file_vector(vector: dict[str, Any]) -> None:
    data = make_bytes(vector["content"]["size"], vector["content"]["seed"])
    opts = import_options(vector["options"])
    got = import_stream(_Stream(data), opts, jobs=2)
    assert str(got.cid) == vector["cid"], vector["source"]
