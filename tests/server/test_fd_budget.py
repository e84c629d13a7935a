"""Issue 12: with a low open-files limit, many parallel clients of a tree get whole answers
(or a clean 503 before the status line), never a torn body."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from servehelp import CURL, needs_curl

from carget.server.testing import serve_process

#: as in the issue: a tree of 100 files, 64 parallel clients, a low RLIMIT_NOFILE
FILES = 100
CLIENTS = 64
NOFILE = 256
#: each file above SPAN_MIN, so every leaf is sent from its own open file
FILE_BYTES = 66 * 1024


@needs_curl
def test_parallel_clients_under_a_low_fd_limit_get_whole_answers(tmp_path: Path) -> None:
    assert CURL is not None
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(FILES):
        (tree / f"f{i:03}.bin").write_bytes(os.urandom(FILE_BYTES))
    with serve_process(["--cid-version=1", str(tree)], nofile=NOFILE) as served:
        proc = served.proc
        target = f"{served.url}/ipfs/{served.root}?format=car&dag-scope=all"
        outs = [tmp_path / f"out{i}.car" for i in range(CLIENTS)]
        curls = [subprocess.Popen([CURL, "-sS", "--max-time", "120", "-o", str(o),
                                   "-w", "%{http_code}", target],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for o in outs]
        results = [(c.wait(150), c.communicate()) for c in curls]
        assert proc.poll() is None  # still serving
    whole = 0
    for (rc, (status, err)), out in zip(results, outs, strict=True):
        assert rc == 0, err  # curl 18: a torn body
        if status == b"503":
            continue  # refused before the status line: a clean answer
        assert status == b"200"
        from servehelp import car_cids

        assert len(car_cids(out.read_bytes())) == 1 + FILES  # every block, hash-checked
        whole += 1
    assert whole >= CLIENTS // 2


@pytest.mark.parametrize("nofile", [128, 256, 1024, 20000, 1 << 20])
def test_descriptor_plan_fits_the_limit(nofile: int) -> None:
    from carget.server._http import FD_RESERVE, MAX_REFUSING, STEP_FILES, fd_plan

    conns, files = fd_plan(1024, nofile)
    assert files >= STEP_FILES and 1 <= conns <= 1024
    if nofile >= 256:
        assert FD_RESERVE + conns + MAX_REFUSING + files <= nofile
