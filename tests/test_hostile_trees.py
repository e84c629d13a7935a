"""Hostile trees: DAGs whose every block hashes correctly, built to make ``carget get`` and
``carget car extract`` write outside their output (duplicate names, symlink chains,
trees deeper than a path may be). Each reproduction of the hostile-input issue runs the
real command against a loopback gateway, and checks that nothing outside the output was
touched and nothing is left behind."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from carget.cid import CID
from carget.safetree import remove_tree
from hostiledag import Dag, car_gateway, snapshot

CLI_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _clean_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest's own cleanup recurses per level: remove what a failed test left first."""
    yield
    for p in tmp_path.iterdir():
        remove_tree(str(p))
CHAIN = [f"d{i}" for i in range(1, 31)]  # d1/d2/.../d30


async def carget(*args: str, timeout: float = CLI_TIMEOUT) -> tuple[int, str]:
    with trio.fail_after(timeout):
        proc = await trio.run_process([sys.executable, "-m", "carget", *args],
                                      capture_stdout=True, capture_stderr=True, check=False)
    return proc.returncode, proc.stderr.decode(errors="replace")


async def get(car: bytes, root: CID, out: Path, *extra: str) -> tuple[int, str]:
    async with car_gateway(car) as url:
        return await carget("get", str(root), "-o", str(out), "--gateway", url,
                            "--progress=false", "--idle-timeout", "10", *extra)


async def extract(car: bytes, tmp: Path, out: Path) -> tuple[int, str]:
    path = tmp / "hostile.car"
    path.write_bytes(car)
    out.mkdir(exist_ok=True)
    return await carget("car", "extract", "-f", str(path), "-o", str(out))


def up(n: int) -> str:
    return "/".join([".."] * n)


def climbing_chain(dag: Dag) -> tuple[CID, str]:
    """``d1/.../d30/l -> ../..`` (back to the root, lexically harmless), and the text
    that climbs one level above the root through it."""
    chain = dag.chain(CHAIN, [("l", dag.symlink(up(30)))])
    return chain, "/".join(CHAIN) + "/l/" + up(31)


def path_spec(path: Path, leaf: bytes) -> list[tuple[str, object]]:
    """Nested directories spelling ``path`` (absolute, without its leading /)."""
    parts = path.parts[1:]
    spec: object = leaf
    for name in reversed(parts):
        spec = [(name, spec)]
    return spec  # type: ignore[return-value]


def assert_nothing_left(tmp: Path, before: dict[str, object], *keep: str) -> None:
    after = snapshot(tmp, tmp / "__none__")
    extra = {k for k in after if k not in before and not any(k == p or k.startswith(p + "/")
                                                             for p in keep)}
    assert not extra, f"left behind: {sorted(extra)[:10]}"


# --- the critical reproduction: a symlink and a directory of the same name -------------

async def run_command(command: str, car: bytes, root: CID, tmp: Path
                      ) -> tuple[int, str, Path]:
    """``get`` into tmp/out or ``car extract`` into tmp/ext: (exit code, stderr, output)."""
    if command == "get":
        code, err = await get(car, root, tmp / "out")
        return code, err, tmp / "out"
    code, err = await extract(car, tmp, tmp / "ext")
    return code, err, tmp / "ext"


def assert_refused_cleanly(tmp: Path, before: dict[str, object], out: Path) -> None:
    """Nothing at the output (get) or an empty output directory (extract), and nothing
    else new anywhere."""
    if out.name == "out":
        assert not os.path.lexists(out)
        assert_nothing_left(tmp, before)
    else:
        assert list(out.iterdir()) == []
        assert_nothing_left(tmp, before, "hostile.car", "ext")


