"""go-car (the Go CAR library, v2.17.0) and carget read and write each other's CARs.

go-car's own `car` command is in a module the Go module proxy does not serve, so
tests/interop/gocar is a small program over the same library calls that command makes
(built by tests/interop/build_peers.py): `verify` checks every block's hash, that the roots
are present and, for a CARv2, the header's sizes and that the index finds every block;
`create` imports a path with go-unixfsnode's builder into an indexed CARv2, as `car create`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from gopeers import carget, require, run

#: input name -> what to make (a file size, or a tree)
INPUTS = ["1B", "256KiB+1", "2MiB+", "tree", "tree-hidden"]
SIZES = {"1B": 1, "256KiB+1": 262145, "2MiB+": 2 * 1024 * 1024 + 12345}



@pytest.fixture(scope="module")
def gocar() -> Path:
    return require("gocar")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gocar-inputs")
    rng = random.Random(2170)
    for name, size in SIZES.items():
        (d / name).write_bytes(rng.randbytes(size))
    for name in ("tree", "tree-hidden"):
        t = d / name
        (t / "sub" / "deeper").mkdir(parents=True)
        (t / "empty-dir").mkdir()
        (t / "empty-file").write_bytes(b"")
        (t / "a.txt").write_bytes(b"hello\n")
        (t / "sub" / "b.bin").write_bytes(rng.randbytes(300_000))
        (t / "sub" / "deeper" / "c.bin").write_bytes(rng.randbytes(5000))
        (t / "link").symlink_to("a.txt")
        if name == "tree-hidden":
            (t / ".hidden").write_bytes(b"dot\n")
            (t / "sub" / ".also-hidden").write_bytes(rng.randbytes(70))
    return d


def add_root(path: Path, *flags: str) -> str:
    """The root CID `carget add` prints for path (-r for trees)."""
    last = carget("add", "-r", *flags, str(path)).stdout.splitlines()[-1]
    return last.split(" ")[1]


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under root: file bytes, symlink targets, directories."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = p.read_bytes()
    return out


def _gocar_reads(gocar: Path, car: Path, root: str) -> list[str]:
    """go-car verifies car, and its block list and roots are carget's."""
    run(gocar, "verify", str(car))
    blocks = lines(run(gocar, "ls", str(car)).stdout)
    assert blocks == lines(carget("car", "ls", str(car)).stdout)
    assert lines(run(gocar, "roots", str(car)).stdout) == [root]
    assert lines(carget("car", "roots", str(car)).stdout) == [root]
    return blocks


@pytest.mark.parametrize("name", INPUTS)
def test_gocar_verifies_carget_add_car(name: str, inputs: Path, gocar: Path,
                                       tmp_path: Path) -> None:
    """`carget add --cid-version 1 --car` (CARv1): go-car verifies it and lists the same
    blocks in the same order."""
    car = tmp_path / "x.car"
    root = add_root(inputs / name, "-H", "--cid-version", "1", "--car", str(car))
    blocks = _gocar_reads(gocar, car, root)
    assert root in blocks


@pytest.mark.parametrize("name", INPUTS)
def test_gocar_verifies_carget_carv2(name: str, inputs: Path, gocar: Path,
                                     tmp_path: Path) -> None:
    """`carget car create --version 2`: go-car checks the CARv2 header and that the index
    finds every block."""
    car = tmp_path / "x.car"
    carget("car", "create", "--version", "2", "-f", str(car), str(inputs / name))
    root = lines(carget("car", "roots", str(car)).stdout)[0]
    assert root == add_root(inputs / name, "-H", "--cid-version", "1")  # dot-files, as go-car
    _gocar_reads(gocar, car, root)


@pytest.mark.parametrize("name", INPUTS)
def test_carget_reads_gocar_carv2(name: str, inputs: Path, gocar: Path, tmp_path: Path) -> None:
    """go-car's indexed CARv2: carget verifies it (blocks and DAG), lists the same blocks,
    computes the same root (go-car imports dot-files too: `add -H`) and extracts the input
    back byte for byte."""
    car = tmp_path / "g.car"
    root = lines(run(gocar, "create", str(car), str(inputs / name)).stdout)[0]
    assert root == add_root(inputs / name, "-H", "--cid-version", "1")
    carget("car", "verify", "--dag", str(car))
    assert lines(carget("car", "ls", str(car)).stdout) == lines(run(gocar, "ls", str(car)).stdout)
    assert "Version: 2" in carget("car", "inspect", str(car)).stdout
    out = tmp_path / "out"
    carget("car", "extract", "-f", str(car), "-o", str(out))
    if name in SIZES:
        assert (out / root).read_bytes() == (inputs / name).read_bytes()
    else:
        assert snapshot(out) == snapshot(inputs / name)


@pytest.mark.parametrize("name", INPUTS)
def test_car_create_v2_is_byte_identical_to_gocar(name: str, inputs: Path, gocar: Path,
                                                  tmp_path: Path) -> None:
    """`carget car create --version 2` writes the very bytes go-car's blockstore writes
    (same DAG, block order, CARv2 header, MultihashIndexSorted index)."""
    theirs, ours = tmp_path / "g.car", tmp_path / "c.car"
    run(gocar, "create", str(theirs), str(inputs / name))
    carget("car", "create", "--version", "2", "-f", str(ours), str(inputs / name))
    assert ours.read_bytes() == theirs.read_bytes()


def test_carget_reads_gocar_v1_and_gocar_index_of_carget(inputs: Path, gocar: Path,
                                                         tmp_path: Path) -> None:
    """go-car's CARv1 (extracted from its CARv2) reads in carget; go-car wraps carget's
    CARv1 into an indexed CARv2 that carget reads too."""
    v2, v1 = tmp_path / "g2.car", tmp_path / "g1.car"
    root = lines(run(gocar, "create", str(v2), str(inputs / "tree")).stdout)[0]
    run(gocar, "extract-v1", str(v2), str(v1))
    assert "Version: 1" in carget("car", "inspect", str(v1)).stdout
    carget("car", "verify", "--dag", str(v1))
    assert lines(carget("car", "roots", str(v1)).stdout) == [root]
    assert lines(carget("car", "ls", str(v1)).stdout) == lines(run(gocar, "ls", str(v2)).stdout)

    ours, wrapped = tmp_path / "c1.car", tmp_path / "w2.car"
    root = add_root(inputs / "2MiB+", "--cid-version", "1", "--car", str(ours))
    run(gocar, "wrap", str(ours), str(wrapped))
    assert "Version: 2" in carget("car", "inspect", str(wrapped)).stdout
    carget("car", "verify", "--dag", str(wrapped))
    assert lines(carget("car", "ls", str(wrapped)).stdout) == lines(
        carget("car", "ls", str(ours)).stdout)
    assert lines(carget("car", "roots", str(wrapped)).stdout) == [root]
