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
{cg} get -g "$GW" --timeout 300 "ipfs://$TREE/sub/missing/x" -o '{out}/missing' \
    2> '{d}/missing.err' || echo $? > '{d}/missing.rc'
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


def test_missing_path_from_kubo_names_the_segment(fetched: dict[str, object]) -> None:
    """kubo answers a missing path with a bare 404; its path blocks name what is missing."""
    d, out = fetched["dir"], fetched["out"]
    assert isinstance(d, Path) and isinstance(out, Path)
    assert (d / "missing.rc").read_text().strip() == "3"
    said = (d / "missing.err").read_text().splitlines()
    assert said == [f"carget: /ipfs/{fetched['tree_cid']}/sub: no entry 'missing' in "
                    f"directory {said[0].rsplit(' ', 1)[-1]}"], said
    assert not (out / "missing").exists()


@pytest.mark.parametrize("name", ["file", "tree"])
def test_get_car_from_kubo_passes_gocar(name: str, fetched: dict[str, object]) -> None:
    out = fetched["out"]
    assert isinstance(out, Path)
    gocar = require("gocar")
    car = out / f"{name}.car"
    run(gocar, "verify", str(car))
    assert run(gocar, "roots", str(car)).stdout.split() == [fetched[f"{name}_cid"]]


#: trustless CAR queries asked of kubo's gateway and of `carget serve` for the same file
QUERIES = [
    "dag-scope=entity&entity-bytes=0:1000",
    "dag-scope=entity&entity-bytes=300000:700000",
    "dag-scope=entity&entity-bytes=-1000:*",
    "dag-scope=block",
    "dag-scope=entity",
    "dag-scope=all",
    "entity-bytes=0:1000",
    "entity-bytes=300000:700000",
    "dag-scope=all&entity-bytes=0:1000",
]

#: kubo 0.43.1 (boxo's gateway) applies entity-bytes only with dag-scope=entity: without it
#: (dag-scope=all, the default) the whole DAG comes back, and lassie relies on that
#: (test_go_lassie.py). carget serve answers as kubo does; the last three queries check it.


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], list[str]]]:
    """{query: (kubo's blocks, carget serve's blocks)} for one 1.5 MB CIDv0 file, asked with
    ``Accept: application/vnd.ipld.car;order=dfs;dups=y``."""
    ipfs = require("kubo")
    d = tmp_path_factory.mktemp("kubo-vs-serve")
    (d / "file.bin").write_bytes(random.Random(4303).randbytes(1_500_000))
    cg = " ".join(f"'{a}'" for a in carget_cmd())
    lines = [f"""
"$IPFS" init --profile=test > /dev/null
CID=$("$IPFS" add -Q '{d / "file.bin"}')
"$IPFS" daemon --offline > '{d}/daemon.out' 2>&1 &
KP=$!
{cg} serve --listen 127.0.0.1:0 '{d / "file.bin"}' > '{d}/serve.out' 2>&1 &
CP=$!
trap 'kill $KP $CP 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for i in $(seq 300); do
  grep -q 'Daemon is ready' '{d}/daemon.out' && grep -q 'serving on' '{d}/serve.out' && break
  sleep 0.2; done
KU=http://127.0.0.1:$(awk -F/ '/^Gateway server listening on/ {{print $5}}' '{d}/daemon.out')
CU=$(awk '/serving on/ {{print $3}}' '{d}/serve.out')
A='Accept: application/vnd.ipld.car;order=dfs;dups=y'
"""]
    for i, q in enumerate(QUERIES):
        lines.append(f"curl -sf -o '{d}/k{i}.car' -H \"$A\" \"$KU/ipfs/$CID?{q}\"")
        lines.append(f"curl -sf -o '{d}/c{i}.car' -H \"$A\" \"$CU/ipfs/$CID?{q}\"")
    isolated("\n".join(lines), env={"IPFS": str(ipfs), "IPFS_PATH": str(d / "repo")},
             timeout=900)
    gocar = require("gocar")

    def blocks(car: Path) -> list[str]:
        return run(gocar, "ls", str(car)).stdout.split()

    return {q: (blocks(d / f"k{i}.car"), blocks(d / f"c{i}.car"))
            for i, q in enumerate(QUERIES)}


@pytest.mark.parametrize("query", QUERIES)
def test_serve_answers_as_kubo_gateway(query: str,
                                       answers: dict[str, tuple[list[str], list[str]]]) -> None:
    """The same blocks in the same order as kubo's gateway (dfs, dups=y)."""
    kubo, ours = answers[query]
    assert kubo, query
    assert ours == kubo
