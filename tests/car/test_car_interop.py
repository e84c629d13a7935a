"""Interop both ways with the npm packages @ipld/car and ipfs-car (tests/interop/js).

Skipped ONLY when tests/interop/js/node_modules is absent (CI installs it with `npm ci`);
the skip reason says so loudly. A missing `node` with node_modules present is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from carget.car import decode_car

JS = Path(__file__).resolve().parents[1] / "interop" / "js"
NODE_MODULES = JS / "node_modules"
IPFS_CAR = NODE_MODULES / "ipfs-car" / "bin.js"

pytestmark = pytest.mark.requires_peer(
    None
    if NODE_MODULES.is_dir()
    else "tests/interop/js/node_modules is missing: run `npm ci` in tests/interop/js"
)


def node(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("node")
    assert exe, "node is not on PATH but tests/interop/js/node_modules exists"
    r = subprocess.run([exe, *args], cwd=JS, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def carget(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "carget", *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def blocks_of(path: Path) -> list[dict[str, Any]]:
    _, blocks = decode_car(path.read_bytes())
    return [{"cid": str(b.cid), "size": len(b.data),
             "sha256": hashlib.sha256(b.data).hexdigest()} for b in blocks]


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(1_300_000))  # several leaves + a parent
    (src / "sub" / "a.txt").write_bytes(b"hello from carget\n")
    (src / "sub" / "deeper" / "empty").write_bytes(b"")
    (src / "sub" / "ünïcode name.txt").write_bytes(b"utf-8 names\n")
    return src


@pytest.mark.parametrize("version", [1, 2])
def test_ipld_car_reads_carget_cars(tmp_path: Path, source: Path, version: int) -> None:
    car = tmp_path / f"v{version}.car"
    root = carget("car", "create", "-f", str(car), "--version", str(version),
                  str(source)).stdout.split()
    js = json.loads(node("car-read.mjs", str(car)).stdout)
    assert js["version"] == version
    assert js["roots"] == root
    assert js["blocks"] == blocks_of(car)
    assert len(js["blocks"]) >= 8


@pytest.mark.parametrize("version", [1, 2])
def test_ipfs_car_unpacks_carget_cars(tmp_path: Path, source: Path, version: int) -> None:
    car = tmp_path / f"v{version}.car"
    carget("car", "create", "-f", str(car), "--version", str(version), str(source))
    out = tmp_path / "unpacked"
    node(str(IPFS_CAR), "unpack", str(car), "--output", str(out))
    assert tree_files(out) == tree_files(source)


def test_carget_reads_ipld_car_writer_output(tmp_path: Path) -> None:
    car = tmp_path / "js.car"
    js = json.loads(node("car-write.mjs", str(car)).stdout)
    header, _ = decode_car(car.read_bytes())
    assert [str(r) for r in header.roots] == js["roots"]
    assert blocks_of(car) == js["blocks"]
    # the dag-cbor root links a CIDv0 dag-pb node linking raw leaves: the DAG is complete
    assert "verified 6 blocks and DAG" in carget("car", "verify", "--dag", str(car)).stdout
    assert carget("car", "roots", str(car)).stdout.split() == js["roots"]


def test_carget_reads_and_extracts_ipfs_car_pack(tmp_path: Path, source: Path) -> None:
    car = tmp_path / "packed.car"
    node(str(IPFS_CAR), "pack", str(source), "--output", str(car))
    js_root = node(str(IPFS_CAR), "roots", str(car)).stdout.split()
    assert carget("car", "roots", str(car)).stdout.split() == js_root
    carget("car", "verify", "--dag", str(car))
    out = tmp_path / "x"
    carget("car", "extract", "-f", str(car), "-o", str(out))
    # ipfs-car packs a directory as the root itself (--wrap only wraps files)
    assert tree_files(out) == tree_files(source)
    js_blocks = node(str(IPFS_CAR), "blocks", str(car)).stdout.split()
    assert js_blocks == [b["cid"] for b in blocks_of(car)]
