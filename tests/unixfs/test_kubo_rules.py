"""kubo 0.43.1's add-flag rules as resolve_options applies them (each was found by, and is
checked live in, tests/interop/test_go_kubo_add.py; these pin them without kubo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carget.cid import CID, Block
from carget.errors import UsageError
from carget.unixfs.directory import DirectoryBuilder
from carget.unixfs.options import (
    DEFAULT,
    MAX_CHUNK_SIZE,
    parse_chunker,
    resolve_options,
    top_directory_options,
)

EMPTY = CID.parse("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")


def test_max_file_links() -> None:
    assert resolve_options().max_links == 174
    assert resolve_options(max_file_links=2).max_links == 2
    assert resolve_options(max_file_links=0).max_links == 174  # kubo: <= 0 is the default
    assert resolve_options(max_file_links=-3, profile="unixfs-v1-2025").max_links == 174
    assert resolve_options(profile="unixfs-v1-2025").max_links == 1024
    with pytest.raises(UsageError, match="at least 2"):
        resolve_options(max_file_links=1)  # kubo 0.43.1 never finishes


@pytest.mark.parametrize("fanout", [8, 16, 256, 1024])
def test_max_hamt_fanout_accepts_powers_of_two(fanout: int) -> None:
    assert resolve_options(max_hamt_fanout=fanout).hamt_fanout == fanout


@pytest.mark.parametrize("fanout", [0, 4, 12, 2048])
def test_max_hamt_fanout_refuses_as_kubo(fanout: int) -> None:
    with pytest.raises(UsageError, match="power of 2, between 8 and 1024"):
        resolve_options(max_hamt_fanout=fanout)


def test_max_directory_links_shards_above_the_count() -> None:
    opts = resolve_options(max_directory_links=2)
    b = DirectoryBuilder(opts)
    b.add("a", EMPTY, 6)
    b.add("b", EMPTY, 6)
    assert not b.sharded
    b.add("c", EMPTY, 6)
    assert b.sharded and b.finish().sharded
    assert resolve_options(max_directory_links=-1).max_directory_links == 0


def test_the_top_directory_takes_no_directory_limits() -> None:
    opts = resolve_options(max_directory_links=2, max_hamt_fanout=8)
    top = top_directory_options(opts)
    assert (top.max_directory_links, top.hamt_fanout) == (0, 256)
    assert top_directory_options(DEFAULT) is DEFAULT


def test_links_estimate_shards_above_not_at_the_threshold() -> None:
    b = DirectoryBuilder(DEFAULT.replace(hamt_threshold=68))
    b.add("a" * 34, EMPTY, 6)
    assert b.estimate == 68 and not b.sharded  # kubo 0.22 sharded here (>=)
    b.add("b", EMPTY, 6)
    assert b.sharded


def test_a_config_profile_pins_cid_version_and_raw_leaves() -> None:
    # unixfs-v0-2015 writes Import.CidVersion=0 and UnixFSRawLeaves=false
    opts = resolve_options(profile="unixfs-v0-2015", cid_version=1)
    assert (opts.cid_version, opts.raw_leaves) == (1, False)
    with pytest.raises(UsageError, match="CIDv0 only supports sha2-256"):
        resolve_options(profile="unixfs-v0-2015", hash="sha3-256")
    v1 = resolve_options(profile="unixfs-v1-2025", cid_version=0)
    assert (v1.cid_version, v1.raw_leaves) == (0, True)
    plain = resolve_options(cid_version=1)
    assert plain.raw_leaves and resolve_options(hash="sha3-256").cid_version == 1


def test_chunk_size_cap_is_kubos() -> None:
    assert MAX_CHUNK_SIZE == 2096896
    assert parse_chunker("size-2096896") == 2096896
    with pytest.raises(UsageError, match="maximum chunk size of 2096896"):
        parse_chunker("size-2096897")


def test_directory_limits_skip_only_the_top_directory(tmp_path: Path) -> None:
    """kubo 0.43.1: `-r --max-directory-links=2 d` leaves d basic (it is the top one) and
    shards d/sub; under -w the wrapper is the top one and d shards too."""
    from carget.tree import add_paths
    from carget.unixfs.dagpb import decode_node

    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    for n in "abc":
        (d / n).write_bytes(n.encode())
        (d / "sub" / n).write_bytes(n.encode())
    blocks: dict[CID, bytes] = {}

    def kind(cid: CID) -> int:
        data = decode_node(blocks[cid]).data or b""
        return data[1]  # UnixFS Type: 1 directory, 5 HAMT shard

    def emit(b: Block) -> None:
        blocks[b.cid] = bytes(b.data)

    root = add_paths([str(d)], resolve_options(max_directory_links=2), emit=emit)[0]
    links = {link.name: link.cid for link in decode_node(blocks[root]).links}
    assert kind(root) == 1 and len(links) == 4 and kind(links["sub"]) == 5
    wrapped = add_paths([str(d)], resolve_options(max_directory_links=2, wrap=True), emit=emit)[0]
    (top,) = decode_node(blocks[wrapped]).links
    assert kind(wrapped) == 1 and kind(top.cid) == 5


def test_empty_dirs_false_leaves_out_empty_directories_but_the_top(tmp_path: Path) -> None:
    """kubo 0.43.1 `--empty-dirs=false`: a directory listing nothing (dot-files count as
    nothing without -H) is left out, except the top one; under -w an argument is not it."""
    from carget.tree import add_paths
    from carget.unixfs.dagpb import decode_node

    d = tmp_path / "d"
    (d / "empty").mkdir(parents=True)
    (d / "dots").mkdir()
    (d / "dots" / ".x").write_bytes(b"x")
    (d / "f").write_bytes(b"f")
    blocks: dict[CID, bytes] = {}

    def emit(b: Block) -> None:
        blocks[b.cid] = bytes(b.data)

    def names(cid: CID) -> list[str]:
        return [link.name or "" for link in decode_node(blocks[cid]).links]

    root = add_paths([str(d)], resolve_options(empty_dirs=False), emit=emit)[0]
    assert names(root) == ["f"]
    assert names(add_paths([str(d)], resolve_options(), emit=emit)[0]) == ["dots", "empty", "f"]
    assert names(add_paths([str(d)], resolve_options(empty_dirs=False, hidden=True),
                           emit=emit)[0]) == ["dots", "f"]
    top = add_paths([str(d / "empty")], resolve_options(empty_dirs=False), emit=emit)[0]
    assert names(top) == []  # the top directory stays, empty
    wrapped = add_paths([str(d / "empty"), str(d / "f")],
                        resolve_options(empty_dirs=False, wrap=True), emit=emit)[0]
    assert names(wrapped) == ["f"]


def test_custom_mode_and_mtime() -> None:
    opts = resolve_options(mode=0o4755, mtime=12, mtime_nsecs=5)
    assert (opts.mode, opts.mtime, opts.raw_leaves) == (0o755, (12, 5), False)
    assert resolve_options(mode=0, mtime=0).mode is None  # 0 is "not given", as kubo
    both = resolve_options(mode=0o600, preserve_mode=True, preserve_mtime=True, mtime=3)
    assert not both.preserve_mode and not both.preserve_mtime  # the given values win
    with pytest.raises(UsageError, match="requires"):
        resolve_options(mtime_nsecs=5)
    with pytest.raises(UsageError, match=r"\[1, 999999999\]"):
        resolve_options(mtime=1, mtime_nsecs=10**9)
    with pytest.raises(UsageError, match="raw-leaves"):
        resolve_options(mode=0o644, raw_leaves=True)


@pytest.mark.parametrize(("text", "mode"), [("0644", 0o644), ("0o644", 0o644), ("420", 0o644),
                                             ("0x1a4", 0o644)])
def test_mode_is_read_as_go_reads_a_uint(text: str, mode: int) -> None:
    from carget.cli._importflags import pop_import_options

    flags = {n: None for n in ("wrap", "hidden", "cid_version", "raw_leaves", "chunker",
                               "trickle", "hash_name", "inline", "inline_limit", "profile",
                               "preserve_mode", "preserve_mtime", "max_file_links",
                               "max_directory_links", "max_hamt_fanout", "mtime",
                               "mtime_nsecs", "jobs")}
    flags |= {"wrap": False, "hidden": False, "trickle": False, "inline": False,
              "preserve_mode": False, "preserve_mtime": False, "empty_dirs": True}
    from carget.cli._importflags import _GoUint

    flags["mode"] = _GoUint().convert(text, None, None)
    assert pop_import_options(flags)[0].mode == mode


def test_stdin_takes_mode_and_mtime_as_a_file_does(tmp_path: Path) -> None:
    """kubo 0.43.1 gives `--mode`/`--mtime` to stdin as to a named file."""
    from click.testing import CliRunner

    from carget.cli import cli

    f = tmp_path / "f"
    f.write_bytes(b"x" * 1000)
    flags = ["add", "-Q", "--mode=0644", "--mtime=5"]
    named = CliRunner().invoke(cli, [*flags, str(f)]).output.strip()
    piped = CliRunner().invoke(cli, flags, input=f.read_bytes()).output.strip()
    plain = CliRunner().invoke(cli, ["add", "-Q"], input=f.read_bytes()).output.strip()
    assert piped == named != plain