@pytest.mark.parametrize("command", ["get", "extract"])
async def test_a_duplicate_name_cannot_write_through_a_symlink_chain(
        tmp_path: Path, command: str) -> None:
    dag = Dag()
    chain, climb = climbing_chain(dag)
    victim = tmp_path / "abs"
    victim.mkdir()
    # x -> the root as text, / on disk; x again: a directory spelling victim's path
    inner = dag.tree(path_spec(victim / "pwned.txt", b"pwned"))
    root = dag.directory([("d1", chain), ("x", dag.symlink(climb)), ("x", inner)])
    before = snapshot(tmp_path, tmp_path / "__none__")
    code, err, out = await run_command(command, dag.car(root), root, tmp_path)
    assert code == 4, err
    assert "twice" in err
    assert not (victim / "pwned.txt").exists()
    assert_refused_cleanly(tmp_path, before, out)


@pytest.mark.parametrize("command", ["get", "extract"])
async def test_links_that_climb_out_through_a_chain_are_all_removed(
        tmp_path: Path, command: str) -> None:
    """``esc -> <chain>/../etc/passwd`` normalises inside the root as text, yet resolves
    to /etc/passwd on disk; a second such link must not survive the first's refusal."""
    dag = Dag()
    chain, climb = climbing_chain(dag)
    escape = climb + "/etc/passwd"
    root = dag.directory([("d1", chain), ("esc", dag.symlink(escape)),
                          ("esc2", dag.symlink(escape)), ("ok.txt", dag.file(b"fine"))])
    before = snapshot(tmp_path, tmp_path / "__none__")
    code, err, out = await run_command(command, dag.car(root), root, tmp_path)
    assert_refused_cleanly(tmp_path, before, out)
    assert code == 4, err
    assert "outside" in err


async def test_a_file_beside_the_output_is_not_overwritten(tmp_path: Path) -> None:
    """``f -> d/l/../../victim.txt`` with ``d/l -> ..``, then a file also named ``f``."""
    (tmp_path / "victim.txt").write_bytes(b"original")
    dag = Dag()
    root = dag.directory([("d", dag.directory([("l", dag.symlink(".."))])),
                          ("f", dag.symlink("d/l/../../victim.txt")),
                          ("f", dag.file(b"overwritten"))])
    code, err = await get(dag.car(root), root, tmp_path / "out")
    assert code == 4, err
    assert (tmp_path / "victim.txt").read_bytes() == b"original"
    assert not os.path.lexists(tmp_path / "out")


async def test_duplicate_names_across_hamt_shards_are_refused(tmp_path: Path) -> None:
    """A sharded directory whose two buckets both hold an entry ``a``."""
    from carget.unixfs.dagpb import PBLink, encode_node
    from carget.unixfs.data import DataType, UnixFSData, encode_data

    dag = Dag()
    f1, f2 = dag.file(b"one"), dag.file(b"two")
    data = encode_data(UnixFSData(DataType.HAMT_SHARD, data=b"\x03", hash_type=0x22,
                                  fanout=256))
    shard = dag.put(encode_node([PBLink(f1, "00a", 3), PBLink(f2, "01a", 3)], data))
    code, err = await get(dag.car(shard), shard, tmp_path / "out")
    assert code == 4, err
    assert "twice" in err
    assert not os.path.lexists(tmp_path / "out")


async def test_safe_symlinks_through_other_links_still_work(tmp_path: Path) -> None:
    dag = Dag()
    root = dag.tree({"a": {"b": "../c", "c2": "../c/file.txt"}, "c": {"file.txt": b"hi"},
                     "via": "a/b/file.txt"})
    code, err = await get(dag.car(root), root, tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "via").read_bytes() == b"hi"
    assert (tmp_path / "out" / "a" / "c2").read_bytes() == b"hi"
    code, err = await extract(dag.car(root), tmp_path, tmp_path / "ext")
    assert code == 0, err
    assert (tmp_path / "ext" / "via").read_bytes() == b"hi"


async def test_get_of_a_symlink_cid_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    dag = Dag()
    link = dag.symlink("target.txt")
    before = snapshot(tmp_path, tmp_path / "__none__")
    code, err = await get(dag.car(link), link, tmp_path / "lnk")
    assert code == 4, err
    assert "is a symlink to 'target.txt'" in err
    assert "Is a directory" not in err
    assert_nothing_left(tmp_path, before)


