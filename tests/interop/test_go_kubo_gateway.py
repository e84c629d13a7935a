"""`carget get` and `carget cat` from kubo v0.43.1's own gateway (`ipfs daemon --offline` on
127.0.0.1, inside `unshare -n`, repository made with kubo's `test` profile), with the content
added to that kubo: a file, a directory tree and a path into it; the `--car` that `get`
writes is checked by go-car.

Only `--gateway` (the loopback kubo) is given, so carget asks no other gateway.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from gopeers import carget_cmd, isolated, require, run


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    ipfs = require("kubo")
    d = tmp_path_factory.mktemp("kubo-gateway")
    rng = random.Random(4302)
    (d / "file.bin").write_bytes(rng.randbytes(3 * 1024 * 1024 + 77))
    tree = d / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"hello\n")
    (tree / "empty").write_bytes(b"")
    (tree / "sub" / "b.bin").write_bytes(rng.randbytes(600_000))
    out = d / "out"
    cg = " ".join(f"'{a}'" for a in carget_cmd())
    script = f"""
"$IPFS" init --profile=test > /dev/null
FILE=$("$IPFS" add -Q '{d / "file.bin"}')
TREE=$("$IPFS" add -Q -r --cid-version=1 '{tree}')
echo "$FILE" > '{d}/file.cid'; echo "$TREE" > '{d}/tree.cid'
"$IPFS" daemon --offline > '{d}/daemon.out' 2>&1 &
KP=$!
trap 'kill $KP 2>/dev/null || true; wait $KP 2>/dev/null || true' EXIT
for i in $(seq 300); do grep -q 'Daemon is ready' '{d}/daemon.out' && break; sleep 0.2; done
PORT=$(awk -F/ '/^Gateway server listening on/ {{print $5}}' '{d}/daemon.out')
test -n "$PORT" || {{ cat '{d}/daemon.out'; exit 1; }}
GW=http://127.0.0.1:$PORT
mkdir -p '{out}'
{cg} get -g "$GW" --timeout 300 "ipfs://$FILE" -o '{out}/file.bin' --car '{out}/file.car'
{cg} get -g "$GW" --timeout 300 "ipfs://$TREE" -o '{out}/tree' --car '{out}/tree.car'
{cg} get -g "$GW" --timeout 300 "ipfs://$TREE/sub/b.bin" -o '{out}/b.bin'
{cg} cat -g "$GW" "ipfs://$TREE/a.txt" > '{out}/a.txt'
"""
    isolated(script, env={"IPFS": str(ipfs), "IPFS_PATH": str(d / "repo")}, timeout=900)
    return {"dir": d, "tree": tree, "out": out,
            "file_cid": (d / "file.cid").read_text().strip(),
            "tree_cid": (d / "tree.cid").read_text().strip()}


def test_get_file_from_kubo(fetched: dict[str, object]) -> None:
    d, out = fetched["dir"], fetched["out"]
    assert isinstance(d, Path) and isinstance(out, Path)
    assert (out / "file.bin").read_bytes() == (d / "file.bin").read_bytes()


def test_get_tree_from_kubo(fetched: dict[str, object]) -> None:
    tree, out = fetched["tree"], fetched["out"]
    assert isinstance(tree, Path) and isinstance(out, Path)
    for rel in ("a.txt", "empty", "sub/b.bin"):
        assert (out / "tree" / rel).read_bytes() == (tree / rel).read_bytes()
    assert sorted(p.name for p in (out / "tree").rglob("*")) == ["a.txt", "b.bin", "empty", "sub"]


def test_get_and_cat_paths_from_kubo(fetched: dict[str, object]) -> None:
    tree, out = fetched["tree"], fetched["out"]
    assert isinstance(tree, Path) and isinstance(out, Path)
    assert (out / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    assert (out / "a.txt").read_bytes() == b"hello\n"


@pytest.mark.parametrize("name", ["file", "tree"])
def test_get_car_from_kubo_passes_gocar(name: str, fetched: dict[str, object]) -> None:
    out = fetched["out"]
    assert isinstance(out, Path)
    gocar = require("gocar")
    car = out / f"{name}.car"
    run(gocar, "verify", str(car))
    assert run(gocar, "roots", str(car)).stdout.split() == [fetched[f"{name}_cid"]]
