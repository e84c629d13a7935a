"""The workers' path of CarReader (regular files, jobs > 1): the section walk plus reads
and hashing on the workers must give exactly what the sequential decoder gives: the same
blocks at the same offsets, the same bytes read, and for a damaged CAR the same blocks
before the same error."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import Any

import pytest

import carget.car.reader as reader_mod
from carget.car.encoder import encode_header, section_prefix
from carget.car.reader import CarReader
from carget.car.writer import CarWriter
from carget.cid import CID, DAG_PB, RAW, Block
from carget.errors import CargetError


def _blocks(rng: random.Random, n: int) -> list[Block]:
    out = []
    for _ in range(n):
        kind = rng.random()
        data = rng.randbytes(rng.choice([1, 40, 700, 3000, 9000]))
        if kind < 0.15:  # identity CID, its bytes inline
            cid = CID(1, RAW, b"\x00" + bytes([len(data[:30])]) + data[:30])
            data = data[:30]
        elif kind < 0.3:  # CIDv0 (a bare multihash in the section)
            cid = CID(0, DAG_PB, b"\x12\x20" + hashlib.sha256(data).digest())
        else:
            cid = CID.of(data, RAW)
        out.append(Block(cid, data))
    return out


def _car(blocks: list[Block], version: int) -> bytes:
    if version == 1:  # written by hand: duplicates and identity blocks kept as they are
        return encode_header([blocks[0].cid]) + b"".join(
            section_prefix(b.cid, len(b.data)) + bytes(b.data) for b in blocks)
    buf = io.BytesIO()
    w = CarWriter(buf, version=2, roots=[blocks[0].cid])
    for b in blocks:
        w.write_block(b)
    w.finish()
    return buf.getvalue()


def _read(path: Path, jobs: int) -> tuple[list[tuple[CID, bytes, int]], int, str | None]:
    """What CarReader gives for the file, with ``jobs`` workers; jobs=0: the decoder
    alone, fed from memory (the reference)."""
    got: list[tuple[CID, bytes, int]] = []
    src: Any = io.BytesIO(path.read_bytes()) if jobs == 0 else open(path, "rb", buffering=0)
    with src as f:
        reader = CarReader(f, jobs=max(jobs, 1))
        try:
            for block in reader.blocks():
                got.append((block.cid, bytes(block.data), reader.section_offset))
        except CargetError as exc:
            return got, reader.bytes_read, f"{type(exc).__name__}: {exc}"
    return got, reader.bytes_read, None


@pytest.fixture(autouse=True, params=["mapped", "pread"])
def _small_runs(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Many runs, some of one section; each run mapped, or read where mapping fails."""
    monkeypatch.setattr(reader_mod, "RUN_BYTES", 5000)
    if request.param == "pread":
        monkeypatch.setattr(reader_mod, "_map_run", lambda fd, start, size: None)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    runs: list[int] = []
    real = reader_mod._read_verify_run

    def spy(fd: int, run: reader_mod._Run) -> tuple[bytes | memoryview, int, Exception | None]:
        runs.append(run[0])
        return real(fd, run)

    monkeypatch.setattr(reader_mod, "_read_verify_run", spy)
    return runs


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_workers_give_what_the_decoder_gives(tmp_path: Path, version: int, seed: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    blocks = _blocks(rng, rng.randint(1, 60))
    path = tmp_path / "x.car"
    path.write_bytes(_car(blocks, version))
    runs = _spy(monkeypatch)
    seq = _read(path, 0)
    assert not runs
    assert seq[2] is None
    for jobs in (1, 2):
        par = _read(path, jobs)
        assert runs  # the workers' path ran
        runs.clear()
        assert par == seq
        assert par[1] == path.stat().st_size


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("seed", range(40))
def test_a_damaged_car_fails_alike(tmp_path: Path, version: int, seed: int) -> None:
    """One byte flipped, the file cut, or junk appended anywhere: the same blocks come
    out, then the same error (or none), whichever path reads it."""
    rng = random.Random(seed)
    data = bytearray(_car(_blocks(rng, rng.randint(2, 40)), version))
    what = seed % 3
    if what == 0:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif what == 1:
        del data[rng.randrange(1, len(data)):]
    else:
        data += rng.randbytes(rng.randint(1, 50))
    path = tmp_path / "x.car"
    path.write_bytes(bytes(data))
    try:
        seq = _read(path, 0)
    except CargetError:  # a broken header: every path fails before any block
        for jobs in (1, 2):
            with pytest.raises(CargetError):
                _read(path, jobs)
        return
    assert _read(path, 1) == seq
    assert _read(path, 2) == seq