# --- deep trees -----------------------------------------------------------------------

async def test_a_tree_deeper_than_a_path_may_be_is_refused_and_cleaned(tmp_path: Path) -> None:
    """10,000 levels: past names.MAX_PATH_BYTES the verifier refuses it (exit 4), and the
    ~2,000 directories already made are all removed, with the journal."""
    dag = Dag()
    names = ["d"] * 10_000
    root = dag.chain(names, [("f", dag.file(b"deep"))])
    before = snapshot(tmp_path, tmp_path / "__none__")
    code, err = await get(dag.car(root), root, tmp_path / "out")
    assert code == 4, err
    assert "longer than 4095 bytes" in err
    assert "Traceback" not in err
    assert_nothing_left(tmp_path, before)


def test_a_cut_1500_deep_tree_resumes_without_recursion(tmp_path: Path) -> None:
    """The first answer stops half-way down; the tree output says what is missing, an
    interrupted run is taken back by the next one, and cleanup finishes: each walked
    the tree once per level by recursion before (RecursionError, on every resume)."""
    from carget.errors import CargetError
    from carget.fetcher.outputs.tree import TreeOutput
    from carget.fetcher.verifier import DagVerifier

    dag = Dag()
    root = dag.chain(["d"] * 1500, [("f", dag.file(b"bottom")), ("g", dag.file(b"also"))])
    full = dag.car(root)
    out = str(tmp_path / "out")
    tree = TreeOutput(out, root)
    verifier = DagVerifier(root, scope="all")
    tree.handle(verifier.feed(full[: len(full) // 2]))
    with pytest.raises(CargetError):  # ends inside a block: CARError
        verifier.feed_eof()
    missing = tree.remaining("", root)
    assert len(missing) == 1 and missing[0][0].count("/") > 500
    tree.abandon(keep=True)

    again = TreeOutput(out, root)
    again.resume()
    assert again.remaining("", root)[0][0].count("/") > 500
    verifier = DagVerifier(root, scope="all")
    again.handle(verifier.feed(full))
    again.handle(verifier.feed_eof())
    assert again.remaining("", root) == []
    again.commit()
    assert (tmp_path / "out" / "/".join(["d"] * 1499) / "f").read_bytes() == b"bottom"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- bombs and broken CARs for car extract ----------------------------------------------

def _file_root(dag: Dag, declared: int, leaf: CID) -> CID:
    from carget.unixfs.dagpb import PBLink, encode_node
    from carget.unixfs.data import DataType, UnixFSData, encode_data

    data = encode_data(UnixFSData(DataType.FILE, filesize=declared, blocksizes=(declared,)))
    return dag.put(encode_node([PBLink(leaf, "", 4)], data))


async def test_car_extract_of_a_file_declaring_a_terabyte_fails_before_writing(
        tmp_path: Path) -> None:
    dag = Dag()
    root = dag.directory([("big.img", _file_root(dag, 1 << 40, dag.file(b"tiny")))])
    with trio.fail_after(20):
        code, err = await extract(dag.car(root), tmp_path, tmp_path / "ext")
    assert code == 1, err
    assert "1099511627776 bytes" in err and "nothing was extracted" in err
    assert list((tmp_path / "ext").iterdir()) == []


async def test_car_extract_of_a_dag_declaring_2_to_the_40_entries_fails_at_once(
        tmp_path: Path) -> None:
    """A few KiB: each of 40 directories lists the next one twice."""
    dag = Dag()
    cid = dag.directory([("f", dag.file(b""))])
    for _ in range(40):
        cid = dag.directory([("a", cid), ("b", cid)])
    car = dag.car(cid)
    assert len(car) < 10_000
    with trio.fail_after(20):
        code, err = await extract(car, tmp_path, tmp_path / "ext")
    assert code == 1, err
    assert "entries" in err and "nothing was extracted" in err
    assert list((tmp_path / "ext").iterdir()) == []


async def test_car_extract_of_a_car_missing_a_block_leaves_nothing(tmp_path: Path) -> None:
    dag = Dag()
    last = dag.file(b"z" * 5000)
    root = dag.directory([("index.html", dag.file(b"<html>")),
                          ("sub", dag.directory([("a.txt", dag.file(b"a" * 3000))])),
                          ("z.bin", last)])
    car = dag.car(root, omit=frozenset([last]))  # the last leaf is not in the CAR
    code, err = await extract(car, tmp_path, tmp_path / "ext")
    assert code == 4, err
    assert list((tmp_path / "ext").iterdir()) == []


# --- fuzz: random trees with duplicate names and symlink chains -------------------------

_NAMES = st.sampled_from(["a", "b", "l", "m", "..", ".", "", "x/y", "c\\d"])
_COMPONENTS = st.sampled_from(["..", ".", "a", "b", "l", "m", "x", "", "victim"])
_TARGETS = st.one_of(
    st.lists(_COMPONENTS, min_size=1, max_size=8).map("/".join),
    st.sampled_from(["/", "/etc/passwd", "../victim", "l/../..", "a/l/../../..", ""]),
)
_SPEC = st.recursive(
    st.one_of(st.binary(max_size=20), _TARGETS),
    lambda kids: st.lists(st.tuples(_NAMES, kids), max_size=4),
    max_leaves=12,
)


def _inside(root: Path, p: Path) -> bool:
    real = os.path.realpath(p)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _check_output(base: Path, before: dict[str, object], out: Path, ok: bool) -> None:
    assert snapshot(base, out) == before, "something outside the output changed"
    if not ok:
        assert not os.path.lexists(out) or list(out.iterdir()) == []
        return
    root = Path(os.path.realpath(out))
    stack = [out]
    while stack:
        d = stack.pop()
        for p in d.iterdir():
            if p.is_symlink():
                assert _inside(root, p), f"{p} -> {os.readlink(p)} resolves outside"
            elif p.is_dir():
                stack.append(p)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=st.lists(st.tuples(_NAMES, _SPEC), max_size=5))
@example(spec=[("a", "")])  # an empty symlink target: extract made the link and crashed
def test_fuzz_nothing_is_ever_created_outside_the_output(spec: list[tuple[str, object]]
                                                         ) -> None:
    from carget.car.extract import extract_node
    from carget.errors import CargetError
    from carget.fetcher.outputs.tree import TreeOutput
    from carget.fetcher.verifier import DagVerifier
    from carget.unixfs.exporter import Exporter

    dag = Dag()
    root = dag.tree(spec)
    car = dag.car(root)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "victim").write_bytes(b"victim")
        (base / "sibling").mkdir()
        (base / "sibling" / "a").write_bytes(b"sibling")
        # car extract, into an existing directory
        ext = base / "ext"
        ext.mkdir()
        before = snapshot(base, ext)
        exporter = Exporter(dag.blocks)
        try:
            extract_node(exporter, root, exporter.node(root), str(ext), "x")
            ok = True
        except CargetError:
            ok = False
        _check_output(base, before, ext, ok)
        # get's pipeline: the verifier's events into the tree output, then commit
        remove_tree(str(ext))
        out = base / "got"
        before = snapshot(base, out)
        tree = TreeOutput(str(out), root)
        try:
            verifier = DagVerifier(root, scope="all")
            tree.handle(verifier.feed(car))
            tree.handle(verifier.feed_eof())
            tree.commit()
            ok = True
        except CargetError:
            tree.abandon(keep=False)
            ok = False
        _check_output(base, before, out, ok)
        assert sorted(p.name for p in base.iterdir()) == sorted(
            ["victim", "sibling", *(["got"] if ok else [])])


def test_a_file_dag_3000_nodes_deep_resumes_without_recursion(tmp_path: Path) -> None:
    """A file whose root is a chain of 3,000 one-child file nodes over two leaves: the
    next run re-checks the kept leaf through the journal's nodes in a loop."""
    from carget.fetcher.outputs.file import FileOutput
    from carget.fetcher.verifier import DagVerifier
    from carget.unixfs.dagpb import PBLink, encode_node
    from carget.unixfs.data import DataType, UnixFSData, encode_data

    dag = Dag()
    a, b = dag.file(b"first"), dag.file(b"second")
    node = dag.put(encode_node([PBLink(a, "", 5), PBLink(b, "", 6)],
                               encode_data(UnixFSData(DataType.FILE, filesize=11,
                                                      blocksizes=(5, 6)))))
    for _ in range(3000):
        node = dag.put(encode_node([PBLink(node, "", 100)],
                                   encode_data(UnixFSData(DataType.FILE, filesize=11,
                                                          blocksizes=(11,)))))
    out = str(tmp_path / "f.bin")
    first = FileOutput(out, node, 11)
    verifier = DagVerifier(node)
    first.handle(verifier.feed(dag.car(node, omit=frozenset([b]))))
    first.write_journal()
    first.abandon(keep=True)
    again = FileOutput(out, node, 11)
    assert again.resume() == [(0, 5)]
    again.abandon(keep=False)


# --- carget's own names beside the output, planted by someone else ----------------------

async def test_a_symlink_planted_at_the_partial_file_is_not_written_through(
        tmp_path: Path) -> None:
    dag = Dag()
    leaf = dag.file(b"fetched bytes")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"victim")
    (tmp_path / "out.carget-partial").symlink_to(victim)
    (tmp_path / "out.carget-journal.tmp").symlink_to(victim)
    code, err = await get(dag.car(leaf), leaf, tmp_path / "out")
    assert code == 0, err
    assert victim.read_bytes() == b"victim"
    assert not (tmp_path / "out").is_symlink()
    assert (tmp_path / "out").read_bytes() == b"fetched bytes"


