"""kubo v0.43.1's ``ipfs add --only-hash``, many calls in one run, as an oracle.

Shared by gen_vectors.py and the interop tests (tests/interop/test_go_kubo_add.py); not a
test itself. The binary is the one tests/interop/build_peers.py builds.

kubo only ever runs inside ``unshare -n`` (a network namespace holding nothing but
loopback), in one throwaway repository made with kubo's ``test`` profile (no bootstrap
peers, no mDNS, no NAT mapping, loopback addresses). All jobs run in one shell script, so
the repository is made once; a job that needs other ``Import.*`` settings (a config profile
such as ``unixfs-v1-2025``, or a single key) gets them written just before it, and the
next job that needs none gets the defaults back.

kubo 0.43 has no ``--profile`` flag on ``ipfs add``: IPIP-499 profiles are config profiles
(``ipfs config profile apply unixfs-v1-2025``), and the HAMT threshold and its size
estimation are config keys only (``Import.UnixFSHAMTDirectorySizeThreshold``,
``Import.UnixFSHAMTDirectorySizeEstimation``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from build_peers import Paths, peers_dir

__all__ = ["KUBO", "Job", "Result", "run_jobs"]

#: where build_peers.py puts kubo v0.43.1
KUBO = Paths(peers_dir()).kubo

_MARK = "@@carget-job@@"


@dataclass(frozen=True)
class Job:
    """One ``ipfs add --only-hash ARGS`` under a config profile and ``Import.*`` keys."""

    args: tuple[str, ...]
    profile: str | None = None
    config: tuple[tuple[str, Any], ...] = ()
    cwd: str | None = None
    #: False stores the blocks in the throwaway repository: kubo 0.43.1's
    #: ``ipfs add --only-hash -r --preserve-mode/--preserve-mtime DIR`` fails with
    #: "ipld: could not find <cid>" (MFS reads back a node --only-hash never stored)
    only_hash: bool = True
    #: a file to give kubo as its standard input
    stdin: str | None = None

    def setup(self) -> tuple[str | None, tuple[tuple[str, Any], ...]]:
        return self.profile, self.config


@dataclass
class Result:
    """kubo's answer: ``added <cid> <name>`` lines as (cid, name), or the error text."""

    rc: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""

    @property
    def root(self) -> str:
        """The last CID kubo printed (the root of the last argument, or the -w wrapper)."""
        if self.rc != 0 or not self.lines:
            raise AssertionError(f"kubo failed ({self.rc}): {self.error}")
        return self.lines[-1][0]

    def by_name(self) -> dict[str, str]:
        return {name: cid for cid, name in self.lines}


def _script(jobs: list[Job], ipfs: Path) -> str:
    q = shlex.quote
    lines = ["ip link set lo up", f"{q(str(ipfs))} init --profile=test >/dev/null"]
    current: tuple[str | None, tuple[tuple[str, Any], ...]] = (None, ())
    for i, job in enumerate(jobs):
        if job.setup() != current:
            # back to kubo's defaults, then the profile, then single keys
            lines.append(f"{q(str(ipfs))} config --json Import '{{}}' >/dev/null")
            if job.profile:
                lines.append(f"{q(str(ipfs))} config profile apply {q(job.profile)} >/dev/null")
            for key, value in job.config:
                lines.append(f"{q(str(ipfs))} config --json {q(key)} {q(json.dumps(value))}"
                             " >/dev/null")
            current = job.setup()
        cd = f"cd {q(job.cwd)} && " if job.cwd else ""
        args = " ".join(q(a) for a in job.args)
        lines.append(f"echo {_MARK} {i}")
        n = "--only-hash " if job.only_hash else ""
        feed = f" < {q(job.stdin)}" if job.stdin else " < /dev/null"
        lines.append(f"( {cd}{q(str(ipfs))} add {n}{args}{feed} ) 2>&1; echo {_MARK} rc $?")
    return "\n".join(lines) + "\n"


def run_jobs(jobs: list[Job], *, ipfs: Path = KUBO, timeout: float = 900) -> list[Result]:
    """Run every job in one ``unshare -n`` shell with one fresh repository.

    Raises RuntimeError when the namespace or the repository cannot be made.
    """
    with tempfile.TemporaryDirectory(prefix="kubo-oracle-") as work:
        env = {**os.environ, "IPFS_PATH": str(Path(work) / "repo")}
        p = subprocess.run(["unshare", "-n", "sh", "-c", _script(jobs, ipfs)], env=env,
                           capture_output=True, text=True, timeout=timeout)
    results: list[Result] = []
    blocks = p.stdout.split(_MARK + " ")
    if p.returncode != 0 or len(blocks) != 2 * len(jobs) + 1:
        raise RuntimeError(f"kubo oracle run failed ({p.returncode}):\n{p.stdout[-3000:]}\n"
                           f"{p.stderr[-3000:]}")
    for i in range(len(jobs)):
        body = blocks[1 + 2 * i].partition("\n")[2]
        rc = int(blocks[2 + 2 * i].split()[1])
        res = Result(rc)
        for line in body.splitlines():
            if line.startswith("added "):
                parts = line.split(" ", 2)
                res.lines.append((parts[1], parts[2] if len(parts) > 2 else ""))
            elif line.strip():
                res.error += line.strip() + "\n"
        results.append(res)
    return results


if __name__ == "__main__":
    # python3 tests/vectors/kubo_cli.py ARGS... : one `ipfs add -n ARGS`, for a quick look
    out = run_jobs([Job(tuple(sys.argv[1:]))])[0]
    print(json.dumps({"rc": out.rc, "lines": out.lines, "error": out.error}, indent=1))
