"""lassie v0.23.2 (built by tests/interop/build_peers.py) fetches from `carget serve` as an
HTTP trustless-gateway provider, and the CAR it writes holds the content.

Both run inside `unshare -n` (loopback only); lassie's `--providers` names the loopback
server and `--protocols http` keeps it to HTTP, so it does no provider discovery.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from gopeers import carget, carget_cmd, isolated, require


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Serve a file (CIDv0) and a tree (CIDv1) with `carget serve`, fetch with lassie."""
    lassie = require("lassie")
    d = tmp_path_factory.mktemp("lassie")
    rng = random.Random(2302)
    (d / "file.bin").write_bytes(rng.randbytes(1_500_000))
    tree = d / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"hello\n")
    (tree / "sub" / "b.bin").write_bytes(rng.randbytes(700_000))
    (tree / "empty").write_bytes(b"")
    file_cid = carget("add", "-Q", str(d / "file.bin")).stdout.strip()
    tree_cid = carget("add", "-r", "-Q", "--cid-version", "1", str(tree)).stdout.strip()

    fetches = {  # out name -> lassie arguments
        "file": [file_cid],
        "path": [f"/ipfs/{tree_cid}/sub/b.bin"],
        "tree": [tree_cid],
        "range": ["--entity-bytes", "0:1000", file_cid],
        "range-entity": ["--dag-scope", "entity", "--entity-bytes", "0:1000", file_cid],
    }
    serve = " ".join(f"'{a}'" for a in carget_cmd())
    script = [
        # the tree is served with --cid-version 1, so two servers: one per import setting
        f"{serve} serve --listen 127.0.0.1:0 '{d / 'file.bin'}' > '{d}/s1.out' 2>&1 &",
        "S1=$!",
        "trap 'kill $S1 ${S2:-} 2>/dev/null || true' EXIT",
        f"{serve} serve --listen 127.0.0.1:0 --cid-version 1 '{tree}' > '{d}/s2.out' 2>&1 &",
        "S2=$!",
        "for i in $(seq 150); do",
        f"  grep -q 'serving on' '{d}/s1.out' && grep -q 'serving on' '{d}/s2.out' && break",
        "  sleep 0.2; done",
        f"U1=$(awk '/serving on/ {{print $3}}' '{d}/s1.out')",
        f"U2=$(awk '/serving on/ {{print $3}}' '{d}/s2.out')",
        f'test -n "$U1" && test -n "$U2" || {{ cat \'{d}/s1.out\' \'{d}/s2.out\'; exit 1; }}',
    ]
    for name, args in fetches.items():
        url = "$U1" if file_cid in args else "$U2"
        quoted = " ".join(f"'{a}'" for a in args)
        script.append(
            f'rc=0; timeout 120 "$LASSIE" fetch --providers "{url}" --protocols http '
            f"--global-timeout 60s -o '{d / name}.car' {quoted} > '{d / name}.log' 2>&1 "
            f"|| rc=$?; echo $rc > '{d / name}.rc'")
    isolated("\n".join(script), env={"LASSIE": str(lassie)}, timeout=900)
    return {"dir": d, "tree": tree, "file_cid": file_cid, "tree_cid": tree_cid}


def _fetched(fetched: dict[str, object], name: str) -> Path:
    """The CAR lassie wrote for fetch ``name``, once lassie said it succeeded."""
    d = fetched["dir"]
    assert isinstance(d, Path)
    rc = (d / f"{name}.rc").read_text().strip()
    assert rc == "0", f"lassie {name} exited {rc}:\n{(d / f'{name}.log').read_text()[-3000:]}"
    return d / f"{name}.car"


def _roots(car: Path) -> list[str]:
    return carget("car", "roots", str(car)).stdout.split()


def _blocks(car: Path) -> list[str]:
    return carget("car", "ls", str(car)).stdout.split()


def test_lassie_fetches_a_file(fetched: dict[str, object], tmp_path: Path) -> None:
    car = _fetched(fetched, "file")
    carget("car", "verify", "--dag", str(car))
    assert _roots(car) == [fetched["file_cid"]]
    carget("car", "extract", "-f", str(car), "-o", str(tmp_path))
    d = fetched["dir"]
    assert isinstance(d, Path)
    assert (tmp_path / str(fetched["file_cid"])).read_bytes() == (d / "file.bin").read_bytes()


def test_lassie_fetches_a_whole_tree(fetched: dict[str, object], tmp_path: Path) -> None:
    car = _fetched(fetched, "tree")
    tree = fetched["tree"]
    assert isinstance(tree, Path)
    carget("car", "verify", "--dag", str(car))
    assert _roots(car) == [fetched["tree_cid"]]
    carget("car", "extract", "-f", str(car), "-o", str(tmp_path))
    for rel in ("a.txt", "sub/b.bin", "empty"):
        assert (tmp_path / rel).read_bytes() == (tree / rel).read_bytes()


def test_lassie_fetches_a_path(fetched: dict[str, object], tmp_path: Path) -> None:
    """`/ipfs/CID/sub/b.bin`: the CAR holds the blocks along the path and the whole file."""
    car = _fetched(fetched, "path")
    tree = fetched["tree"]
    assert isinstance(tree, Path)
    carget("car", "verify", str(car))
    assert _roots(car) == [fetched["tree_cid"]]
    carget("car", "extract", "-f", str(car), "-o", str(tmp_path), "sub/b.bin")
    got = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(got) == 1 and got[0].read_bytes() == (tree / "sub" / "b.bin").read_bytes()


def test_lassie_fetches_an_entity_byte_range(fetched: dict[str, object]) -> None:
    """`--dag-scope entity --entity-bytes 0:1000` of a 1.5 MB file: the root and its first
    leaf only."""
    car = _fetched(fetched, "range-entity")
    carget("car", "verify", str(car))
    assert _roots(car) == [fetched["file_cid"]]
    assert _blocks(car) == _blocks(_fetched(fetched, "file"))[:2]


def test_lassie_fetches_an_entity_byte_range_with_default_scope(
        fetched: dict[str, object]) -> None:
    """lassie's default `--dag-scope all` with `--entity-bytes 0:1000`: kubo's gateway gives
    the whole file, carget serve too (it used to send only the range, and lassie failed:
    'missing block in CAR' naming the second leaf)."""
    car = _fetched(fetched, "range")
    carget("car", "verify", "--dag", str(car))
    assert _blocks(car) == _blocks(_fetched(fetched, "file"))
