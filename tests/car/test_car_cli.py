"""`carget car ...` and `carget cid format` on the gateway-conformance fixtures, as whole
processes: outputs, exit codes, safe extraction."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from carfixtures import ALL_CARS, FIXTURES

from carget.car import decode_car

MISSING = FIXTURES / "trustless_gateway_car" / "file-3k-and-3-blocks-missing-block.car"
MULTIBLOCK_SHA = "998785f13287a9aabc2d7048e4c2905d502ff13ef40f2d135f163b5a762701c5"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "carget", *args], input=stdin,
                          capture_output=True, timeout=60)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("path", ALL_CARS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_verifies_and_lists(path: Path) -> None:
    r = run("car", "verify", str(path))
    assert r.returncode == 0, r.stderr
    r = run("car", "ls", str(path))
    header, blocks = decode_car(path.read_bytes())
    assert r.stdout.decode().split() == [str(b.cid) for b in blocks]
    r = run("car", "roots", "-", stdin=path.read_bytes())
    assert r.stdout.decode().split() == [str(c) for c in header.roots]
    dag = run("car", "verify", "--dag", str(path))
    assert dag.returncode == (4 if "missing-block" in path.name else 0), dag.stderr


def test_missing_block_is_incomplete_and_inspect_names_it() -> None:
    r = run("car", "verify", "--dag", str(MISSING))
    assert r.returncode == 4 and b"QmSNLTo6Wv9dfroVaw7MFYjLqf9ho7PKrgsjdzYDtv8h1W" in r.stderr
    r = run("car", "inspect", str(MISSING))
    out = r.stdout.decode()
    assert r.returncode == 0 and "Blocks: 3" in out and "Missing links: 1" in out
    assert "QmSNLTo6Wv9dfroVaw7MFYjLqf9ho7PKrgsjdzYDtv8h1W" in out and "dag-pb: 3" in out


def test_bad_car_exit_code_4(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "tooling" / "hello_ipfs.car").read_bytes())
    data[-1] ^= 1
    bad = tmp_path / "bad.car"
    bad.write_bytes(bytes(data))
    r = run("car", "verify", str(bad))
    assert r.returncode == 4 and b"does not match" in r.stderr
    bad.write_bytes(bytes(data[:-3]))
    assert run("car", "verify", str(bad)).returncode == 4
    assert run("car", "verify", str(tmp_path / "absent.car")).returncode == 1


def _extract(car: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return run("car", "extract", "-f", str(car), "-o", str(out), *extra)


def test_extract_subdir_with_mixed_block_files(tmp_path: Path) -> None:
    r = _extract(FIXTURES / "trustless_gateway_car" / "subdir-with-mixed-block-files.car", tmp_path)
    assert r.returncode == 0, r.stderr
    sub = tmp_path / "subdir"
    assert (sub / "ascii.txt").read_bytes() == b"hello application/vnd.ipld.car\n"
    assert (sub / "hello.txt").read_bytes() == b"hello world\n"
    assert sha(sub / "multiblock.txt") == MULTIBLOCK_SHA
    assert sorted(os.listdir(sub)) == ["ascii.txt", "hello.txt", "multiblock.txt"]


def test_extract_hamt_and_a_path_inside_it(tmp_path: Path) -> None:
    car = FIXTURES / "trustless_gateway_car" / "single-layer-hamt-with-multi-block-files.car"
    r = _extract(car, tmp_path / "all")
    assert r.returncode == 0, r.stderr
    names = os.listdir(tmp_path / "all")
    assert sorted(names) == sorted(f"{i}.txt" for i in range(1, 1001))
    assert sha(tmp_path / "all" / "685.txt") == MULTIBLOCK_SHA
    r = _extract(car, tmp_path / "one", "685.txt")
    assert r.returncode == 0 and os.listdir(tmp_path / "one") == ["685.txt"]
    assert run("car", "extract", "-f", str(car), "-o", str(tmp_path / "x"),
               "nope.txt").returncode == 3


@pytest.mark.parametrize(("rel", "files"), [
    ("path_gateway_unixfs/dir-with-percent-encoded-filename.car",
     {"Portugal%2C+España=Peninsula Ibérica.txt": b"hello from a percent encoded filename\n"}),
    ("path_gateway_dag/dag-pb.car",
     {"foo/bar.txt": b"Hello, world!\n", "foo.txt": b"Hello, IPFS!\n"}),
    ("tooling/issue-54.car", {"sub1/hello.txt": b"abc123\n", "sub2/hello.txt": b"xyz456\n"}),
    ("gateway-raw-block.car", {"dir/ascii.txt": b"hello application/vnd.ipld.raw\n"}),
    ("trustless_gateway_car/dir-with-duplicate-files.car",
     {"ascii.txt": b"hello application/vnd.ipld.car\n",
      "ascii-copy.txt": b"hello application/vnd.ipld.car\n", "hello.txt": b"hello world\n"}),
    ("dir_listing/fixtures.car", {"ą/ę/file-źł.txt": None, "api/file.txt": None,
                                  "ipfs/file.txt": None, "ipns/file.txt": None}),
])
def test_extract_fixture_contents(tmp_path: Path, rel: str, files: dict[str, bytes | None]) -> None:
    r = _extract(FIXTURES / rel, tmp_path)
    assert r.returncode == 0, r.stderr
    for name, content in files.items():
        assert (tmp_path / name).is_file()
        if content is not None:
            assert (tmp_path / name).read_bytes() == content


def test_extract_tooling_dag_sizes_and_single_raw_block(tmp_path: Path) -> None:
    assert _extract(FIXTURES / "tooling" / "dag.car", tmp_path).returncode == 0
    sizes = {p: (tmp_path / p).stat().st_size for p in ["a-file.txt", "b-file.txt",
                                                        "subdir/leaf.txt"]}
    assert sizes == {"a-file.txt": 726, "b-file.txt": 29998, "subdir/leaf.txt": 30999}
    r = run("car", "extract", "-o", str(tmp_path / "h"),
            stdin=(FIXTURES / "tooling" / "hello_ipfs.car").read_bytes())
    assert r.returncode == 0, r.stderr
    [name] = os.listdir(tmp_path / "h")
    assert (tmp_path / "h" / name).read_bytes() == b"Hello IPFS\n"


def test_extract_symlink_inside_is_kept(tmp_path: Path) -> None:
    assert _extract(FIXTURES / "path_gateway_unixfs" / "symlink.car", tmp_path).returncode == 0
    assert os.readlink(tmp_path / "bar") == "foo"
    assert (tmp_path / "bar").read_bytes() == b"content\n"


@pytest.mark.parametrize("name", ["outside-root.car", "inside-root.car"])
def test_extract_refuses_traversal_names(tmp_path: Path, name: str) -> None:
    out = tmp_path / "a" / "b"
    r = _extract(FIXTURES / "path_gateway_tar" / name, out)
    assert r.returncode == 4 and b"unsafe" in r.stderr
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    assert all(w.startswith("a") for w in written)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_extract_refuses_symlink_leaving_the_output(tmp_path: Path) -> None:
    from carget.car.writer import open_car_writer
    from carget.cid import CID, DAG_PB, Block
    from carget.unixfs.dagpb import PBLink, encode_node
    from carget.unixfs.data import DataType, UnixFSData, encode_data

    link = encode_node([], encode_data(UnixFSData(DataType.SYMLINK, data=b"../../etc/passwd")))
    link_cid = CID.of(link, DAG_PB, version=0)
    d = encode_node([PBLink(link_cid, "evil", len(link))],
                    encode_data(UnixFSData(DataType.DIRECTORY)))
    d_cid = CID.of(d, DAG_PB, version=0)
    car = tmp_path / "evil.car"
    with open_car_writer(str(car), roots=[d_cid]) as w:
        w.write_block(Block(d_cid, d))
        w.write_block(Block(link_cid, link))
    r = _extract(car, tmp_path / "out")
    assert r.returncode == 4 and b"outside" in r.stderr
    assert not os.path.lexists(tmp_path / "out" / "evil")


@pytest.mark.parametrize("version", ["1", "2"])
def test_create_then_extract_round_trip(tmp_path: Path, version: str) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(700_000))
    car = tmp_path / "out.car"
    r = run("car", "create", "-f", str(car), "--version", version, str(src))
    assert r.returncode == 0, r.stderr
    root = r.stdout.decode().strip()
    assert run("car", "roots", str(car)).stdout.decode().strip() == root
    add = subprocess.run([sys.executable, "-m", "carget", "add", "-Q", "--cid-version", "1",
                          str(src)], capture_output=True, timeout=60)
    assert add.stdout.decode().strip() == root  # the same DAG `carget add` computes
    assert run("car", "verify", "--dag", str(car)).returncode == 0
    inspect = run("car", "inspect", str(car)).stdout.decode()
    assert f"Version: {version}" in inspect and "raw: 3" in inspect
    r = _extract(car, tmp_path / "x")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x" / root).read_bytes() == src.read_bytes()


def test_cid_format() -> None:
    v0 = "QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt"
    v1 = run("cid", "format", "-v", "1", v0).stdout.decode().strip()
    assert v1.startswith("bafybei")
    assert run("cid", "format", "-v", "0", v1).stdout.decode().strip() == v0
    assert run("cid", "format", "-b", "base36", v0).stdout.decode().startswith("k")
    raw = "bafkreidfdrlkeq4m4xnxuyx6iae76fdm4wgl5d4xzsb77ixhyqwumhz244"
    bad = run("cid", "format", "-v", "0", raw)
    assert bad.returncode == 2


_EXTRACT_EXIT = {
    "dag-cbor-traversal.car": 4,  # root is dag-cbor: not a UnixFS DAG (UnixFSError)
    "dir-with-dag-cbor-with-links.car": 4,  # holds a dag-cbor entry
    "inside-root.car": 4, "outside-root.car": 4,  # '../file', '../foo'
    "file-3k-and-3-blocks-missing-block.car": 4,
    "file-3k-and-3-blocks-missing-block.tooling-variant.car": 4,
}


@pytest.mark.parametrize("path", ALL_CARS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_extract_every_fixture_exit_code_and_no_partial_files(tmp_path: Path, path: Path) -> None:
    r = _extract(path, tmp_path / "out")
    assert r.returncode == _EXTRACT_EXIT.get(path.name, 0), r.stderr
    leftovers = [p for p in tmp_path.rglob("*") if "carget-tmp" in p.name]
    assert leftovers == []
    if "missing-block" in path.name:  # the file cannot be complete, so it is not there
        assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_extract_subdomain_fixture_sha512_and_cidv0_to_v1(tmp_path: Path) -> None:
    assert _extract(FIXTURES / "subdomain_gateway" / "fixtures.car", tmp_path).returncode == 0
    for name in ["hello-CIDv0", "hello-CIDv0to1", "hello-CIDv1", "hello-CIDv1_TOO_LONG",
                 "testdirlisting/hello"]:
        assert (tmp_path / name).read_bytes() == b"hello\n"


def test_extract_two_single_block_files(tmp_path: Path) -> None:
    car = FIXTURES / "trustless_gateway_car" / "subdir-with-two-single-block-files.car"
    assert _extract(car, tmp_path, "subdir/ascii.txt").returncode == 0
    assert (tmp_path / "ascii.txt").read_bytes() == b"hello application/vnd.ipld.car\n"
    assert _extract(car, tmp_path / "all").returncode == 0
    assert tree_names(tmp_path / "all") == ["subdir", "subdir/ascii.txt", "subdir/hello.txt"]


def tree_names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
