"""When the output cannot be written (a full disk, a file too large for it): carget's own
error and exit code 1, no other gateway blamed or asked, and nothing left behind.

The ``carget`` child runs under ``RLIMIT_FSIZE``, which makes a file past the limit fail
with EFBIG as a full disk fails with ENOSPC; the gateway is real, on loopback."""

from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path

import pytest
import trio
from dagstore import DagStore
from faultgw import fault_gateway
from fetchhelp import CLI_TIMEOUT, content
from test_fetch_tree_failover import make_tree, store_tree

from carget.cid import CID
from carget.errors import OutputError
from carget.fetcher.outputs.file import FileOutput
from carget.fetcher.outputs.stdout import StdoutOutput
from carget.fetcher.verifier import FileData

SIZE = 600_000
#: any CID will do where nothing is verified
LEAF = CID.parse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")


#: argv: LIMIT ARGS...: ``carget ARGS`` with files capped at LIMIT bytes (SIGXFSZ ignored,
#: so a write past it fails with EFBIG instead of killing the process); set up in a
#: wrapper that execs, not in a preexec_fn, which is unsafe in a process with threads
LIMITED = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
os.execv(sys.executable, [sys.executable, "-m", "carget", *sys.argv[2:]])
"""


async def run_limited(limit: int, *args: str) -> tuple[int, str]:
    with trio.fail_after(CLI_TIMEOUT):
        proc = await trio.run_process([sys.executable, "-c", LIMITED, str(limit), *args],
                                      capture_stdout=True, capture_stderr=True, check=False)
    return proc.returncode, proc.stderr.decode(errors="replace")


async def get_without_room(out: Path, limit: int, *args: str) -> str:
    """``carget get ARGS`` into ``out`` (a new, empty folder) with files capped at ``limit``
    bytes; it must fail cleanly: exit 1, one line, and nothing left in ``out``."""
    out.mkdir()
    code, err = await run_limited(limit, "get", *args, "--progress=false")
    assert code == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert os.listdir(out) == []
    return err


@pytest.fixture
def tree(store: DagStore, tmp_path: Path) -> str:
    make_tree(tmp_path / "src")  # its largest file, a.bin, has 120,000 bytes
    return str(store_tree(store, tmp_path / "src"))


async def test_get_without_room_fails_before_fetching_and_leaves_nothing(
        store: DagStore, tmp_path: Path) -> None:
    cid = str(store.add_bytes(content(SIZE, seed=5), cid_version=1, chunker="size-16384"))
    out = tmp_path / "out"
    async with fault_gateway(store) as a, fault_gateway(store) as b:
        err = await get_without_room(out, SIZE // 2, "-g", a.url, "-g", b.url, cid,
                                     "-o", str(out / "x.bin"))
    assert err.startswith("carget: no room for 600000 bytes at "), err
    # the room is claimed before the file's bytes are asked for, from either gateway
    assert not [r for gw in (a, b) for r in gw.log if r.query.get("dag-scope") == "entity"]


async def test_get_whose_car_copy_runs_out_of_room_names_the_car(
        store: DagStore, tmp_path: Path) -> None:
    # the file fits under the limit, its --car copy (the same bytes plus framing) does
    # not: the error names the CAR, and neither the file nor the CAR is left
    cid = str(store.add_bytes(content(SIZE, seed=6), cid_version=1, chunker="size-16384"))
    out = tmp_path / "out"
    async with fault_gateway(store) as gw:
        err = await get_without_room(out, SIZE + 500, "-g", gw.url, cid, "-o",
                                     str(out / "x.bin"), "--car", str(out / "x.car"))
    assert err.startswith(f"carget: cannot write {out / 'x.car'}: File too large"), err


async def test_tree_get_whose_car_copy_runs_out_of_room_leaves_nothing(
        store: DagStore, tree: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with fault_gateway(store) as gw:
        # every file fits; the CAR of them all does not
        err = await get_without_room(out, 200_000, "-g", gw.url, tree, "-o",
                                     str(out / "tree"), "--car", str(out / "t.car"))
    assert err.startswith(f"carget: cannot write {out / 't.car'}: File too large"), err


async def test_tree_get_with_a_file_too_large_fails_cleanly(
        store: DagStore, tree: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with fault_gateway(store) as gw:
        # a.bin is past the limit; the smaller files fit
        err = await get_without_room(out, 100_000, "-g", gw.url, tree, "-o",
                                     str(out / "tree"))
    assert err.startswith(f"carget: cannot write {out / 'tree'}"), err


def test_a_file_output_reserves_its_blocks(tmp_path: Path) -> None:
    # allocated up front: a full disk shows at once, and writes skip delayed allocation
    out = FileOutput(str(tmp_path / "f.bin"), LEAF, 1 << 20)
    try:
        st = os.stat(out.partial)
        assert st.st_size == 1 << 20
        assert st.st_blocks * 512 >= 1 << 20
    finally:
        out.abandon(keep=False)


def test_a_failed_write_is_an_output_error(tmp_path: Path) -> None:
    cid = LEAF
    out = FileOutput(str(tmp_path / "f.bin"), cid, 4)
    try:
        ro = os.open(out.partial, os.O_RDONLY)
        os.dup2(ro, out._fd)  # the descriptor can no longer be written: EBADF
        os.close(ro)
        with pytest.raises(OutputError, match="cannot write"):
            out.handle([FileData("", 0, b"abcd", cid, None)])
    finally:
        out.abandon(keep=False)


class _Full(io.RawIOBase):
    def __init__(self, exc: OSError) -> None:
        self.exc = exc

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise self.exc


def test_cat_output_errors() -> None:
    cid = LEAF
    full = StdoutOutput(_Full(OSError(errno.ENOSPC, "No space left on device")))  # type: ignore[arg-type]
    with pytest.raises(OutputError, match="No space left on device"):
        full.handle([FileData("", 0, b"abcd", cid, None)])
    with pytest.raises(OutputError):
        full.write_bytes(b"abcd")
    gone = StdoutOutput(_Full(BrokenPipeError(errno.EPIPE, "Broken pipe")))  # type: ignore[arg-type]
    with pytest.raises(BrokenPipeError):  # the command line reports this one itself
        gone.handle([FileData("", 0, b"abcd", cid, None)])
