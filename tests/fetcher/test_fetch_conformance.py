"""gateway-conformance fixtures served by ``carget serve`` (the honest gateway) and
fetched by path: files, HAMT entries, escaped names, trees, symlinks, unsafe names,
missing blocks."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from dagstore import DagStore
from faultgw import fault_gateway
from fetchhelp import FIXTURES, run_cli

from carget.fetcher import FetchOptions
from carget.fetcher.get import run_get
from carget.fetcher.target import quote_segment
from carget.server.testing import running_gateway

TC = FIXTURES / "trustless_gateway_car"
MULTIBLOCK_SHA = "998785f13287a9aabc2d7048e4c2905d502ff13ef40f2d135f163b5a762701c5"
MIXED = "bafybeidh6k2vzukelqtrjsmd4p52cpmltd2ufqrdtdg6yigi73in672fwu"
HAMT = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"
PERCENT = "bafybeig675grnxcmshiuzdaz2xalm6ef4thxxds6o6ypakpghm5kghpc34"
SYMLINK = "QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt"
OUTSIDE = "bafybeicaj7kvxpcv4neaqzwhrqqmdstu4dhrwfpknrgebq6nzcecfucvyu"
MISSING = "QmYhmPjhFjYFyaoiuNzYv8WGavpSRDwdHWe5B4M5du5Rtk"
LISTING = "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i"


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    cars = [TC / "subdir-with-mixed-block-files.car",
            TC / "single-layer-hamt-with-multi-block-files.car",
            TC / "file-3k-and-3-blocks-missing-block.car",
            FIXTURES / "path_gateway_unixfs" / "dir-with-percent-encoded-filename.car",
            FIXTURES / "path_gateway_unixfs" / "symlink.car",
            FIXTURES / "path_gateway_tar" / "outside-root.car",
            FIXTURES / "dir_listing" / "fixtures.car"]
    with running_gateway([str(c) for c in cars]) as url:
        yield url


async def test_file_by_path_through_directories(gateway: str, tmp_path: Path) -> None:
    code, out, err = await run_cli("get", "-g", gateway, f"ipfs://{MIXED}/subdir/multiblock.txt",
                                   "--digest", f"sha256:{MULTIBLOCK_SHA}")
    assert code == 0, err
    assert hashlib.sha256((tmp_path / "multiblock.txt").read_bytes()).hexdigest() == \
        MULTIBLOCK_SHA
    assert out.decode().strip() == f"sha256:{MULTIBLOCK_SHA}"


async def test_hamt_entry_by_path_and_cat(gateway: str) -> None:
    code, out, err = await run_cli("cat", "-g", gateway, f"/ipfs/{HAMT}/685.txt")
    assert code == 0, err
    assert hashlib.sha256(out).hexdigest() == MULTIBLOCK_SHA


async def test_percent_encoded_name_via_gateway_url_hint(gateway: str, tmp_path: Path) -> None:
    name = "Portugal%2C+España=Peninsula Ibérica.txt"
    url = f"{gateway}/ipfs/{PERCENT}/{quote_segment(name)}"
    code, _, err = await run_cli("get", url)  # no -g: the URL's host is the only gateway
    assert code == 0, err
    assert (tmp_path / name).read_bytes() == b"hello from a percent encoded filename\n"


async def test_directory_tree_with_utf8_names(gateway: str, tmp_path: Path) -> None:
    code, _, err = await run_cli("get", "-g", gateway, LISTING, "-o", "tree")
    assert code == 0, err
    files = sorted(str(p.relative_to(tmp_path / "tree")) for p in (tmp_path / "tree").rglob("*")
                   if p.is_file())
    assert files == ["api/file.txt", "ipfs/file.txt", "ipns/file.txt", "ą/ę/file-źł.txt"]


async def test_hamt_directory_tree(gateway: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        await run_get(HAMT, "hamt", FetchOptions([gateway], idle_timeout=10))
    names = os.listdir(tmp_path / "hamt")
    assert len(names) == 1000
    assert hashlib.sha256((tmp_path / "hamt" / "1000.txt").read_bytes()).hexdigest() == \
        MULTIBLOCK_SHA


async def test_symlink_inside_tree_is_written(gateway: str, tmp_path: Path) -> None:
    code, _, err = await run_cli("get", "-g", gateway, SYMLINK, "-o", "s")
    assert code == 0, err
    assert os.readlink(tmp_path / "s" / "bar") == "foo"
    assert (tmp_path / "s" / "foo").read_bytes() == b"content\n"


async def test_escaping_names_are_refused_and_nothing_is_left(gateway: str,
                                                              tmp_path: Path) -> None:
    code, _, err = await run_cli("get", "-g", gateway, OUTSIDE, "-o", "evil")
    assert code == 4, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    assert not (tmp_path.parent / "foo").exists()


async def test_missing_block_is_exit_4(gateway: str, tmp_path: Path) -> None:
    code, _, err = await run_cli("get", "-g", gateway, MISSING, "-o", "m.bin",
                                 "--idle-timeout", "2")
    assert code == 4, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


async def test_cat_of_a_directory_is_usage_error(gateway: str) -> None:
    code, out, err = await run_cli("cat", "-g", gateway, f"{MIXED}/subdir")
    assert code == 2, err
    assert out == b""


async def test_missing_name_is_exit_3(gateway: str) -> None:
    code, _, err = await run_cli("get", "-g", gateway, f"{MIXED}/subdir/nope.txt")
    assert code == 3, err


async def test_bad_targets_are_usage_errors() -> None:
    for bad in ("ipfs://notacid", f"{MIXED}/../etc", f"{MIXED}/a%00b", "/ipns/example.com"):
        code, _, err = await run_cli("get", "-g", "http://127.0.0.1:9", bad)
        assert code == 2, (bad, err)


async def test_dag_cbor_path_from_the_fault_gateway_honest(tmp_path: Path) -> None:
    store = DagStore()
    store.add_car(TC / "dir-with-dag-cbor-with-links.car")
    doc = "bafyreidy4q6mmetut5jzc54ambsfnatbyoujmwbfzyyolqw24majazwgha"
    async with fault_gateway(store) as gw:
        code, out, err = await run_cli("cat", "-g", gw.url, f"{doc}/files/single")
    assert code == 0, err
    assert out == b"hello world\n"


async def test_a_tree_of_many_files_fits_a_small_open_files_limit(tmp_path: Path) -> None:
    # 600 files with the open-files limit at 256 (macOS's default): only the file being
    # written may be open
    import resource
    import sys

    from carget.tree import add_paths
    from carget.unixfs.options import resolve_options

    src = tmp_path / "src"
    src.mkdir()
    for i in range(600):
        (src / f"f{i:04}.txt").write_bytes(f"file {i}\n".encode())
    root = add_paths([str(src)], resolve_options(cid_version=1), jobs=1)[0]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    with running_gateway([str(src)], cid_version=1) as url:
        with trio.fail_after(120):
            proc = await trio.run_process(
                [sys.executable, "-m", "carget", "get", "-g", url, str(root), "-o", "tree"],
                capture_stdout=True, capture_stderr=True, check=False, preexec_fn=limit)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    got = sorted(p.name for p in (tmp_path / "tree").iterdir())
    assert len(got) == 600 and (tmp_path / "tree" / "f0599.txt").read_bytes() == b"file 599\n"