def test_the_journal_is_not_written_through_a_planted_symlink(tmp_path: Path) -> None:
    from carget.fetcher.outputs.file import FileOutput

    dag = Dag()
    leaf = dag.file(b"0123456789")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"victim")
    out = FileOutput(str(tmp_path / "f.bin"), leaf, 10)
    (tmp_path / "f.bin.carget-journal.tmp").symlink_to(victim)
    out.write_journal()
    out.abandon(keep=True)
    assert victim.read_bytes() == b"victim"
    assert (tmp_path / "f.bin.carget-journal").is_file()


def _kept_tree(tmp_path: Path) -> tuple[Dag, CID, bytes]:
    """A tree whose first answer stopped half-way, kept for resuming (as after Ctrl-C)."""
    from carget.errors import CargetError
    from carget.fetcher.outputs.tree import TreeOutput
    from carget.fetcher.verifier import DagVerifier

    dag = Dag()
    root = dag.tree({"a": {"x.txt": b"x" * 3000}, "b": {"y.txt": b"y" * 3000},
                     "c": {"z.txt": b"z" * 3000}})
    car = dag.car(root)
    tree = TreeOutput(str(tmp_path / "out"), root)
    verifier = DagVerifier(root, scope="all")
    tree.handle(verifier.feed(car[: len(car) * 2 // 3]))
    with pytest.raises(CargetError):
        verifier.feed_eof()
    tree.abandon(keep=True)
    return dag, root, car


def _resume(tmp_path: Path, root: CID, car: bytes) -> None:
    from carget.fetcher.outputs.tree import TreeOutput
    from carget.fetcher.verifier import DagVerifier

    tree = TreeOutput(str(tmp_path / "out"), root)
    tree.resume()
    for path, cid, part in tree.remaining("", root):
        sub = tree.under(path)
        verifier = DagVerifier(cid, scope="all" if part is None else "entity", byte_range=part)
        sub.handle(verifier.feed(car))  # a gateway that sends the whole DAG: the rest skipped
        if not verifier.done:
            sub.handle(verifier.feed_eof())
    assert tree.remaining("", root) == []
    tree.commit()


def test_a_kept_partial_tree_replaced_by_a_symlink_is_not_swept_through(
        tmp_path: Path) -> None:
    _, root, _ = _kept_tree(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "out").mkdir(parents=True)
    (elsewhere / "out" / "keepme").write_bytes(b"keep")
    remove_tree(str(tmp_path / "out.carget-partial"))
    (tmp_path / "out.carget-partial").symlink_to(elsewhere)
    from carget.fetcher.outputs.tree import TreeOutput

    tree = TreeOutput(str(tmp_path / "out"), root)
    tree.resume()
    tree.abandon(keep=False)
    assert (elsewhere / "out" / "keepme").read_bytes() == b"keep"


def test_a_kept_directory_that_is_gone_is_fetched_again(tmp_path: Path) -> None:
    _, root, car = _kept_tree(tmp_path)
    remove_tree(str(tmp_path / "out.carget-partial" / "out" / "a"))
    _resume(tmp_path, root, car)
    assert (tmp_path / "out" / "a" / "x.txt").read_bytes() == b"x" * 3000
    assert (tmp_path / "out" / "c" / "z.txt").read_bytes() == b"z" * 3000


@pytest.mark.parametrize("command", ["get", "extract"])
async def test_a_name_longer_than_255_bytes_is_the_dags_fault(tmp_path: Path,
                                                              command: str) -> None:
    dag = Dag()
    root = dag.directory([("é" * 128, dag.file(b"x"))])
    before = snapshot(tmp_path, tmp_path / "__none__")
    code, err, out = await run_command(command, dag.car(root), root, tmp_path)
    assert code == 4, err
    assert_refused_cleanly(tmp_path, before, out)


async def test_car_extract_into_a_symlink_to_a_directory(tmp_path: Path) -> None:
    """The output directory is the user's choice: reaching it through a link is fine."""
    dag = Dag()
    root = dag.tree({"a.txt": b"a"})
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "hostile.car").write_bytes(dag.car(root))
    code, err = await carget("car", "extract", "-f", str(tmp_path / "hostile.car"),
                             "-o", str(tmp_path / "link"))
    assert code == 0, err
    assert (tmp_path / "real" / "a.txt").read_bytes() == b"a"


def _hamt_chain(dag: Dag, levels: int) -> CID:
    """Shards of fanout 256 nested ``levels`` deep over one entry: deeper than the 64-bit
    hash reaches past 8 levels."""
    from carget.unixfs.dagpb import PBLink, encode_node
    from carget.unixfs.data import DataType, UnixFSData, encode_data

    data = encode_data(UnixFSData(DataType.HAMT_SHARD, data=b"\x01", hash_type=0x22,
                                  fanout=256))
    cid = dag.put(encode_node([PBLink(dag.file(b"x"), "00f", 1)], data))
    for _ in range(levels - 1):
        cid = dag.put(encode_node([PBLink(cid, "00", 1)], data))
    return cid


@pytest.mark.parametrize("command", ["get", "extract"])
async def test_a_hamt_deeper_than_its_hash_is_refused(tmp_path: Path, command: str) -> None:
    dag = Dag()
    root = _hamt_chain(dag, 12)
    before = snapshot(tmp_path, tmp_path / "__none__")
    code, err, out = await run_command(command, dag.car(root), root, tmp_path)
    assert code == 4, err
    assert "deeper than its hash" in err
    assert_refused_cleanly(tmp_path, before, out)


def test_serve_answers_a_duplicate_name_with_502(tmp_path: Path) -> None:
    import httpx

    from carget.server.testing import running_gateway

    dag = Dag()
    x = dag.file(b"x")
    sub = dag.directory([("x", x), ("x", dag.file(b"y"))])
    root = dag.directory([("dup", sub)])
    car = dag.write_car(root, tmp_path / "d.car")
    with running_gateway([car]) as url:
        r = httpx.get(f"{url}/ipfs/{root}/dup/x?format=car", timeout=10)
    assert r.status_code == 502
    assert "twice" in r.text or "2 times" in r.text
