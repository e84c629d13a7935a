"""The file resume journal is a log: each flush appends only what is new (so its cost does
not grow with the square of the file), a line cut short by a SIGKILL is ignored, and a
journal of another file, version or form is never believed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio
from dagstore import DagStore, car_bytes
from faultgw import Fault, fault_gateway
from fetchhelp import content
from test_fetch_resume import entity_starts, start_slow_get, wait_for
from test_fetch_tree_failover import BIG, big_tree, sent_for
from test_fetch_tree_failover import LEAF as TREE_LEAF

from carget.cid import CID, RAW
from carget.fetcher import FetchOptions
from carget.fetcher.get import run_get
from carget.fetcher.outputs.file import FileOutput
from carget.fetcher.outputs.journal import (
    FILE_JOURNAL_VERSION,
    JOURNAL_SUFFIX,
    PARTIAL_SUFFIX,
    TreeJournal,
    encode_frame,
    encode_node,
    read_tree_journal,
)
from carget.fetcher.verifier import DagVerifier
from carget.unixfs.node import decode_unixfs

LEAF = 1024
LEAVES = 600


def _dag(store: DagStore, seed: int) -> tuple[CID, bytes, bytes]:
    """A CIDv0 file of LEAVES dag-pb leaves (so frames too), and its CAR (DFS order)."""
    data = content(LEAF * LEAVES, seed=seed)
    cid = store.add_bytes(data, chunker=f"size-{LEAF}")
    return cid, data, car_bytes(store.select(cid, [], "entity"))


def _inner(store: DagStore) -> list[bytes]:
    return [b for c, b in store.blocks.items()
            if c.codec != RAW and decode_unixfs(c, b).links]


def _content_bytes(store: DagStore) -> int:
    """What the journal must hold once: inner nodes and leaf frames, as it encodes them."""
    total = 0
    for c, b in store.blocks.items():
        node = decode_unixfs(c, b)
        if node.links:
            total += len(encode_node(b)) + len(str(c))
        elif node.data:
            at = b.find(node.data)
            total += sum(map(len, encode_frame((b[:at], b[at + len(node.data):])))) + len(str(c))
    return total


def _journal_lines(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_each_flush_appends_only_what_is_new(store: DagStore, tmp_path: Path) -> None:
    cid, data, car = _dag(store, 31)
    out = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    journal = tmp_path / ("f.bin" + JOURNAL_SUFFIX)
    verifier = DagVerifier(cid)
    before = b""
    flushes = 0
    for at in range(0, len(car), 8192):  # ~80 flushes, as a slow download makes
        out.handle(verifier.feed(car[at:at + 8192]))
        out.write_journal()
        flushes += 1
        now = journal.read_bytes()
        assert now.startswith(before), "a flush rewrote what was logged"
        before = now
    out.handle(verifier.feed_eof())
    assert out.covered()
    text = journal.read_text()
    # every inner node once, however many flushes; the log is O(leaves), not O(leaves^2)
    inner = _inner(store)
    assert len(inner) >= 4
    assert all(text.count(encode_node(b)) == 1 for b in inner)
    assert len(text) < 2 * _content_bytes(store) + 100 * flushes, (
        len(text), _content_bytes(store), flushes)
    out.abandon(keep=True)
    again = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    assert again.resume() == [(0, len(data))]
    again.commit()
    assert (tmp_path / "f.bin").read_bytes() == data


def test_a_last_line_cut_short_is_ignored(store: DagStore, tmp_path: Path) -> None:
    cid, data, car = _dag(store, 32)
    out = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    journal = tmp_path / ("f.bin" + JOURNAL_SUFFIX)
    verifier = DagVerifier(cid)
    half = len(car) // 2
    out.handle(verifier.feed(car[:half]))
    out.write_journal()
    logged = out.missing()
    out.handle(verifier.feed(car[half:]))
    out.write_journal()  # the line a SIGKILL cuts short
    whole = journal.read_bytes()
    last = whole.rstrip(b"\n").rfind(b"\n") + 1
    journal.write_bytes(whole[:last + (len(whole) - last) // 2])
    out.abandon(keep=True)
    again = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    kept = again.resume()
    assert kept and kept[0][0] == 0
    assert again.missing() == logged  # the cut line's ranges do not count, the rest do
    again.write_journal()  # a resumed run starts the log afresh: no cut line inside
    assert _journal_lines(journal)[0]["version"] == FILE_JOURNAL_VERSION
    again.abandon(keep=False)


def _header(cid: CID, size: int, **kw: object) -> dict:  # type: ignore[type-arg]
    return {"version": FILE_JOURNAL_VERSION, "kind": "file", "target": "", "cid": str(cid),
            "size": size, **kw}


@pytest.mark.parametrize("which", ["other-cid", "other-size", "version-3", "tree", "garbage",
                                   "empty", "not-an-object"])
def test_a_journal_of_another_file_or_form_is_ignored(store: DagStore, tmp_path: Path,
                                                      which: str) -> None:
    cid, data, car = _dag(store, 33)
    other = store.add_bytes(b"another file")
    out = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    verifier = DagVerifier(cid)
    out.handle(verifier.feed(car[:len(car) // 2]))
    out.write_journal()
    out.abandon(keep=True)
    journal = tmp_path / ("f.bin" + JOURNAL_SUFFIX)
    lines = journal.read_bytes().split(b"\n", 1)[1]  # what it holds, under another header
    head = {"other-cid": _header(other, len(data)), "other-size": _header(cid, len(data) + 1),
            "version-3": _header(cid, len(data), version=3),
            "tree": {"version": 1, "kind": "tree", "cid": str(cid), "target": ""}}
    if which in head:
        journal.write_bytes(json.dumps(head[which]).encode() + b"\n" + lines)
    else:
        journal.write_bytes({"garbage": b"\x00\xff{not json\n" + lines, "empty": b"",
                             "not-an-object": b"[1, 2]\n" + lines}[which])
    again = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    assert again.resume() == []
    again.write_journal()
    assert _journal_lines(journal)[0] == _header(cid, len(data))
    again.abandon(keep=False)


def test_claims_the_partial_file_does_not_bear_out_keep_nothing(store: DagStore,
                                                                tmp_path: Path) -> None:
    cid, data, _ = _dag(store, 34)
    out = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    out.abandon(keep=True)  # a partial file of zeros
    (tmp_path / ("f.bin" + JOURNAL_SUFFIX)).write_text(
        json.dumps(_header(cid, len(data))) + "\n"
        + json.dumps({"done": [[0, len(data)]], "nodes": {}, "frames": {}}) + "\n")
    again = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    assert again.resume() == []
    again.abandon(keep=False)


def test_a_journal_of_the_old_single_document_form_is_read(store: DagStore,
                                                           tmp_path: Path) -> None:
    # carget before the log wrote one JSON document (version 1): its work is kept, and the
    # next flush writes it again as a log
    cid, data, car = _dag(store, 35)
    out = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    verifier = DagVerifier(cid)
    out.handle(verifier.feed(car[:len(car) // 2]))
    out.write_journal()
    logged = out.missing()
    out.abandon(keep=True)
    journal = tmp_path / ("f.bin" + JOURNAL_SUFFIX)
    doc = {"version": 1, "target": "", "cid": str(cid), "size": len(data),
           "done": [], "nodes": {}, "frames": {}}
    for line in _journal_lines(journal)[1:]:
        doc["done"] += line["done"]  # type: ignore[operator]
        doc["nodes"].update(line["nodes"])  # type: ignore[attr-defined]
        doc["frames"].update(line["frames"])  # type: ignore[attr-defined]
    journal.write_text(json.dumps(doc))
    again = FileOutput(str(tmp_path / "f.bin"), cid, len(data))
    assert again.resume() and again.missing() == logged
    again.write_journal()
    assert _journal_lines(journal)[0] == _header(cid, len(data))
    again.abandon(keep=False)


def test_a_tree_journal_cut_short_takes_whole_lines_after(store: DagStore,
                                                          tmp_path: Path) -> None:
    root = store.add_bytes(b"x")
    path = str(tmp_path / "t") + JOURNAL_SUFFIX
    first = TreeJournal(path, root, "")
    first.directory("a", root, b"node a")
    first.close()
    with open(path, "ab") as f:
        f.write(b'{"dir":"b","cid":"ba')  # a SIGKILL mid-append
    second = TreeJournal(path, root, "")
    second.directory("c", root, b"node c")
    second.close()
    assert TreeJournal.matches(path, root)
    assert sorted(read_tree_journal(path).dirs) == ["a", "c"]


async def test_sigkill_then_a_cut_last_line_still_resumes(store: DagStore,
                                                          tmp_path: Path) -> None:
    size = 6_000_000
    data = content(size, seed=36)
    cid = str(store.add_bytes(data, cid_version=1, chunker="size-16384"))
    journal = tmp_path / ("out.bin" + JOURNAL_SUFFIX)
    drip = Fault("drip", drip_size=16384, drip_delay=0.02, only_scope="entity")
    async with fault_gateway(store, drip) as slow:
        proc = await start_slow_get(slow.url, cid, tmp_path)
        try:
            await wait_for(journal)
            with trio.fail_after(20):  # the header, the first flush and two appended
                while journal.read_bytes().count(b"\n") < 4:
                    await trio.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            with trio.fail_after(20):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
    whole = journal.read_bytes()
    last = whole.rstrip(b"\n").rfind(b"\n") + 1
    journal.write_bytes(whole[:last + (len(whole) - last) // 2])  # cut mid-append
    assert (tmp_path / ("out.bin" + PARTIAL_SUFFIX)).exists()
    async with fault_gateway(store) as honest:
        with trio.fail_after(30):
            await run_get(cid, "out.bin", FetchOptions([honest.url], idle_timeout=2))
    assert (tmp_path / "out.bin").read_bytes() == data
    starts = entity_starts(honest.log)
    assert starts and min(starts) > 0, starts  # what the whole lines vouched for was kept
    assert not journal.exists()


async def test_a_tree_file_s_part_lines_carry_each_block_once(
        store: DagStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a part line after every piece received (as a slow gateway gives one a second):
    # each carries the ranges so far but only the leaf frames not logged before
    from carget.fetcher.outputs import tree as tree_output

    monkeypatch.setattr(tree_output, "JOURNAL_SECONDS", 0.0)
    root, big, data = big_tree(store, tmp_path / "src", 0)  # CIDv0: every leaf framed
    async with fault_gateway(store, Fault("stall", at=66, only_scope="all")) as gw:
        with trio.move_on_after(1.0):
            await run_get(str(root), "tree", FetchOptions([gw.url], idle_timeout=30))
    parts = [d for d in _journal_lines(tmp_path / ("tree" + JOURNAL_SUFFIX)) if "part" in d]
    assert len(parts) >= 2
    keys = [k for d in parts for k in d["frames"]]
    assert len(keys) == len(set(keys)) == 64  # each frame once
    assert parts[-1]["done"] == [[0, 64 * TREE_LEAF]]
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            await run_get(str(root), "tree", FetchOptions([gw.url]))
    assert (tmp_path / "tree" / "a-big.bin").read_bytes() == data
    assert [eb for _, eb, _ in sent_for(gw, big)] == [f"{64 * TREE_LEAF}:{BIG - 1}"]


async def test_a_tree_whose_resume_fails_leaves_nothing(
        store: DagStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an interrupted tree is taken back by the next run; taking it back fails with an
    # error that keeps nothing (here the output's): the partial tree and its journal go,
    # as they would had the failure come a moment later
    from carget.errors import OutputError
    from carget.fetcher.outputs.tree import TreeOutput

    root, _, _ = big_tree(store, tmp_path / "src", 0)
    async with fault_gateway(store, Fault("stall", at=66, only_scope="all")) as gw:
        with trio.move_on_after(1.0):
            await run_get(str(root), "tree", FetchOptions([gw.url], idle_timeout=30))
    journal = tmp_path / ("tree" + JOURNAL_SUFFIX)
    partial = tmp_path / ("tree" + PARTIAL_SUFFIX)
    assert journal.exists() and partial.is_dir()
    real = TreeOutput.resume

    def resume(self: TreeOutput) -> int:
        real(self)
        raise OutputError("cannot write the CAR: no space left on device")

    monkeypatch.setattr(TreeOutput, "resume", resume)
    with trio.fail_after(30):
        async with fault_gateway(store) as gw:
            with pytest.raises(OutputError):
                await run_get(str(root), "tree", FetchOptions([gw.url]))
    assert not journal.exists() and not partial.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("tree")]
