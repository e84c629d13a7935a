"""The one DAG walker (carget.unixfs.walk), held to kubo 0.43.1's gateway.

The expected block lists below are what kubo v0.43.1 answered (``ipfs dag import`` of the
same hand-built blocks, ``ipfs daemon --offline``, ``?format=car&dag-scope=...``) for the
DAGs built here; tests/interop/test_go_kubo_walk.py asks kubo again live in CI. The rules:
dag-cbor links in document order; ``entity-bytes`` takes the children whose span meets the
inclusive range, so an empty leaf rides along only strictly inside it."""

from __future__ import annotations

import sys
from pathlib import Path

import dag_cbor
import pytest
from multiformats import CID as MFCID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from carget.cid import CID, DAG_CBOR
from carget.errors import DuplicateName, PathNotFound
from carget.unixfs.dagpb import PBLink, encode_node
from carget.unixfs.data import DataType, UnixFSData, encode_data
from carget.unixfs.node import block_links, decode_unixfs
from carget.unixfs.walk import file_children_in, path_step
from hostiledag import Dag


def walk_dag() -> tuple[Dag, dict[str, CID]]:
    """F = [empty, "first", "second"]; M = ["first", empty, "second"]; CBOR =
    {"a": A, "b": B, "zz": [B, A]} (the DAG the kubo answers were taken for)."""
    dag = Dag()
    e, a, b = dag.file(b""), dag.file(b"first"), dag.file(b"second")

    def file(links: list[tuple[CID, int]]) -> CID:
        sizes = tuple(n for _, n in links)
        return dag.put(encode_node([PBLink(c, "", n) for c, n in links],
                                   encode_data(UnixFSData(DataType.FILE, filesize=sum(sizes),
                                                          blocksizes=sizes))))

    f = file([(e, 0), (a, 5), (b, 6)])
    m = file([(a, 5), (e, 0), (b, 6)])
    big_a, big_b = dag.file(b"AAA"), dag.file(b"BBB")
    link_a, link_b = MFCID.decode(str(big_a)), MFCID.decode(str(big_b))
    cb = dag_cbor.encode({"a": link_a, "b": link_b, "zz": [link_b, link_a]})
    c = CID.of(cb, DAG_CBOR)
    dag.blocks[c] = cb
    return dag, {"empty": e, "first": a, "second": b, "F": f, "M": m, "A": big_a,
                 "B": big_b, "CBOR": c}


def names_of(cids: dict[str, CID], found: list[CID]) -> list[str]:
    back = {v: k for k, v in cids.items()}
    return [back[c] for c in found]


def test_dag_cbor_links_in_document_order_as_kubo() -> None:
    dag, cids = walk_dag()
    c = cids["CBOR"]
    assert names_of(cids, block_links(c, dag.blocks[c])) == ["A", "B", "B", "A"]


# (file, query, the walker's span for it, the children kubo 0.43.1 sent after the root):
# dag-scope=all carries every child; an entity is its whole byte range, 0:size-1
KUBO_RANGES = [
    ("F", "dag-scope=all", None, ["empty", "first", "second"]),
    ("F", "dag-scope=entity", (0, 10), ["first", "second"]),
    ("M", "dag-scope=entity", (0, 10), ["first", "empty", "second"]),
    ("F", "dag-scope=entity&entity-bytes=0:0", (0, 0), ["first"]),
    ("F", "dag-scope=entity&entity-bytes=0:3", (0, 3), ["first"]),
    ("F", "dag-scope=entity&entity-bytes=5:7", (5, 7), ["second"]),
    ("M", "dag-scope=entity&entity-bytes=0:4", (0, 4), ["first"]),
    ("M", "dag-scope=entity&entity-bytes=4:5", (4, 5), ["first", "empty", "second"]),
    ("M", "dag-scope=entity&entity-bytes=5:7", (5, 7), ["second"]),
]


@pytest.mark.parametrize(("name", "query", "span", "want"), KUBO_RANGES)
def test_byte_range_children_as_kubo(name: str, query: str, span: tuple[int, int] | None,
                                     want: list[str]) -> None:
    dag, cids = walk_dag()
    node = decode_unixfs(cids[name], dag.blocks[cids[name]])
    got = [link.cid for link, _, _ in file_children_in(node, 0, span)]
    assert names_of(cids, got) == want


def test_path_step_refuses_a_name_listed_twice_and_proves_absence() -> None:
    dag = Dag()
    x, y = dag.file(b"x"), dag.file(b"y")
    d = dag.directory([("a", x), ("a", y), ("b", y)])
    with pytest.raises(DuplicateName):
        path_step(d, dag.blocks[d], ["a"], 0)
    assert path_step(d, dag.blocks[d], ["b"], 0).cid == y
    with pytest.raises(PathNotFound):
        path_step(d, dag.blocks[d], ["c"], 0)
    with pytest.raises(PathNotFound):
        path_step(x, dag.blocks[x], ["c"], 0)


def test_path_step_inside_dag_cbor_stops_at_the_first_link() -> None:
    dag, cids = walk_dag()
    c = cids["CBOR"]
    step = path_step(c, dag.blocks[c], ["zz", "1", "more"], 0)
    assert step.cid == cids["A"] and step.seg == 2
    assert path_step(c, dag.blocks[c], ["zz"], 0).cid is None  # ends inside the block


@pytest.mark.parametrize("name", ["F", "M"])
async def test_get_from_carget_serve_of_files_with_empty_leaves(tmp_path: Path,
                                                                name: str) -> None:
    """The server and the verifier walk with the same rule: an empty first leaf made
    `get` from `carget serve` fail with "answer ends with 3 wanted block(s) missing"."""
    import trio

    from carget.fetcher import FetchOptions
    from carget.fetcher.get import run_get
    from carget.server.testing import running_gateway

    dag, cids = walk_dag()
    car = dag.write_car(cids[name], tmp_path / "x.car")
    with running_gateway([car]) as url:
        with trio.fail_after(30):
            await run_get(str(cids[name]), str(tmp_path / "out.bin"),
                          FetchOptions([url], idle_timeout=5))
    assert (tmp_path / "out.bin").read_bytes() == b"firstsecond"
