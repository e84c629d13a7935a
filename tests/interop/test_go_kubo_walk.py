"""The DAG walker's rules asked of kubo v0.43.1's gateway live: the hand-built DAG of
tests/unixfs/test_walk.py (files with empty leaves, a dag-cbor block with links in a map
and a list) is imported into kubo (``ipfs dag import``, inside ``unshare -n``), and every
query there is asked of kubo's gateway and of ``carget serve``: both must send the same
blocks in the same order, which must also be what test_walk.py's table says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from gopeers import carget_cmd, isolated, require

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unixfs"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_walk import KUBO_RANGES, walk_dag

from carget.car.decoder import decode_car
from carget.car.encoder import encode_header, section_prefix

ACCEPT = "Accept: application/vnd.ipld.car; version=1; order=dfs; dups=y"


def _queries() -> list[tuple[str, str, list[str]]]:
    out = []
    for name, query, _, want in KUBO_RANGES:
        out.append((name, query, [name, *want]))
    out.append(("CBOR", "dag-scope=all", ["CBOR", "A", "B", "B", "A"]))
    return out


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    ipfs = require("kubo")
    d = tmp_path_factory.mktemp("kubo-walk")
    dag, cids = walk_dag()
    roots = [cids["F"], cids["M"], cids["CBOR"]]
    parts = [encode_header(roots)]
    for cid, data in dag.blocks.items():
        parts += [section_prefix(cid, len(data)), data]
    car = d / "walk.car"
    car.write_bytes(b"".join(parts))
    fetches = []
    for i, (name, query, _) in enumerate(_queries()):
        url = f"/ipfs/{cids[name]}?format=car&{query}"
        fetches.append(f"curl -sf -H '{ACCEPT}' \"$KUBO{url}\" -o '{d}/kubo{i}.car'")
        fetches.append(f"curl -sf -H '{ACCEPT}' \"$CG{url}\" -o '{d}/carget{i}.car'")
    cg = " ".join(f"'{a}'" for a in carget_cmd())
    script = f"""
"$IPFS" init --profile=test > /dev/null
"$IPFS" dag import --pin-roots=false '{car}' > /dev/null
"$IPFS" daemon --offline > '{d}/daemon.out' 2>&1 &
KP=$!
{cg} serve --listen 127.0.0.1:0 '{car}' > '{d}/serve.out' 2>&1 &
SP=$!
trap 'kill $KP $SP 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for i in $(seq 300); do grep -q 'Daemon is ready' '{d}/daemon.out' && \
  grep -q 'serving on' '{d}/serve.out' && break; sleep 0.2; done
KUBO=http://127.0.0.1:$(awk -F/ '/^Gateway server listening on/ {{print $5}}' '{d}/daemon.out')
CG=$(awk '/^serving on/ {{print $3}}' '{d}/serve.out')
{chr(10).join(fetches)}
"""
    isolated(script, env={"IPFS": str(ipfs), "IPFS_PATH": str(d / "repo")}, timeout=300)
    back = {v: k for k, v in cids.items()}

    def blocks(path: Path) -> list[str]:
        return [back.get(b.cid, str(b.cid)) for b in decode_car(path.read_bytes())[1]]

    return {"kubo": [blocks(d / f"kubo{i}.car") for i in range(len(_queries()))],
            "carget": [blocks(d / f"carget{i}.car") for i in range(len(_queries()))]}


@pytest.mark.parametrize("i", range(len(_queries())),
                         ids=[f"{n}?{q}" for n, q, _ in _queries()])
def test_kubo_and_carget_serve_send_the_walkers_blocks(answers: dict[str, object],
                                                       i: int) -> None:
    want = _queries()[i][2]
    kubo, carget = answers["kubo"], answers["carget"]
    assert isinstance(kubo, list) and isinstance(carget, list)
    assert kubo[i] == want
    assert carget[i] == want
