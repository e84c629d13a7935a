"""Differential test: random sizes and settings, carget's CID against the JS importer's
(ipfs-unixfs-importer configured to kubo's settings by tests/interop/js/import.mjs)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from carget.add import add_file

sys.path.insert(0, str(Path(__file__).parent.parent / "vectors"))
from kuboflags import import_options

SEED = 20261128
CASES = 40


def random_flags(rng: random.Random) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if rng.random() < 0.5:
        flags["cid-version"] = 1
    if rng.random() < 0.3:
        flags["raw-leaves"] = rng.random() < 0.5
    flags["chunker"] = f"size-{rng.choice([16, 100, 1000, 1024, 4096, 65536, 262144])}"
    if rng.random() < 0.3:
        flags["trickle"] = True
    if rng.random() < 0.25:
        flags["hash"] = rng.choice(["sha2-512", "sha3-256", "blake2b-256"])
        flags["cid-version"] = 1
    if rng.random() < 0.2 and flags.get("cid-version") == 1:
        flags["inline"] = True
        flags["inline-limit"] = rng.choice([16, 32, 64])
    if rng.random() < 0.3:
        flags["max-links"] = rng.choice([2, 3, 11, 174])
    return flags


def test_random_files_match_the_js_importer(tmp_path: Path, node_js: Path) -> None:
    rng = random.Random(SEED)
    jobs = []
    for i in range(CASES):
        flags = random_flags(rng)
        chunk = int(flags["chunker"].split("-")[1])
        size = rng.choice([0, 1, chunk - 1, chunk, chunk + 1, rng.randrange(0, 40 * chunk + 7)])
        size = min(size, 3_000_000)
        path = tmp_path / f"f{i}"
        path.write_bytes(rng.randbytes(size))
        jobs.append({"id": i, "path": str(path), "kubo": flags})
    out = subprocess.run(
        ["node", str(node_js / "import.mjs")],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(results) == CASES
    for job, res in zip(jobs, results, strict=True):
        assert "error" not in res, res
        opts = import_options(job["kubo"])
        got = add_file(job["path"], opts, jobs=2)
        assert str(got.cid) == res["root"], (job["kubo"], Path(job["path"]).stat().st_size)
