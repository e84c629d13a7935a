"""A directory tree whose answer breaks: the next request asks only for what is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway
from fetchhelp import content

from carget.cid import CID, Block
from carget.fetcher import FetchOptions
from carget.fetcher.get import run_get
from carget.tree import add_paths
from carget.unixfs.options import resolve_options


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.bin": content(120_000, seed=1),
        "m/b.bin": content(90_000, seed=2),
        "m/c.txt": b"small\n",
        "m/n/d.bin": content(70_000, seed=3),
        "z.bin": content(110_000, seed=4),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "m" / "link").symlink_to("c.txt")
    return files


def store_tree(store: DagStore, src: Path) -> CID:
    def emit(b: Block) -> None:
        store.blocks[b.cid] = bytes(b.data)

    opts = resolve_options(cid_version=1, chunker="size-16384")
    return add_paths([str(src)], opts, jobs=1, emit=emit)[0]


async def test_a_cut_tree_answer_is_continued_with_only_the_missing_subtrees(
        store: DagStore, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    root = store_tree(store, tmp_path / "src")
    # the first whole-tree answer breaks inside m/b.bin (block 14 in DFS order: after
    # a.bin's 8 leaves); later answers are honest
    cut = Fault("cut_mid", at=14, times=1, only_scope="all")
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store, cut) as gw:
            res = await run_get(str(root), "tree", FetchOptions([gw.url], idle_timeout=2,
                                                                 progress=events.append))
    for rel, data in files.items():
        assert (tmp_path / "tree" / rel).read_bytes() == data
    assert (tmp_path / "tree" / "m" / "link").readlink() == Path("c.txt")
    assert res.size == sum(len(d) for d in files.values())
    scoped = [(r.path, r.query.get("dag-scope")) for r in gw.log if r.query.get("dag-scope")]
    alls = [p for p, scope in scoped if scope == "all"]
    assert alls[0] == f"/ipfs/{root}"  # the whole tree first
    assert f"/ipfs/{root}" not in alls[1:]  # never the whole tree again
    # a.bin was complete before the cut: it is not asked for again (neither are the
    # directories, whose entries were verified); what was missing is
    a_cid = store_tree(DagStore(), tmp_path / "src" / "a.bin")
    assert f"/ipfs/{a_cid}" not in alls
    z_cid = store_tree(DagStore(), tmp_path / "src" / "z.bin")
    assert f"/ipfs/{z_cid}" in alls[1:]
    sent_again = sum(r.sent for r in gw.log[1:] if r.query.get("dag-scope") == "all"
                     and r.path != f"/ipfs/{root}")
    assert sent_again < sum(len(d) for d in files.values())  # less than a full refetch


async def _interrupted_first_run(store: DagStore, root: CID, tmp_path: Path) -> None:
    # the gateway stalls inside m/b.bin (block 12 in DFS order), after the root directory
    # and a.bin are in; the run is then interrupted (as by Ctrl-C) long before it would
    # time out
    stall = Fault("stall", at=12, only_scope="all")
    async with fault_gateway(store, stall) as gw:
        with trio.move_on_after(1.0):
            await run_get(str(root), "tree", FetchOptions([gw.url], idle_timeout=30))
    assert (tmp_path / "tree.carget-partial").is_dir()
    assert (tmp_path / "tree.carget-journal").is_file()
    assert not (tmp_path / "tree").exists()


async def test_an_interrupted_tree_is_resumed_with_only_what_is_missing(
        store: DagStore, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    root = store_tree(store, tmp_path / "src")
    await _interrupted_first_run(store, root, tmp_path)
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            await run_get(str(root), "tree", FetchOptions([gw.url], progress=events.append,
                                                          car_out="tree.car"))
    for rel, data in files.items():
        assert (tmp_path / "tree" / rel).read_bytes() == data
    # --car holds the whole tree, the part kept from the first run included
    from carget.car.decoder import decode_car

    _, blocks = decode_car((tmp_path / "tree.car").read_bytes(), verify=True)
    assert {b.cid for b in blocks} == set(store.blocks)
    assert not (tmp_path / "tree.carget-partial").exists()
    assert not (tmp_path / "tree.carget-journal").exists()
    kept = [e["bytes"] for e in events if e["event"] == "resume"]
    assert kept and kept[0] >= len(files["a.bin"])
    alls = [r.path for r in gw.log if r.query.get("dag-scope") == "all"]
    a_cid = store_tree(DagStore(), tmp_path / "src" / "a.bin")
    assert f"/ipfs/{root}" not in alls and f"/ipfs/{a_cid}" not in alls, alls


async def test_a_tampered_partial_tree_is_checked_again_and_fixed(
        store: DagStore, tmp_path: Path) -> None:
    import json

    files = make_tree(tmp_path / "src")
    root = store_tree(store, tmp_path / "src")
    await _interrupted_first_run(store, root, tmp_path)
    kept_a = tmp_path / "tree.carget-partial" / "out" / "a.bin"
    blob = bytearray(kept_a.read_bytes())
    blob[5000] ^= 0xFF  # bit rot, or a hand that should not have been there
    kept_a.write_bytes(bytes(blob))
    (tmp_path / "tree.carget-partial" / "out" / "junk.txt").write_bytes(b"not in the DAG")
    with open(tmp_path / "tree.carget-journal", "a", encoding="utf-8") as j:
        j.write(json.dumps({"file": "../../outside.txt", "cid": str(root), "size": 3,
                            "nodes": {}, "frames": {}}) + "\n")
    (tmp_path / "outside.txt").write_bytes(b"mine")
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            await run_get(str(root), "tree", FetchOptions([gw.url]))
    for rel, data in files.items():
        assert (tmp_path / "tree" / rel).read_bytes() == data
    assert not (tmp_path / "tree" / "junk.txt").exists()  # only what the DAG holds
    assert (tmp_path / "outside.txt").read_bytes() == b"mine"  # never touched
    a_cid = store_tree(DagStore(), tmp_path / "src" / "a.bin")
    alls = [r.path for r in gw.log if r.query.get("dag-scope") == "all"]
    assert f"/ipfs/{a_cid}" in alls  # the damaged file was fetched again


async def test_a_file_get_replaces_a_tree_partial_at_the_same_name(
        store: DagStore, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    root = store_tree(store, tmp_path / "src")
    await _interrupted_first_run(store, root, tmp_path)
    data = content(50_000, seed=9)
    file_cid = store.add_bytes(data, cid_version=1)
    async with fault_gateway(store) as gw:
        await run_get(str(file_cid), "tree", FetchOptions([gw.url]))
    assert (tmp_path / "tree").read_bytes() == data
    assert not (tmp_path / "tree.carget-partial").exists()
    assert not (tmp_path / "tree.carget-journal").exists()


# --- a half-fetched file inside a tree resumes leaf by leaf -----------------------------

BIG = 2 << 20  # 128 leaves of 16 KiB
LEAF = 16384


def big_tree(store: DagStore, src: Path, cid_version: int) -> tuple[CID, CID, bytes]:
    """A tree whose first entry (in DFS order) is a 2 MiB file: (root, its CID, its bytes)."""
    data = content(BIG, seed=21)
    src.mkdir()
    (src / "a-big.bin").write_bytes(data)
    (src / "z.txt").write_bytes(b"last\n")

    def emit(b: Block) -> None:
        store.blocks[b.cid] = bytes(b.data)

    opts = resolve_options(cid_version=cid_version, chunker=f"size-{LEAF}")
    root = add_paths([str(src)], opts, jobs=1, emit=emit)[0]
    big = add_paths([str(src / "a-big.bin")], opts, jobs=1)[0]
    return root, big, data


def sent_for(gw: Any, cid: CID) -> list[tuple[str | None, str | None, int]]:
    """(dag-scope, entity-bytes, body bytes) of each CAR request for ``cid``."""
    return [(r.query.get("dag-scope"), r.query.get("entity-bytes"), r.sent) for r in gw.log
            if r.path == f"/ipfs/{cid}"]


@pytest.mark.parametrize("cid_version", [0, 1])  # dag-pb leaves (framed) and raw leaves
async def test_a_half_fetched_file_in_a_tree_is_resumed_from_its_verified_leaves(
        store: DagStore, tmp_path: Path, cid_version: int) -> None:
    root, big, data = big_tree(store, tmp_path / "src", cid_version)
    # the first run stalls after the root directory, the file's root and 64 of its
    # leaves (1 MiB), and is interrupted (as by Ctrl-C)
    async with fault_gateway(store, Fault("stall", at=66, only_scope="all")) as gw:
        with trio.move_on_after(1.0):
            await run_get(str(root), "tree", FetchOptions([gw.url], idle_timeout=30))
    journal = [json.loads(line) for line in
               (tmp_path / "tree.carget-journal").read_text().splitlines()]
    parts = [d for d in journal if "part" in d]
    assert parts and parts[-1]["part"] == "a-big.bin" and parts[-1]["done"] == [[0, 64 * LEAF]]
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            await run_get(str(root), "tree", FetchOptions([gw.url], progress=events.append))
    assert (tmp_path / "tree" / "a-big.bin").read_bytes() == data
    assert (tmp_path / "tree" / "z.txt").read_bytes() == b"last\n"
    assert [e["bytes"] for e in events if e["event"] == "resume"] == [64 * LEAF]
    # only the file's missing half is asked for, and sent
    asked = sent_for(gw, big)
    assert [(scope, eb) for scope, eb, _ in asked] == [("entity", f"{64 * LEAF}:{BIG - 1}")]
    assert asked[0][2] < BIG - 64 * LEAF + 64 * LEAF // 8
    assert not (tmp_path / "tree.carget-journal").exists()


async def test_a_tampered_half_fetched_file_keeps_only_the_leaves_that_still_verify(
        store: DagStore, tmp_path: Path) -> None:
    root, big, data = big_tree(store, tmp_path / "src", 1)
    async with fault_gateway(store, Fault("stall", at=66, only_scope="all")) as gw:
        with trio.move_on_after(1.0):
            await run_get(str(root), "tree", FetchOptions([gw.url], idle_timeout=30))
    kept = tmp_path / "tree.carget-partial" / "out" / "a-big.bin"
    with open(kept, "r+b") as f:  # rot inside leaf 40
        f.seek(40 * LEAF + 7)
        f.write(b"\xff")
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            await run_get(str(root), "tree", FetchOptions([gw.url], progress=events.append))
    assert (tmp_path / "tree" / "a-big.bin").read_bytes() == data
    assert [e["bytes"] for e in events if e["event"] == "resume"] == [63 * LEAF]
    asked = sorted((eb for scope, eb, _ in sent_for(gw, big) if scope == "entity"),
                   key=lambda eb: int(str(eb).split(":")[0]))
    assert asked == [f"{40 * LEAF}:{41 * LEAF - 1}", f"{64 * LEAF}:{BIG - 1}"]


async def test_a_tree_answer_cut_inside_a_file_continues_from_its_last_verified_leaf(
        store: DagStore, tmp_path: Path) -> None:
    root, big, data = big_tree(store, tmp_path / "src", 1)
    cut = Fault("cut_mid", at=66, times=1, only_scope="all")
    async with fault_gateway(store, cut) as gw:
        with trio.fail_after(30):
            await run_get(str(root), "tree", FetchOptions([gw.url], idle_timeout=2))
    assert (tmp_path / "tree" / "a-big.bin").read_bytes() == data
    asked = sent_for(gw, big)
    assert len(asked) == 1 and asked[0][0] == "entity"
    start = int(str(asked[0][1]).split(":")[0])
    assert start >= 60 * LEAF  # not from zero
    assert asked[0][2] < BIG - start + 64 * LEAF // 8


async def test_a_killed_tree_run_keeps_what_its_journal_had_logged(
        store: DagStore, tmp_path: Path) -> None:
    # no clean exit: SIGKILL while the file drips in; the journal logged its leaves
    # every second (JOURNAL_SECONDS) as they came
    root, big, data = big_tree(store, tmp_path / "src", 1)
    drip = Fault("drip", only_scope="all", drip_size=4096, drip_delay=0.01)
    journal = tmp_path / "tree.carget-journal"
    async with fault_gateway(store, drip) as gw:
        with trio.fail_after(30):
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "carget", "get", "-g", gw.url, str(root), "-o", "tree"])
            try:
                while not (journal.exists() and '"part"' in journal.read_text()):
                    await trio.sleep(0.1)
            finally:
                proc.kill()
                await proc.wait()
    logged = [json.loads(line) for line in journal.read_text().splitlines()
              if line.startswith('{"part"')]
    done = logged[-1]["done"][0][1]
    assert done > 0
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            await run_get(str(root), "tree", FetchOptions([gw.url]))
    assert (tmp_path / "tree" / "a-big.bin").read_bytes() == data
    asked = sent_for(gw, big)
    assert [eb for _, eb, _ in asked] == [f"{done}:{BIG - 1}"]
