"""``add_paths`` and ``carget add -r/-w``: kubo's output order and names, symlinks, hidden
files, UnixFS 1.5 metadata, streaming emit order, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from carget.cid import CID, Block
from carget.errors import InputError, UsageError
from carget.tree import add_paths
from carget.unixfs.dagpb import decode_node
from carget.unixfs.data import DataType, decode_data
from carget.unixfs.directory import symlink_block
from carget.unixfs.hamt import hamt_order
from carget.unixfs.node import decode_unixfs
from carget.unixfs.options import DEFAULT, resolve_options

EMPTY_DIR_V0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"  # kubo: empty directory
JS_META = Path(__file__).parent / "js_meta.mjs"
JS_MODULES = Path(__file__).parent.parent / "interop" / "js" / "node_modules"


def _add(paths: list[Path | str], **flags: object) -> tuple[list[CID], list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    opts = resolve_options(**flags)  # type: ignore[arg-type]
    roots = add_paths([str(p) for p in paths], opts, jobs=1,
                      report=lambda cid, name, _d: lines.append((name, cid)))
    return roots, lines


def _carget(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carget", "add", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_empty_directory_is_kubos(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    roots, lines = _add([tmp_path / "e"])
    assert str(roots[0]) == EMPTY_DIR_V0 and lines == [("e", EMPTY_DIR_V0)]


def test_output_order_files_in_walk_order_then_directories_children_first(
        tmp_path: Path) -> None:
    root = tmp_path / "t"
    for rel in ["b/z", "b/a/x", "a", "c/d/e/f", "B"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())
    (root / "empty").mkdir()
    _, lines = _add([root])
    assert [n for n, _ in lines] == [
        "t/B", "t/a", "t/b/a/x", "t/b/z", "t/c/d/e/f",  # files, name-byte order, depth first
        "t/b/a", "t/b", "t/c/d/e", "t/c/d", "t/c", "t/empty", "t",  # then kubo's outputDirs
    ]


def test_subdirectories_of_a_sharded_directory_are_reported_in_hamt_order(
        tmp_path: Path) -> None:
    root = tmp_path / "s"
    names = [f"d{i}" for i in range(12)]
    for n in names:
        (root / n).mkdir(parents=True)
        (root / n / "f").write_bytes(n.encode())
    opts = DEFAULT.replace(hamt_threshold=100)  # 12 x (2-3 + 34) bytes: sharded
    lines: list[str] = []
    root_cid = add_paths([str(root)], opts, report=lambda c, n, d: lines.append(n))[0]
    dirs = [n.split("/")[1] for n in lines if n.count("/") == 1 and not n.endswith("/f")]
    assert dirs == hamt_order(names)  # kubo's ListNames walks the shard
    assert lines[-1] == "s"
    blocks: list[Block] = []
    add_paths([str(root)], opts, emit=blocks.append)
    assert decode_unixfs(root_cid, blocks[-1].data).kind == "hamt"


def test_emit_gives_children_before_parents_and_root_last(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "big").write_bytes(os.urandom(70_000))
    (root / "x").write_bytes(b"x")
    os.symlink("x", root / "ln")
    seen: set[CID] = set()
    blocks: list[Block] = []

    def emit(block: Block) -> None:
        block.cid.verify(bytes(block.data))  # raises HashMismatch on a bad block
        if block.cid.codec == 0x70:
            for link in decode_node(bytes(block.data)).links:
                assert link.cid in seen, "a parent came before its child"
        seen.add(block.cid)
        blocks.append(Block(block.cid, bytes(block.data)))

    roots = add_paths([str(root)], resolve_options(chunker="size-16384"), emit=emit)
    assert blocks[-1].cid == roots[0]


def test_deep_tree_does_not_recurse(tmp_path: Path) -> None:
    p = tmp_path / "deep"
    deep = str(p)
    os.mkdir(deep)
    for _ in range(1100):  # beyond Python's recursion limit (os.makedirs itself recurses)
        deep += "/d"
        os.mkdir(deep)
    Path(deep, "leaf").write_bytes(b"bottom")
    try:
        _, lines = _add([p])
        assert lines[0][0].endswith("/d/leaf") and lines[-1][0] == "deep"
        assert len(lines) == 1 + 1100 + 1
    finally:  # shutil.rmtree (pytest's clean-up) recurses too
        os.unlink(deep + "/leaf")
        while deep != str(tmp_path):
            os.rmdir(deep)
            deep = os.path.dirname(deep)


def test_wrap_a_file_and_a_tree(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello")
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "f").write_bytes(b"f")
    roots, lines = _add([tmp_path / "hello.txt", tmp_path / "dir"], wrap=True)
    # kubo 0.43.1 sorts the arguments by name: dir before hello.txt (checked live)
    assert [n for n, _ in lines] == ["dir/sub/f", "hello.txt", "dir/sub", "dir", ""]
    assert len(roots) == 1 and lines[-1][1] == str(roots[0])
    blocks: list[Block] = []
    add_paths([str(tmp_path / "hello.txt"), str(tmp_path / "dir")],
              resolve_options(wrap=True), emit=blocks.append)
    names = [link.name for link in decode_node(blocks[-1].data).links]
    assert names == ["dir", "hello.txt"]  # the file names survive in the DAG


def test_cli_wrap_prints_an_empty_name_and_quieter_prints_the_root(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello")
    out = _carget("-w", "hello.txt", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    first, last = out.stdout.splitlines()
    assert first.startswith("added ") and first.endswith(" hello.txt")
    assert last.startswith("added ") and last.endswith(" ") and len(last.split(" ")) == 3
    q = _carget("-w", "-Q", "hello.txt", cwd=tmp_path)
    assert q.stdout.strip() == last.split(" ")[1]


def test_cli_directory_without_r_fails_but_a_symlink_to_one_is_a_symlink(
        tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.symlink("d", tmp_path / "ln")
    bad = _carget("d", cwd=tmp_path)
    assert bad.returncode == 1 and "-r" in bad.stderr
    ok = _carget("ln", cwd=tmp_path)  # kubo lstat-s arguments: a symlink is stored, not followed
    assert ok.returncode == 0, ok.stderr
    want, _ = symlink_block(b"d", DEFAULT)
    assert ok.stdout == f"added {want.cid} ln\n"


def test_symlinks_are_never_followed_not_even_loops(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    os.symlink(".", root / "self")
    os.symlink(str(root), root / "up")
    os.symlink("loop", tmp_path / "loop")
    _, lines = _add([root])
    assert [n for n, _ in lines] == ["t/a", "t/b", "t/self", "t/up", "t"]
    blocks: list[Block] = []
    add_paths([str(root)], DEFAULT, emit=blocks.append)
    kinds = {b.cid: decode_unixfs(b.cid, b.data) for b in blocks}
    assert kinds[CID.parse(lines[2][1])].kind == "symlink"
    assert kinds[CID.parse(lines[2][1])].data == b"."
    (loop_cid,), _ = _add([tmp_path / "loop"])  # a looping symlink argument: one node
    assert loop_cid == symlink_block(b"loop", DEFAULT)[0].cid


def test_hidden_files_skipped_unless_asked_but_never_a_hidden_argument(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "x").write_bytes(b"x")
    (root / ".dot").write_bytes(b"d")
    (root / "v").write_bytes(b"v")
    _, lines = _add([root])
    assert [n for n, _ in lines] == ["t/v", "t"]
    _, lines = _add([root], hidden=True)
    assert [n for n, _ in lines] == ["t/.dot", "t/.git/x", "t/v", "t/.git", "t"]
    _, lines = _add([root / ".dot"])
    assert [n for n, _ in lines] == [".dot"]


def test_dot_argument_is_named_after_the_working_directory(tmp_path: Path) -> None:
    d = tmp_path / "named"
    d.mkdir()
    (d / "f").write_bytes(b"f")
    out = _carget("-r", ".", cwd=d)
    assert out.returncode == 0, out.stderr
    assert [line.split(" ", 2)[2] for line in out.stdout.splitlines()] == ["named/f", "named"]


def test_repeated_arguments(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"1")
    (tmp_path / "b" / "f").write_bytes(b"2")
    roots, _ = _add([tmp_path / "a" / "f", tmp_path / "a" / "f"])
    assert len(roots) == 1  # kubo skips a repeated argument
    with pytest.raises(InputError, match="repeated under different import directories"):
        _add([tmp_path / "a" / "f", tmp_path / "b" / "f"])


# --- UnixFS 1.5 metadata ---------------------------------------------------------------

def _meta_tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "f1").write_bytes(os.urandom(3000))
    (root / "sub" / "deep" / "x").write_bytes(os.urandom(5000))
    os.symlink("f1", root / "lnk")
    os.chmod(root / "f1", 0o600)
    os.chmod(root / "sub" / "deep" / "x", 0o604)
    os.chmod(root / "sub", 0o700)
    os.chmod(root / "sub" / "deep", 0o711)
    os.chmod(root, 0o750)
    os.utime(root / "lnk", ns=(0, 1_614_834_367_123_456_789), follow_symlinks=False)
    for p in [root / "f1", root / "sub" / "deep" / "x", root / "sub" / "deep",
              root / "sub", root]:
        os.utime(p, ns=(0, 1_577_934_245_500_000_001))


@pytest.mark.requires_peer(
    None if shutil.which("node") and JS_MODULES.exists() else "node or its npm packages missing"
)
@pytest.mark.parametrize("version", [0, 1])
def test_preserve_mode_and_mtime_match_the_js_importer(tmp_path: Path, version: int) -> None:
    """Non-default modes and non-zero nanoseconds only: there the JS importer encodes
    mode/mtime as boxo does (it drops 0644/0755 and writes zero nanos, boxo does not)."""
    root = tmp_path / "m"
    _meta_tree(root)
    job = {"path": str(root), "mode": True, "mtime": True, "cidVersion": version,
           "chunkSize": 1024}
    js = subprocess.run(["node", str(JS_META)], input=json.dumps(job), capture_output=True,
                        text=True, timeout=120, check=True)
    want = json.loads(js.stdout)
    roots, lines = _add([root], cid_version=version, chunker="size-1024",
                        preserve_mode=True, preserve_mtime=True)
    assert str(roots[0]) == want["root"]
    assert dict(lines) == {e["path"]: e["cid"] for e in want["entries"]}


def test_preserve_single_chunk_file_carries_mode_and_mtime_in_its_leaf(tmp_path: Path) -> None:
    f = tmp_path / "small"
    f.write_bytes(b"hello")
    os.chmod(f, 0o4640)
    os.utime(f, ns=(0, -1_500_000_000))  # before 1970: seconds -2, nanos 500000000 (Go)
    blocks: list[Block] = []
    add_paths([str(f)], resolve_options(preserve_mode=True, preserve_mtime=True),
              emit=blocks.append)
    assert len(blocks) == 1
    fs = decode_data(decode_node(blocks[0].data).data or b"")
    assert fs.type == DataType.FILE and fs.data == b"hello" and fs.filesize == 5
    assert fs.mode == 0o4640  # 12 permission bits incl. setuid, no file-type bits
    assert fs.mtime is not None and (fs.mtime.seconds, fs.mtime.nanos) == (-2, 500_000_000)
    # the plain import of the same bytes differs only by those fields
    assert blocks[0].cid != add_paths([str(f)], DEFAULT)[0]


def test_preserve_mtime_whole_seconds_has_no_nanos_and_symlinks_get_no_mode(
        tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    os.symlink("x", tmp_path / "t" / "ln")
    os.utime(tmp_path / "t" / "ln", ns=(0, 7_000_000_000), follow_symlinks=False)
    blocks: list[Block] = []
    add_paths([str(tmp_path / "t")], resolve_options(preserve_mode=True, preserve_mtime=True),
              emit=blocks.append)
    fs = decode_data(decode_node(blocks[0].data).data or b"")
    assert fs.type == DataType.SYMLINK and fs.data == b"x" and fs.mode is None
    assert fs.mtime is not None and (fs.mtime.seconds, fs.mtime.nanos) == (7, None)
    top = decode_data(decode_node(blocks[-1].data).data or b"")
    assert top.type == DataType.DIRECTORY and top.mode == os.stat(tmp_path / "t").st_mode & 0o7777


def test_preserve_with_explicit_raw_leaves_is_refused() -> None:
    with pytest.raises(UsageError):
        resolve_options(raw_leaves=True, preserve_mtime=True)
    assert not resolve_options(cid_version=1, preserve_mode=True).raw_leaves


# --- bad input ---------------------------------------------------------------------------

def test_name_not_utf8_is_an_input_error_naming_the_path(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "ok").write_bytes(b"1")
    with open(os.path.join(os.fsencode(root), b"bad-\xff"), "wb") as f:
        f.write(b"2")
    with pytest.raises(InputError, match=r"bad-\\xff.*not valid UTF-8"):
        _add([root])
    out = _carget("-r", "t", cwd=tmp_path)
    assert out.returncode == 1 and "bad-\\xff" in out.stderr and "Traceback" not in out.stderr


def test_unreadable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "t"
    (root / "locked").mkdir(parents=True)
    real = os.scandir

    def scandir(path: str) -> Any:  # the walk lists directories with os.scandir
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match=r"locked: Permission denied"):
        _add([root])


def test_unreadable_file_for_real(tmp_path: Path, unprivileged: list[str]) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "secret").write_bytes(b"s")
    os.chmod(tmp_path / "t" / "secret", 0)
    out = subprocess.run([*unprivileged, sys.executable, "-m", "carget", "add", "-r", "t"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "secret" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_unreadable_directory_for_real(tmp_path: Path, unprivileged: list[str]) -> None:
    (tmp_path / "t" / "locked").mkdir(parents=True)
    (tmp_path / "t" / "locked" / "f").write_bytes(b"f")
    os.chmod(tmp_path / "t" / "locked", 0)
    try:
        out = subprocess.run([*unprivileged, sys.executable, "-m", "carget", "add", "-r", "t"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(tmp_path / "t" / "locked", 0o755)
    assert out.returncode == 1 and "locked" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("jobs", [1, 2])
def test_path_vanishing_during_the_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        jobs: int) -> None:
    root = tmp_path / "t"
    root.mkdir()
    for n in "abc":
        (root / n).write_bytes(n.encode())
    real = os.scandir

    class Listed(list):  # type: ignore[type-arg]
        def __enter__(self) -> Listed:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def scandir(path: str) -> Listed:
        entries = Listed(real(path))
        if str(path) == str(root):
            (root / "b").unlink()  # listed already, gone before it is read
        return entries

    monkeypatch.setattr(os, "scandir", scandir)
    seen: list[str] = []
    with pytest.raises(InputError, match=r"t/b: no such file or directory"):
        add_paths([str(root)], DEFAULT, jobs=jobs, report=lambda c, n, d: seen.append(n))
    assert seen == ["t/a"]  # reported in walk order up to the missing file


def test_fifo_inside_a_tree(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    os.mkfifo(tmp_path / "t" / "pipe")
    with pytest.raises(InputError, match="pipe is not a regular file"):
        _add([tmp_path / "t"])


def test_directory_loop_through_a_bind_mount(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import carget.tree as tree

    root = tmp_path / "t"
    (root / "again").mkdir(parents=True)
    top = os.lstat(root)
    real = tree._lstat

    def lstat(path: str) -> os.stat_result:  # "again" is "t" mounted inside itself
        if path.endswith("again"):
            return top
        return real(path)

    monkeypatch.setattr(tree, "_lstat", lstat)
    with pytest.raises(InputError, match="again: directory loop"):
        _add([root])


def test_missing_argument_exit_code(tmp_path: Path) -> None:
    out = _carget("-r", "nope", cwd=tmp_path)
    assert out.returncode == 1 and "nope" in out.stderr


TREE_OPTS = [
    {},
    {"cid_version": 1},
    {"chunker": "size-1000"},
    {"chunker": "size-1000", "cid_version": 1},
    {"chunker": "size-1000", "trickle": True},
    {"chunker": "size-1000", "raw_leaves": True, "trickle": True},
    {"chunker": "size-1000", "inline": True, "inline_limit": 40},
]


@pytest.mark.parametrize("flags", TREE_OPTS)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("jobs", [1, 2])
def test_small_files_in_a_tree_are_the_files_add_file_makes(
        tmp_path: Path, flags: dict[str, object], seed: int, jobs: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Random trees of small files (around the chunk size, the empty file too, and some
    past the first read or SMALL_FILE): each file's CID, Tsize and blocks inside a tree are
    those of the general file importer."""
    import random

    import carget.tree
    from carget.add import add_file

    monkeypatch.setattr(carget.tree, "_FIRST_READ", 700)
    monkeypatch.setattr(carget.tree, "SMALL_FILE", 2000)

    rng = random.Random(seed)
    root = tmp_path / "t"
    files = []
    for i in range(40):
        p = root / f"d{rng.randrange(4)}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.choice([0, 1, 39, 40, 41, 999, 1000, 1001, 2500])))
        files.append(p)
    opts = resolve_options(**flags)  # type: ignore[arg-type]
    got: dict[str, str] = {}
    blocks: dict[CID, bytes] = {}

    def report(cid: str, name: str, _digest: str | None) -> None:
        got[name] = cid

    def keep(block: Block) -> None:
        blocks[block.cid] = bytes(block.data)

    add_paths([str(root)], opts, jobs=jobs, report=report, emit=keep)
    for p in files:
        want: list[Block] = []
        res = add_file(p, opts, jobs=1, emit=want.append)
        assert got[f"t/{p.parent.name}/{p.name}"] == str(res.cid)
        assert all(blocks[b.cid] == bytes(b.data) for b in want)
