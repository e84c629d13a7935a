"""Differential CIDs against kubo v0.43.1 live: ``carget add`` and ``ipfs add --only-hash``
print the same ``added <cid> <name>`` lines, for every flag carget's ``add`` has.

Every case runs the same argument list through both (kubo's flag names are carget's), except
that an IPIP-499 profile is ``--profile NAME`` for carget and a config profile
(``ipfs config profile apply NAME``) for kubo, which has no such flag on ``ipfs add``. A case
that kubo refuses must be refused by carget too (any error on both sides).

All kubo calls of this module run in one ``unshare -n`` shell with one repository
(tests/vectors/kubo_cli.py), carget runs in-process (click's CliRunner), so the module takes
seconds. The random differential draws ``CARGET_KUBO_CASES`` (default 40) file sizes and
flag sets from ``CARGET_KUBO_SEED`` (default fixed, so CI is reproducible; set it to explore).
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from gopeers import known_difference, require, require_isolation

from carget.cli import cli
from carget.errors import CargetError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "vectors"))
from content import make_bytes
from kubo_cli import Job, Result, run_jobs

SEED = int(os.environ.get("CARGET_KUBO_SEED", "4301"))
RANDOM_CASES = int(os.environ.get("CARGET_KUBO_CASES", "40"))

#: files under f/ by name -> size. Sizes sit on the edges: inline limits (32, 64, 128),
#: one chunk, 174 leaves of 16 bytes (2784) and 174*174 (484416), 1024 leaves of 1 KiB
FILES = {
    "e0": 0, "b1": 1, "b31": 31, "b32": 32, "b33": 33, "b64": 64, "b65": 65, "b100": 100,
    "b128": 128, "b129": 129, "k1000": 1000, "k2784": 2784, "k2785": 2785, "k4000": 4000,
    "c262143": 262143, "c262144": 262144, "c262145": 262145, "c600000": 600_000,
    "w484416": 484_416, "w484417": 484_417, "m1048576": 1 << 20, "m1048577": (1 << 20) + 1,
}
SMALL = ["e0", "b1", "b31", "b32", "b33", "b64", "b65", "b100", "b128", "b129", "k1000",
         "k2784", "k2785", "k4000"]
CHUNK = ["c262143", "c262144", "c262145", "c600000"]
WIDE = ["w484416", "w484417"]
MIB = ["m1048576", "m1048577"]

#: flag sets run over SMALL + CHUNK
FLAGSETS: dict[str, list[str]] = {
    "defaults": [],
    "cid-v0": ["--cid-version=0"],
    "cid-v1": ["--cid-version=1"],
    "v0-raw": ["--raw-leaves"],
    "v0-raw=true": ["--raw-leaves=true"],
    "v1-raw=false": ["--cid-version=1", "--raw-leaves=false"],
    "trickle": ["--trickle"],
    "trickle-v1": ["--trickle", "--cid-version=1"],
    "trickle-v0-raw": ["--trickle", "--raw-leaves"],
    "sha2-512": ["--hash=sha2-512"],
    "sha3-256": ["--hash=sha3-256"],
    "blake2b-256": ["--hash=blake2b-256"],
    "sha2-512-noraw": ["--hash=sha2-512", "--raw-leaves=false"],
    "sha2-256-v1": ["--hash=sha2-256", "--cid-version=1"],
    "inline": ["--inline"],
    "inline-v1": ["--inline", "--cid-version=1"],
    "inline-0": ["--inline", "--inline-limit=0"],
    "inline-64": ["--inline", "--inline-limit=64"],
    "inline-128-v1": ["--inline", "--inline-limit=128", "--cid-version=1"],
    "inline-limit-alone": ["--inline-limit=64"],
    "preserve-mode": ["--preserve-mode"],
    "preserve-mtime": ["--preserve-mtime"],
    "preserve-both-v1": ["--preserve-mode", "--preserve-mtime", "--cid-version=1"],
    "mode-0644": ["--mode=0644"],
    "mode-decimal-420": ["--mode=420"],
    "mode-04755-mtime-nsecs": ["--mode=04755", "--mtime=1700000000", "--mtime-nsecs=5"],
    "mtime-negative": ["--mtime=-5"],
    "mtime-nsecs-v1": ["--mtime=10", "--mtime-nsecs=999999999", "--cid-version=1"],
    "mode-over-preserve": ["--mode=0600", "--preserve-mode", "--preserve-mtime"],
    "size-1000": ["--chunker=size-1000"],
    "size-max": ["--chunker=size-2096896"],
    "size-max-v1": ["--chunker=size-2096896", "--cid-version=1"],
    "max-file-links-0": ["--max-file-links=0", "--chunker=size-16"],
    "profile-unixfs-v1-2025": ["--profile=unixfs-v1-2025"],
    "profile-unixfs-v0-2015": ["--profile=unixfs-v0-2015"],
    "profile-legacy-cid-v0": ["--profile=legacy-cid-v0"],
}

#: flag sets run over SMALL + WIDE: tiny chunks, so the 174-link boundary and the next
#: level are reached with small files
TINY: dict[str, list[str]] = {
    "size-16": ["--chunker=size-16"],
    "size-16-v1": ["--chunker=size-16", "--cid-version=1"],
    "size-16-trickle": ["--chunker=size-16", "--trickle"],
    "size-16-trickle-v1": ["--chunker=size-16", "--trickle", "--cid-version=1"],
    "size-16-links-2": ["--chunker=size-16", "--max-file-links=2"],
    "size-16-links-3-trickle": ["--chunker=size-16", "--max-file-links=3", "--trickle"],
    "size-16-links-175": ["--chunker=size-16", "--max-file-links=175"],
    "size-16-links-1024-v1": ["--chunker=size-16", "--max-file-links=1024", "--cid-version=1"],
    "size-16-inline": ["--chunker=size-16", "--inline"],
}

#: flag sets over MIB: the profile's 1024 links per node, reached with 1 KiB chunks
MIBSETS: dict[str, list[str]] = {
    "v1-2025-size-1024": ["--profile=unixfs-v1-2025", "--chunker=size-1024"],
    "v1-2025-size-1024-links-174": ["--profile=unixfs-v1-2025", "--chunker=size-1024",
                                    "--max-file-links=174"],
    "size-1": ["--chunker=size-1", "--cid-version=1"],
}

#: tree cases: flags for ``-r tree``
TREESETS: dict[str, list[str]] = {
    "r": ["-r"],
    "r-H": ["-r", "-H"],
    "r-H-v1": ["-r", "-H", "--cid-version=1"],
    "r-H-w": ["-r", "-H", "-w"],
    "r-H-trickle": ["-r", "-H", "--trickle"],
    "r-H-inline": ["-r", "-H", "--inline", "--cid-version=1"],
    "r-H-blake2b": ["-r", "-H", "--hash=blake2b-256"],
    "r-H-mode": ["-r", "-H", "--preserve-mode"],
    "r-H-mtime": ["-r", "-H", "--preserve-mtime"],
    "r-H-mode-mtime-v1": ["-r", "-H", "--preserve-mode", "--preserve-mtime",
                          "--cid-version=1"],
    "r-H-v1-2025": ["-r", "-H", "--profile=unixfs-v1-2025"],
    "r-H-v1-2025-mode": ["-r", "-H", "--profile=unixfs-v1-2025", "--preserve-mode",
                         "--raw-leaves=false"],
    "r-H-dirlinks-2": ["-r", "-H", "--max-directory-links=2"],
    "r-H-dirlinks-2-fanout-8": ["-r", "-H", "--max-directory-links=2",
                                "--max-hamt-fanout=8"],
    # tree/sub holds 4 entries with -H: at the limit it stays basic, one over it shards
    "r-H-dirlinks-4": ["-r", "-H", "--max-directory-links=4"],
    "r-H-dirlinks-3-fanout-16": ["-r", "-H", "--max-directory-links=3", "--max-hamt-fanout=16"],
    "r-H-w-dirlinks-1": ["-r", "-H", "-w", "--max-directory-links=1"],
    "r-no-empty-dirs": ["-r", "--empty-dirs=false"],
    "r-H-mode-0700": ["-r", "-H", "--mode=0700"],
    "r-H-mtime-nsecs": ["-r", "-H", "--mtime=1234567890", "--mtime-nsecs=999999999"],
    "r-H-w-mode-mtime": ["-r", "-H", "-w", "--mode=0755", "--mtime=42"],
    "r-H-no-empty-dirs": ["-r", "-H", "--empty-dirs=false"],
    "r-empty-dirs-true": ["-r", "--empty-dirs=true"],
}

#: every hash name go-multihash v0.2.3 (kubo 0.43.1's) knows, but identity (below): kubo
#: takes each that boxo's verifcid allows and go-multihash can compute, and refuses the rest
#: ("potentially insecure": md5, murmur3, shake-128, digests under 20 bytes; "no such hash
#: registered": keccak-224/384, blake2s but blake2s-256, ...). carget must do the same.
MULTIHASH_NAMES = [
    "sha1", "sha2-256", "sha2-512", "sha3", "sha3-224", "sha3-256", "sha3-384", "sha3-512",
    "dbl-sha2-256", "murmur3-x64-64", "keccak-224", "keccak-256", "keccak-384", "keccak-512",
    "blake3", "shake-128", "shake-256", "sha2-256-trunc254-padded", "x11", "md5",
    "poseidon-bls12_381-a2-fc1",
    *(f"blake2b-{8 * n}" for n in range(1, 65)), *(f"blake2s-{8 * n}" for n in range(1, 33)),
]
#: the hashes kubo takes beyond sha2-256, sha2-512, sha3-256 and blake2b-256 (which the flag
#: sets above cover), each also with dag-pb leaves, trickle and over a tree
MORE_HASHES = ["sha1", "sha3-224", "sha3-384", "sha3-512", "shake-256", "keccak-256",
               "keccak-512", "blake3", "dbl-sha2-256", "blake2b-160", "blake2b-512",
               "blake2s-256"]

#: (case id) -> why carget differs from kubo 0.43.1 (strict xfail)
KNOWN: dict[str, str] = {
    "hash-identity-tiny": "kubo 0.43.1 takes --hash=identity while each block, its MFS "
    "directory's too, fits in 128 bytes; carget refuses --hash=identity (use --inline)",
    "stdin-name-slash-wrapped": "kubo makes the directories a --stdin-name with a slash "
    "passes through inside the -w wrapper; carget refuses such a name",
    "nocopy-no-filestore": "kubo refuses --nocopy unless its repository has the filestore "
    "enabled; carget has no repository and gives the filestore's CIDs",
}

#: kubo's repository setting under which ``--nocopy`` is allowed
FILESTORE = (("Experimental.FilestoreEnabled", True),)

#: --ignore-rules-path file of the ignore cases (outside the tree it filters): a comment,
#: a blank line, a CRLF line, a negation, a directory name, and forms that match nothing
#: in kubo (a path, a trailing slash)
IGNORE_RULES = "# build output\r\n*.o\n\nbuild\r\n*.log\n!keep.log\nsub/a.txt\ndocs/\n"


@dataclass(frozen=True)
class Case:
    """One differential case: the same ``args`` (paths relative to the corpus) for both."""

    id: str
    args: tuple[str, ...]
    stdin: str | None = None  # a corpus file given as standard input
    config: tuple[tuple[str, object], ...] = ()  # kubo repository keys for this case

    def kubo_job(self, root: Path) -> Job:
        args, profile = [], None
        for a in self.args:
            if a.startswith("--profile="):
                profile = a.split("=", 1)[1]
            else:
                args.append(a)
        # kubo 0.43.1 `add --only-hash` of a directory (-r, -w) with mode or mtime fails
        # ("ipld: could not find"): those jobs store into the throwaway repository instead
        meta = {a for a in args if a.startswith(("--preserve-", "--mode", "--mtime"))}
        return Job(tuple(args), profile=profile, cwd=str(root), config=self.config,
                   only_hash=not (meta and {"-r", "-w"} & set(args)),
                   stdin=str(root / self.stdin) if self.stdin else None)


def _hamt_names(count: int, per_link: int, target: int, width: int) -> list[str]:
    """``count`` distinct names whose link costs (name bytes + ``per_link``) sum to
    ``target``: all ``width`` long but the last, which takes the rest."""
    last = target - (count - 1) * (width + per_link) - per_link
    assert 0 < last < 250, last
    names = [f"{i:0{width}d}" for i in range(count - 1)]
    return [*names, "z" * last]


#: HAMT boundary directories: name -> (entry count, bytes per link besides the name, target)
#: links estimation (kubo's default): name + CID bytes, 34 per CIDv0 link, 36 per CIDv1 link
#: of an empty raw leaf; block estimation (unixfs-v1-2025): a link to an empty raw leaf is
#: 8 bytes of framing + 36 CID bytes + the name, and the block has 4 bytes of Data
HAMT_DIRS = {
    **{f"hamt-v0-{side}": (4096, 34, 262144 + d) for side, d in
       (("under", -1), ("at", 0), ("over", 1))},
    **{f"hamt-v1-{side}": (4096, 36, 262144 + d) for side, d in
       (("under", -1), ("at", 0), ("over", 1))},
    **{f"hamt-block-{side}": (4096, 44, 262144 - 4 + d) for side, d in
       (("under", -1), ("at", 0), ("over", 1))},
}


def hamt_cases() -> list[Case]:
    out = []
    for side in ("under", "at", "over"):
        out += [Case(f"hamt-v0-{side}", ("-r", f"hamt-v0-{side}")),
                Case(f"hamt-v1-{side}", ("-r", "--cid-version=1", f"hamt-v1-{side}")),
                Case(f"hamt-block-{side}",
                     ("-r", "--profile=unixfs-v1-2025", f"hamt-block-{side}"))]
    out += [
        Case("hamt-over-fanout-8", ("-r", "--max-hamt-fanout=8", "hamt-v0-over")),
        Case("hamt-over-fanout-16-v1", ("-r", "--max-hamt-fanout=16", "--cid-version=1",
                                        "hamt-v1-over")),
        Case("hamt-over-fanout-1024", ("-r", "--max-hamt-fanout=1024", "hamt-v0-over")),
        Case("hamt-under-fanout-8", ("-r", "--max-hamt-fanout=8", "hamt-v0-under")),
        Case("hamt-under-dirlinks-4095", ("-r", "--max-directory-links=4095",
                                          "hamt-v0-under")),
        Case("hamt-under-dirlinks-4096", ("-r", "--max-directory-links=4096",
                                          "hamt-v0-under")),
        Case("hamt-under-dirlinks-4095-fanout-32",
             ("-r", "--max-directory-links=4095", "--max-hamt-fanout=32", "hamt-v0-under")),
        Case("hamt-over-dirlinks-0", ("-r", "--max-directory-links=0", "hamt-v0-over")),
        # under -w the directory is inside the wrapper, where kubo applies the limits
        Case("hamt-over-wrapped-fanout-8", ("-r", "-w", "--max-hamt-fanout=8", "hamt-v0-over")),
        Case("hamt-over-wrapped-fanout-1024-v1", ("-r", "-w", "--max-hamt-fanout=1024",
                                                  "--cid-version=1", "hamt-v1-over")),
        Case("hamt-under-wrapped-dirlinks-4095", ("-r", "-w", "--max-directory-links=4095",
                                                  "hamt-v0-under")),
        Case("hamt-under-wrapped-dirlinks-4096", ("-r", "-w", "--max-directory-links=4096",
                                                  "hamt-v0-under")),
        Case("hamt-block-at-wrapped", ("-r", "-w", "--profile=unixfs-v1-2025",
                                       "hamt-block-at")),
        Case("hamt-block-over-mtime", ("-r", "--profile=unixfs-v1-2025", "--preserve-mtime",
                                       "--raw-leaves=false", "hamt-block-under")),
    ]
    return out


def fixed_cases() -> list[Case]:
    cases = []
    for name, flags in FLAGSETS.items():
        cases.append(Case(name, (*flags, *(f"f/{n}" for n in SMALL + CHUNK))))
    for name, flags in TINY.items():
        cases.append(Case(name, (*flags, *(f"f/{n}" for n in SMALL + WIDE))))
    for name, flags in MIBSETS.items():
        cases.append(Case(name, (*flags, *(f"f/{n}" for n in MIB))))
    for name, flags in TREESETS.items():
        cases.append(Case(f"tree-{name}", (*flags, "tree")))
    cases += [
        Case("wrap-one", ("-w", "f/b100")),
        Case("wrap-two-v1", ("-w", "--cid-version=1", "f/b100", "f/k1000")),
        Case("wrap-empty-mode", ("-w", "--preserve-mode", "f/e0")),
        Case("wrap-dir-and-file", ("-w", "-r", "tree/sub", "f/b1")),
        Case("symlink-arg", ("tree/link-file",)),
        Case("symlink-arg-mtime", ("--preserve-mtime", "tree/link-file")),
        Case("dir-arg-dotted", ("-r", "tree/.hdir")),
        Case("tree-empty-dir", ("-r", "tree/empty")),
        Case("tree-empty-dir-no-empty-dirs", ("-r", "--empty-dirs=false", "tree/empty")),
        Case("wrap-empty-dir-no-empty-dirs", ("-r", "-w", "--empty-dirs=false", "tree/empty",
                                              "f/b1")),
        Case("wrap-onlydots-no-empty-dirs", ("-r", "-w", "--empty-dirs=false",
                                             "tree/onlydots", "tree/nest")),
        # kubo's refusals
        Case("err-fanout-12", ("--max-hamt-fanout=12", "f/b1")),
        Case("err-fanout-4", ("--max-hamt-fanout=4", "f/b1")),
        Case("err-fanout-2048", ("--max-hamt-fanout=2048", "f/b1")),
        Case("err-size-over-max", ("--chunker=size-2096897", "f/b1")),
        Case("err-inline-129", ("--inline", "--inline-limit=129", "f/b1")),
        Case("err-v0-sha512", ("--cid-version=0", "--hash=sha2-512", "f/b1")),
        Case("err-mode-raw", ("--preserve-mode", "--raw-leaves", "f/b1")),
        Case("err-mtime-raw-v1", ("--preserve-mtime", "--raw-leaves=true", "--cid-version=1",
                                  "f/b1")),
        Case("err-size-0", ("--chunker=size-0", "f/b1")),
        Case("stdin", (), stdin="f/k1000"),
        Case("stdin-v1-mode", ("--cid-version=1", "--mode=0644"), stdin="f/k1000"),
        Case("stdin-mtime", ("--mtime=5", "-"), stdin="f/c262145"),
        Case("stdin-preserve", ("--preserve-mode", "--preserve-mtime", "-"), stdin="f/b1"),
        Case("stdin-and-a-file", ("f/b1", "-"), stdin="f/k1000"),
        Case("stdin-wrapped", ("-w", "f/b1", "-"), stdin="f/k1000"),
        *hash_cases(),
        Case("err-hash-sha2-384", ("--hash=sha2-384", "f/b1")),  # not a multihash name
        Case("err-nsecs-alone", ("--mtime-nsecs=5", "f/b1")),
        Case("err-nsecs-over", ("--mtime=10", "--mtime-nsecs=1000000000", "f/b1")),
        Case("err-custom-mode-raw", ("--mode=0644", "--raw-leaves", "f/b1")),
        Case("wrap-files-mode", ("-w", "--mode=0640", "--mtime=7", "f/b1", "f/k1000")),
        Case("err-hash-unknown", ("--hash=nope", "f/b1")),
    ]
    return [*cases, *hamt_cases(), *walk_cases(), *nocopy_cases()]


def hash_cases() -> list[Case]:
    """Every --hash name (and some upper-cased, as kubo lower-cases them), the ones kubo
    takes also with dag-pb leaves, trickle and over a tree."""
    three = ("f/e0", "f/k1000", "f/c262145")  # an empty leaf, one leaf, two and a parent
    out = [Case(f"hash-{h}", (f"--hash={h}", *three)) for h in MULTIHASH_NAMES]
    out += [Case(f"hash-{h}-pb", (f"--hash={h}", "--raw-leaves=false", *three))
            for h in MORE_HASHES]
    out += [Case(f"hash-{h}-trickle", (f"--hash={h}", "--trickle", "--chunker=size-100",
                                       "f/k2785")) for h in MORE_HASHES]
    out += [Case(f"tree-r-H-w-{h}", ("-r", "-H", "-w", f"--hash={h}", "tree"))
            for h in MORE_HASHES]
    out += [
        Case("hash-SHA3-384", ("--hash=SHA3-384", "f/k1000")),
        Case("hash-Blake3", ("--hash=Blake3", "f/k1000")),
        Case("hash-keccak-256-inline", ("--hash=keccak-256", "--inline", *three)),
        Case("hash-blake3-v1-2025", ("--hash=blake3", "--profile=unixfs-v1-2025",
                                     "--chunker=size-1024", "f/m1048577")),
        Case("hash-identity-tiny", ("--hash=identity", "f/b1")),
        Case("err-hash-identity", ("--hash=identity", "f/k1000")),
        Case("err-v0-blake3", ("--cid-version=0", "--hash=blake3", "f/b1")),
        Case("err-v0-sha1", ("--cid-version=0", "--hash=sha1", "f/b1")),
    ]
    return out


def walk_cases() -> list[Case]:
    """--dereference-symlinks / --dereference-args over symlink chains, --ignore and
    --ignore-rules-path (negation, directories, kubo's name-only matching), --stdin-name,
    --silent, and the storing and providing flags that --only-hash ignores or refuses."""
    return [
        Case("deref-tree", ("-r", "--dereference-symlinks", "links")),
        Case("deref-tree-H-v1", ("-r", "-H", "--dereference-symlinks", "--cid-version=1",
                                 "links")),
        Case("deref-tree-w", ("-r", "-w", "--dereference-symlinks", "links", "links/chain3")),
        Case("deref-tree-mtime", ("-r", "--dereference-symlinks", "--preserve-mtime",
                                  "--preserve-mode", "links")),
        Case("deref-arg-chain", ("--dereference-symlinks", "links/chain3")),
        Case("deref-arg-dir-chain", ("-r", "--dereference-symlinks", "links/dirchain")),
        Case("deref-args-only", ("-r", "--dereference-args", "links", "links/chain3")),
        Case("deref-args-dir-link", ("-r", "--dereference-args", "links/dirlink")),
        Case("deref-args-name-twice", ("--dereference-args", "links/chain3",
                                       "links/target.txt")),
        Case("no-deref-links", ("-r", "links")),
        Case("err-deref-dangling", ("-r", "--dereference-symlinks", "dangling")),
        Case("dangling-kept-without-deref", ("-r", "--dereference-args", "dangling")),
        Case("err-deref-loop", ("-r", "--dereference-symlinks", "loop")),
        Case("err-deref-dir-without-r", ("--dereference-symlinks", "links/dirlink")),
        Case("ignore-glob", ("-r", "--ignore=*.log", "ign")),
        Case("ignore-negation", ("-r", "--ignore=*.log", "--ignore=!keep.log", "ign")),
        Case("ignore-negation-then-again", ("-r", "--ignore=*.log", "--ignore=!keep.log",
                                            "--ignore=k*", "ign")),
        Case("ignore-directory-name", ("-r", "--ignore=build", "ign")),
        Case("ignore-directory-slash", ("-r", "--ignore=build/", "ign")),
        Case("ignore-path-form", ("-r", "--ignore=sub/a.txt", "ign")),
        Case("ignore-double-star", ("-r", "--ignore=**/a.txt", "ign")),
        Case("ignore-under-star", ("-r", "--ignore=sub/**", "ign")),
        Case("ignore-question-mark", ("-r", "--ignore=q?", "--ignore=a?txt", "ign")),
        Case("ignore-class", ("-r", "--ignore=[ab].txt", "ign")),
        Case("ignore-hidden-negation", ("-r", "--ignore=.*", "--ignore=!.keep", "ign")),
        Case("ignore-hidden-H", ("-r", "-H", "--ignore=*.log", "--ignore=!.hidden.log",
                                 "ign")),
        Case("ignore-top-argument", ("-r", "--ignore=ign", "ign")),
        Case("ignore-comment-and-escape", ("-r", "--ignore=#a.txt", "--ignore=\\#b.txt",
                                           "--ignore= c.tmp ", "ign")),
        Case("ignore-rules-file", ("-r", "--ignore-rules-path=ign.rules", "ign")),
        Case("ignore-rules-file-and-flag", ("-r", "--ignore-rules-path=ign.rules",
                                            "--ignore=!build", "--ignore=*.tmp", "ign")),
        Case("ignore-wrapped", ("-r", "-w", "--ignore=*.txt", "ign", "f/b1")),
        Case("ignore-empties-dir", ("-r", "--empty-dirs=false", "--ignore=*.o", "ign")),
        Case("err-ignore-rules-missing", ("-r", "--ignore-rules-path=nope.rules", "ign")),
        Case("stdin-name", ("--stdin-name=named.bin",), stdin="f/k1000"),
        Case("stdin-name-dash", ("--stdin-name", "named.bin", "-"), stdin="f/k1000"),
        Case("stdin-name-wrapped", ("-w", "--stdin-name=named.bin"), stdin="f/k1000"),
        Case("stdin-name-wrapped-sorted-first", ("-w", "--stdin-name=a0", "f/b1", "f/k1000",
                                                 "-"), stdin="f/c262145"),
        Case("stdin-name-wrapped-sorted-last", ("-w", "--stdin-name=zz", "f/k1000", "-"),
             stdin="f/b1"),
        Case("stdin-name-sorted", ("--stdin-name=c0", "f/b1", "f/k1000", "-"), stdin="f/b1"),
        Case("stdin-name-slash-wrapped", ("-w", "--stdin-name=a/b"), stdin="f/b1"),
        Case("stdin-name-unwrapped-file", ("--stdin-name=x", "f/b1")),
        Case("pin-false-fscache", ("--pin=false", "--fscache", "f/k1000", "f/c262145")),
        Case("pin-bare", ("--pin", "f/b1")),
        Case("fast-provide", ("--fast-provide-root=false", "--fast-provide-dag",
                              "--fast-provide-wait=true", "f/b1")),
        # kubo's --silent drops the lines of files, symlinks and stdin, never directories'
        Case("silent-files", ("--silent", "f/b1", "f/c262145")),
        Case("silent-tree", ("--silent", "-r", "-H", "tree")),
        Case("silent-wrapped", ("--silent", "-r", "-w", "tree/sub", "f/b1", "-"),
             stdin="f/k1000"),
        Case("err-pin-name", ("--pin-name=x", "f/b1")),
        Case("err-to-files", ("--to-files=/x", "f/b1")),
    ]


def nocopy_cases() -> list[Case]:
    """--nocopy, with kubo's filestore enabled (it refuses the flag otherwise)."""
    files = tuple(f"f/{n}" for n in SMALL + CHUNK)
    flagsets = {
        "nocopy": [],
        "nocopy-v1": ["--cid-version=1"],
        "nocopy-v0": ["--cid-version=0"],
        "nocopy-raw-true": ["--raw-leaves=true"],
        "nocopy-trickle": ["--trickle"],
        "nocopy-size-1000": ["--chunker=size-1000"],
        "nocopy-inline": ["--inline"],
        "nocopy-sha3": ["--hash=sha3-256"],
        "nocopy-v1-2025": ["--profile=unixfs-v1-2025"],
    }
    cases = [Case(name, ("--nocopy", *flags, *files), config=FILESTORE)
             for name, flags in flagsets.items()]
    return [
        *cases,
        Case("nocopy-tree", ("--nocopy", "-r", "-H", "tree"), config=FILESTORE),
        Case("nocopy-wrapped", ("--nocopy", "-w", "f/b1", "f/c262145"), config=FILESTORE),
        Case("nocopy-stdin", ("--nocopy",), stdin="f/c262145", config=FILESTORE),
        # (the oracle's reset between jobs covers Import.* only: say it outright)
        Case("nocopy-no-filestore", ("--nocopy", "f/b1"),
             config=(("Experimental.FilestoreEnabled", False),)),
        Case("err-nocopy-raw-false", ("--nocopy", "--raw-leaves=false", "f/b1"),
             config=FILESTORE),
        Case("err-nocopy-mode", ("--nocopy", "--preserve-mode", "f/b1"), config=FILESTORE),
        Case("err-nocopy-mtime", ("--nocopy", "--mtime=5", "f/b1"), config=FILESTORE),
        Case("err-nocopy-v0-2015", ("--nocopy", "--profile=unixfs-v0-2015", "f/b1"),
             config=FILESTORE),
    ]


def _write_walk_trees(root: Path) -> None:
    """links/: symlink chains to a file and to directories (relative, absolute, through
    a parent, hidden link names, a hidden target); dangling/: a link to nothing;
    loop/: a link back to an ancestor; ign/ and ign.rules: names for the ignore rules."""
    links = root / "links"
    (links / "real" / "inner").mkdir(parents=True)
    (links / "target.txt").write_bytes(make_bytes(3000, 77))
    (links / ".secret").write_bytes(b"hidden target\n")
    (links / "real" / "r.bin").write_bytes(make_bytes(300_000, 78))
    (links / "real" / "inner" / "deep.txt").write_bytes(b"deep\n")
    (links / "chain1").symlink_to("target.txt")
    (links / "chain2").symlink_to("chain1")
    (links / "chain3").symlink_to("chain2")
    (links / "abs").symlink_to(links / "target.txt")
    (links / "dirlink").symlink_to("real")
    (links / "dirchain").symlink_to("dirlink")
    (links / "real" / "inner" / "up").symlink_to("../../target.txt")
    (links / "to-secret").symlink_to(".secret")
    (links / ".hidden-link").symlink_to("target.txt")
    (root / "dangling").mkdir()
    (root / "dangling" / "ok").write_bytes(b"ok\n")
    (root / "dangling" / "bad").symlink_to("nowhere")
    (root / "loop" / "sub").mkdir(parents=True)
    (root / "loop" / "f").write_bytes(b"f\n")
    (root / "loop" / "sub" / "up").symlink_to("..")
    ign = root / "ign"
    for rel in ("build/x.o", "build/keep.log", "sub/a.txt", "sub/deeper/a.txt",
                "docs/README.md", "obj/y.o"):
        (ign / rel).parent.mkdir(parents=True, exist_ok=True)
        (ign / rel).write_bytes(rel.encode())
    for name in ("a.txt", "b.txt", "c.tmp", "run.log", "keep.log", ".hidden.log", ".keep",
                 "q?", "aXtxt", "#a.txt", "#b.txt", "z.o"):
        (ign / name).write_bytes(name.encode() + b"\n")
    (root / "ign.rules").write_bytes(IGNORE_RULES.encode())


def random_cases(rng: random.Random, count: int) -> tuple[list[Case], dict[str, int]]:
    """Random sizes (mostly small, some over a few chunks) and random flag sets."""
    cases, sizes = [], {}
    for i in range(count):
        size = rng.choice([rng.randrange(0, 300), rng.randrange(0, 5000),
                           rng.randrange(0, 1_200_000), rng.randrange(0, 3_000_000)])
        name = f"r{i:03d}"
        sizes[name] = size
        flags: list[str] = []
        if rng.random() < 0.15:
            flags.append(f"--profile={rng.choice(['unixfs-v1-2025', 'unixfs-v0-2015'])}")
        if rng.random() < 0.4:
            flags.append(f"--cid-version={rng.choice([0, 1])}")
        if rng.random() < 0.3:
            flags.append(rng.choice(["--raw-leaves", "--raw-leaves=false", "--raw-leaves=true"]))
        if rng.random() < 0.6:
            low = rng.choice([1, 16, 100, 1000, 10_000])
            flags.append(f"--chunker=size-{rng.randrange(low, low * 30)}")
        if rng.random() < 0.3:
            flags.append("--trickle")
        if rng.random() < 0.25:
            hashes = ["sha2-512", "sha3-256", "blake2b-256", *MORE_HASHES]
            flags.append(f"--hash={rng.choice(hashes)}")
        if rng.random() < 0.2:
            flags += ["--inline", f"--inline-limit={rng.randrange(0, 129)}"]
        if rng.random() < 0.3:
            flags.append(f"--max-file-links={rng.randrange(2, 300)}")
        if rng.random() < 0.1:
            flags.append(rng.choice(["--preserve-mode", "--preserve-mtime",
                                     f"--mode=0{rng.randrange(0o10000):o}",
                                     f"--mtime={rng.randrange(-10**9, 10**10)}"]))
        if size // 16 > 20_000 and any(f.startswith("--chunker=size-") for f in flags):
            size = min(size, 20_000 * 16)
            sizes[name] = size
        rng.shuffle(flags)
        cases.append(Case(f"random-{i:03d}", (*flags, f"r/{name}")))
    return cases, sizes


def _write_tree(root: Path, rng: random.Random) -> None:
    """Nested dirs, dot-files and a dot-dir, symlinks (to a file, a dir, dangling,
    absolute), an empty dir and file, unicode names; modes and nanosecond mtimes set."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hdir").mkdir()
    (root / "empty").mkdir()
    (root / "onlydots").mkdir()  # empty without -H
    (root / "onlydots" / ".z").write_bytes(b"z")
    (root / "nest" / "empty2").mkdir(parents=True)  # holds only an empty directory
    files = {"a.txt": 10, "é日本.bin": 5000, "sub/b": 300_000, "sub/deeper/c": 0,
             "sub/.hidden": 7, ".hdir/x": 40, "space name": 1, "f": 33}
    for i, (rel, size) in enumerate(files.items()):
        p = root / rel
        p.write_bytes(make_bytes(size, 900 + i))
        os.chmod(p, [0o644, 0o755, 0o600, 0o4755, 0o640][i % 5])
    (root / "link-file").symlink_to("a.txt")
    (root / "link-dir").symlink_to("sub")
    (root / "sub" / "dangling").symlink_to("../nowhere")
    (root / "abs").symlink_to("/etc/hostname")
    os.chmod(root / "sub", 0o750)
    os.chmod(root / ".hdir", 0o700)
    walk = sorted(root.rglob("*"), key=lambda p: -len(p.parts))  # deepest first
    for p in [*walk, root]:
        ns = 1_600_000_000 * 10**9 + rng.randrange(10**9) * (rng.random() < 0.7)
        os.utime(p, ns=(ns, ns), follow_symlinks=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("kubo-add")
    rng = random.Random(SEED)
    (root / "f").mkdir()
    for i, (name, size) in enumerate(FILES.items()):
        (root / "f" / name).write_bytes(make_bytes(size, 4300 + i))
        os.utime(root / "f" / name, ns=(1_700_000_000_123_456_789,) * 2)
    os.chmod(root / "f" / "b1", 0o755)
    _write_tree(root / "tree", rng)
    _write_walk_trees(root)
    for name, (count, per_link, target) in HAMT_DIRS.items():
        d = root / name
        d.mkdir()
        for n in _hamt_names(count, per_link, target, 64 - per_link):
            (d / n).write_bytes(b"")
    rand, sizes = random_cases(rng, RANDOM_CASES)
    (root / "r").mkdir()
    for name, size in sizes.items():
        (root / "r" / name).write_bytes(rng.randbytes(size))
    return root, [*fixed_cases(), *rand]


def _carget(root: Path, case: Case) -> Result:
    old = os.getcwd()
    os.chdir(root)
    try:
        data = (root / case.stdin).read_bytes() if case.stdin else b""
        res = CliRunner().invoke(cli, ["add", *case.args], input=data)
    finally:
        os.chdir(old)
    out = Result(res.exit_code)
    for line in res.output.splitlines():
        if line.startswith("added "):
            parts = line.split(" ", 2)
            out.lines.append((parts[1], parts[2] if len(parts) > 2 else ""))
        elif line.strip():
            out.error += line + "\n"
    if isinstance(res.exception, CargetError):
        out.rc, out.error = 1, str(res.exception)  # what carget.cli.main prints, exit != 0
    elif res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return out


@pytest.fixture(scope="module")
def answers(corpus: tuple[Path, list[Case]]) -> dict[str, tuple[Result, Result]]:
    """{case id: (kubo's result, carget's result)}; kubo once for the whole module."""
    require("kubo")
    require_isolation()
    root, cases = corpus
    kubo = run_jobs([c.kubo_job(root) for c in cases])
    return {c.id: (k, _carget(root, c)) for c, k in zip(cases, kubo, strict=True)}


def _ids() -> list[str]:
    rand, _ = random_cases(random.Random(SEED), RANDOM_CASES)
    # the corpus fixture consumes the same generator after the tree's mtimes; the ids only
    # depend on the count
    return [c.id for c in fixed_cases()] + [c.id for c in rand]


@pytest.mark.parametrize("case_id", [
    pytest.param(i, marks=[known_difference(KNOWN[i])] if i in KNOWN else []) for i in _ids()
])
def test_add_matches_kubo(case_id: str, answers: dict[str, tuple[Result, Result]],
                          corpus: tuple[Path, list[Case]]) -> None:
    kubo, mine = answers[case_id]
    args = next(c.args for c in corpus[1] if c.id == case_id)
    where = f"ipfs add -n {' '.join(args)}"
    if kubo.rc != 0:
        assert mine.rc != 0, f"{where}: kubo refuses ({kubo.error.strip()}), carget prints " \
                             f"{mine.lines[-1:]}"
        return
    assert mine.rc == 0, f"{where}: kubo gives {kubo.root}, carget fails: {mine.error}"
    assert mine.by_name() == kubo.by_name(), where
    assert mine.lines == kubo.lines, f"{where}: same CIDs, another order"  # -Q prints the last


def test_hamt_dirs_sit_on_the_boundary(corpus: tuple[Path, list[Case]]) -> None:
    """The boundary trees measure what their names say, by carget's own estimates."""
    from carget.cid import CID
    from carget.unixfs.directory import DirectoryBuilder
    from carget.unixfs.options import DEFAULT, UNIXFS_V1_2025

    v0 = CID.parse("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
    v1 = CID.parse("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    for name, (_, _, target) in HAMT_DIRS.items():
        opts, cid = (UNIXFS_V1_2025, v1) if "block" in name else \
            (DEFAULT, v1 if "v1" in name else v0)
        b = DirectoryBuilder(opts)
        for entry in (corpus[0] / name).iterdir():
            b.add(entry.name, cid, 0)
        want = target + 4 if "block" in name else target
        assert b.estimate == want, name
