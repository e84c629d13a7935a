"""The fetcher's verifier alone (``DagVerifier.feed``: CAR parsing, SHA-256 of every
block, the DAG walk, file events), in one thread and one process, against hashlib's
SHA-256 of the same block bytes in the same run: what a ``carget get`` spends per byte
on its verifying thread, apart from the network, the output and the other threads.

For each leaf kind ``carget add`` makes (``legacy-cid-v0``, kubo's default: 256 KiB
dag-pb leaves; ``--cid-version=1``: 256 KiB raw leaves; ``unixfs-v1-2025``: 1 MiB raw
leaves) the file's DAG is laid out as a gateway sends it (DFS order) and fed two ways:

* ``1 MiB pieces``: as a Content-Length answer arrives, read 1 MiB at a time (a quarter
  of 256 KiB blocks straddle two pieces);
* ``kubo's chunks``: each section's length and CID as one piece and its block as the
  next, as kubo's gateway frames its chunked answers.

Each line gives the verifier's rate as a ratio to hashlib (best of ``--rounds``) and the
CPU seconds it spends beyond the hashing, per ``--mib``.

    python benchmarks/bench_verifier.py [--mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import make_file

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID
from carget.fetcher.verifier import DagVerifier
from carget.server.store import BlockStore
from carget.unixfs.node import block_links
from carget.unixfs.options import resolve_options

#: the leaf kinds, by label: resolve_options arguments
KINDS = {
    "legacy-cid-v0 (256 KiB dag-pb leaves)": {"profile": "legacy-cid-v0"},
    "--cid-version=1 (256 KiB raw leaves)": {"cid_version": 1},
    "unixfs-v1-2025 (1 MiB raw leaves)": {"profile": "unixfs-v1-2025"},
}


def dfs_sections(store: BlockStore, root: CID) -> list[tuple[bytes, bytes]]:
    """(section head, block) for every block of the DAG under ``root``, in DFS order."""
    out: list[tuple[bytes, bytes]] = []
    stack = [root]
    while stack:
        cid = stack.pop()
        data = store.get(cid)
        assert data is not None
        out.append((section_prefix(cid, len(data)), data))
        stack.extend(reversed(block_links(cid, data)))
    return out


def by_size(header: bytes, sections: list[tuple[bytes, bytes]], size: int) -> list[bytes]:
    car = b"".join([header, *(h + d for h, d in sections)])
    return [car[i:i + size] for i in range(0, len(car), size)]


def by_section(header: bytes, sections: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [header, *(p for h, d in sections for p in (h, d))]


def verify_seconds(root: CID, pieces: list[bytes]) -> float:
    v = DagVerifier(root)
    t = time.process_time()
    for piece in pieces:
        v.feed(piece)
    v.feed_eof()
    seconds = time.process_time() - t
    assert v.done
    return seconds


def hash_seconds(sections: list[tuple[bytes, bytes]]) -> float:
    t = time.process_time()
    for _, data in sections:
        hashlib.sha256(data).digest()
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="carget-bench-verifier-") as tmp:
        src = os.path.join(tmp, "src.bin")
        make_file(src, args.mib << 20)
        for label, kw in KINDS.items():
            store = BlockStore()
            root = store.add_paths([src], resolve_options(**kw))[0]  # type: ignore[arg-type]
            sections = dfs_sections(store, root)
            header = encode_header([root])
            for how, pieces in (("1 MiB pieces", by_size(header, sections, 1 << 20)),
                                ("kubo's chunks", by_section(header, sections))):
                base = min(hash_seconds(sections) for _ in range(args.rounds))
                got = min(verify_seconds(root, pieces) for _ in range(args.rounds))
                del pieces
                print(f"{label:<40} {how:<14} {base / got:5.2f}x hashlib  "
                      f"{got - base:6.3f} s beyond SHA-256 per {args.mib} MiB", flush=True)
            del sections, store


if __name__ == "__main__":
    main()
