"""CAR writer (v1, v2 + MultihashIndexSorted), reader and random-access block store."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from carfixtures import ALL_CARS

from carget.car import decode_car
from carget.car.index import decode_index, encode_multihash_index
from carget.car.reader import CarBlockStore, CarReader, open_car_store
from carget.car.writer import open_car_writer
from carget.cid import CID, RAW, Block
from carget.errors import CARError, HashMismatch


def _blocks(n: int, size: int = 1500) -> list[Block]:
    out = []
    for i in range(n):
        data = i.to_bytes(4, "big") * (size // 4)
        out.append(Block(CID.of(data, RAW), data))
    return out


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("nroots", [0, 1, 40])
def test_roots_set_at_the_end_any_header_length(tmp_path: Path, version: int, nroots: int) -> None:
    blocks = _blocks(300)
    path = tmp_path / "o.car"
    with open_car_writer(str(path), version=version) as w:
        for b in blocks + blocks[:5]:  # duplicates are written once
            w.write_block(b)
        w.set_roots([b.cid for b in blocks[:nroots]])
    header, got = decode_car(path.read_bytes())
    assert header.version == version and list(header.roots) == [b.cid for b in blocks[:nroots]]
    assert [(b.cid, bytes(b.data)) for b in got] == [(b.cid, b.data) for b in blocks]
    with open_car_store(str(path)) as store:
        assert (store._index is not None) == (version == 2)
        for b in blocks:
            assert store.get(b.cid) == b.data
        assert store.get(CID.of(b"absent", RAW)) is None  # a block source: absent is None
    assert [p.name for p in tmp_path.iterdir()] == ["o.car"]  # no temp files left


def test_v1_with_cidv0_root_shrinks_header(tmp_path: Path) -> None:
    for car in ALL_CARS:
        header, blocks = decode_car(car.read_bytes())
        out = tmp_path / "x.car"
        with open_car_writer(str(out)) as w:
            for b in blocks:
                w.write_block(b)
            w.set_roots(header.roots)
        h2, b2 = decode_car(out.read_bytes())
        assert h2.roots == header.roots
        assert {b.cid for b in b2} == {b.cid for b in blocks}


def test_error_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "never.car"
    with pytest.raises(RuntimeError), open_car_writer(str(target)) as w:
        w.write_block(_blocks(1)[0])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_identity_blocks_are_not_written(tmp_path: Path) -> None:
    ident = CID(1, RAW, b"\x00\x02hi")
    path = tmp_path / "i.car"
    with open_car_writer(str(path), roots=[ident]) as w:
        w.write_block(Block(ident, b"hi"))
    assert decode_car(path.read_bytes())[1] == []


def test_index_round_trip_and_bad_index() -> None:
    recs = [(b.cid.multihash, i * 100) for i, b in enumerate(_blocks(50))]
    idx = decode_index(encode_multihash_index(recs))
    assert len(idx) == 50
    for mh, off in recs:
        assert idx.find(mh) == [off]
    raw = encode_multihash_index(recs)
    with pytest.raises(CARError):
        decode_index(raw[:-5])
    with pytest.raises(CARError):
        decode_index(b"\x80\x09")


def test_v2_index_offset_past_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v2.car"
    with open_car_writer(str(path), version=2, roots=[]) as w:
        w.write_block(_blocks(1)[0])
    data = bytearray(path.read_bytes())
    data[11 + 32 : 11 + 40] = (len(data) + 100).to_bytes(8, "little")
    with pytest.raises(CARError, match="index offset"):
        CarBlockStore(io.BytesIO(bytes(data)))  # type: ignore[arg-type]


@pytest.mark.parametrize("jobs", [1, 2])
def test_reader_pool_verifies_in_order(jobs: int) -> None:
    blocks = _blocks(64, 20_000)
    buf = io.BytesIO()
    from carget.car.writer import CarWriter

    w = CarWriter(buf, roots=[blocks[0].cid])
    for b in blocks:
        w.write_block(b)
    w.finish()
    data = buf.getvalue()
    got = list(CarReader(io.BytesIO(data), jobs=jobs).blocks())  # type: ignore[arg-type]
    assert [b.cid for b in got] == [b.cid for b in blocks]
    bad = bytearray(data)
    bad[-7] ^= 0xFF
    with pytest.raises(HashMismatch):
        list(CarReader(io.BytesIO(bytes(bad)), jobs=jobs).blocks())  # type: ignore[arg-type]


def test_stdout_streams_when_roots_known(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("from carget.car.writer import open_car_writer\n"
            "from carget.cid import CID, RAW, Block\n"
            "b = Block(CID.of(b'x'*9, RAW), b'x'*9)\n"
            "for roots in ([b.cid], None):\n"
            "    with open_car_writer('-', roots=roots) as w:\n"
            "        w.write_block(b)\n"
            "        w.set_roots([b.cid])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).stdout
    header, blocks = decode_car(out[: len(out) // 2])
    assert len(blocks) == 1 and header.roots == (blocks[0].cid,)
    assert out[: len(out) // 2] == out[len(out) // 2 :]
    assert os.path.exists(tmp_path)
