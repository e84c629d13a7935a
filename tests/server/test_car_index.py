"""`carget serve` of a CARv2 with an index: no scan at start, each block found through the
index and hashed before its first use; a lying index serves nothing wrong."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

import carget.server.store as bs
from carget.add import add_bytes
from carget.car.writer import open_car_writer
from carget.cid import CID, RAW, Block
from carget.server.store import BlockStore
from carget.server.testing import running_gateway
from carget.unixfs.options import resolve_options

OPTS = resolve_options(cid_version=1, chunker="size-65536")


def _car(path: Path, version: int, seed: int = 1) -> tuple[CID, bytes, list[Block]]:
    data = random.Random(seed).randbytes(5 * 65536 + 100)
    blocks: list[Block] = []
    root = add_bytes(data, OPTS, emit=lambda b: blocks.append(Block(b.cid, bytes(b.data)))).cid
    with open_car_writer(str(path), version=version) as w:
        for b in blocks:
            w.write_block(b)
        w.set_roots([root])
    return root, data, blocks


def test_an_indexed_car_is_served_without_a_scan(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    car = tmp_path / "v2.car"
    root, data, _ = _car(car, 2)

    def no_scan(*_: object) -> list[CID]:
        raise AssertionError("an indexed CAR must not be scanned")

    monkeypatch.setattr(bs, "_scan_car", no_scan)
    store = BlockStore()
    assert store.add_car(str(car)) == [root]
    with running_gateway(store) as url:
        r = httpx.get(f"{url}/ipfs/{root}", timeout=20)
        assert r.status_code == 200 and r.content == data
        r = httpx.get(f"{url}/ipfs/{root}?format=car", timeout=20)
        assert r.status_code == 200


def test_a_lying_index_serves_nothing_wrong(tmp_path: Path) -> None:
    car = tmp_path / "v2.car"
    root, _, blocks = _car(car, 2)
    raw = bytearray(car.read_bytes())
    leaf = next(b for b in blocks if b.cid.codec == RAW)
    at = raw.find(leaf.data)
    raw[at + 100] ^= 0xFF  # the block's bytes no longer match its CID
    car.write_bytes(raw)
    store = BlockStore()
    store.add_car(str(car))  # no scan: the damage is found when the block is asked for
    assert store.get(leaf.cid) is None and not store.has(leaf.cid)
    assert store.get(root) is not None
    with running_gateway(store) as url:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/ipfs/{root}", timeout=20).raise_for_status()
