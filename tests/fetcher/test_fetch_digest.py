"""The whole-file digest is computed while the file fills in, whatever order the streams
write their leaves in: from memory when bytes continue the digest, read back otherwise."""

from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path

import pytest

from carget.cid import CID, RAW
from carget.fetcher.outputs.file import FileOutput
from carget.fetcher.verifier import FileData

LEAF = 1000


def leaves(data: bytes) -> list[FileData]:
    return [
        FileData("", off, data[off : off + LEAF], CID.of(data[off : off + LEAF], RAW), None)
        for off in range(0, len(data), LEAF)
    ]


@pytest.mark.parametrize("seed", range(8))
def test_digest_in_any_write_order_from_two_threads(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(LEAF * 300 + 7)
    events = leaves(data)
    # two "streams": each writes its own units in order, the units interleave at random
    units = [events[i : i + 16] for i in range(0, len(events), 16)]
    rng.shuffle(units)
    halves = [[ev for unit in units[k::2] for ev in unit] for k in (0, 1)]
    out = FileOutput(str(tmp_path / "f"), CID.of(data, RAW), len(data))
    out.start_digest("sha256")

    def writer(evs: list[FileData]) -> None:
        for ev in evs:
            out.handle([ev])

    threads = [threading.Thread(target=writer, args=(h,)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out.finish_digest() == "sha256:" + hashlib.sha256(data).hexdigest()
    out.commit()
    assert (tmp_path / "f").read_bytes() == data


def test_in_order_bytes_are_not_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = random.Random(1).randbytes(LEAF * 50)
    out = FileOutput(str(tmp_path / "f"), CID.of(data, RAW), len(data))
    out.start_digest("sha512")
    reads: list[int] = []
    import carget.fetcher.outputs.file as mod

    real = mod.os.pread
    monkeypatch.setattr(mod.os, "pread", lambda fd, n, off: reads.append(n) or real(fd, n, off))
    for ev in leaves(data):
        out.handle([ev])
    assert out.finish_digest() == "sha512:" + hashlib.sha512(data).hexdigest()
    assert reads == []  # a single in-order stream is hashed from memory only
    out.commit()


def test_unfinished_file_has_no_digest(tmp_path: Path) -> None:
    data = b"x" * (LEAF * 3)
    out = FileOutput(str(tmp_path / "f"), CID.of(data, RAW), len(data))
    out.start_digest("sha256")
    out.handle(leaves(data)[:2])
    with pytest.raises(Exception, match="digest stopped"):
        out.finish_digest()
    out.abandon(keep=False)
