"""Deterministic test content for the golden CID vectors (no dependencies).

``make_bytes(size, seed)`` is the SHAKE-256 extendable output of
``b"carget-vectors\\x00" + seed.to_bytes(8, "little")``, cut to ``size`` bytes.
It is a single C call in hashlib, so 50 MB takes a fraction of a second, and
``make_bytes(n, s)`` is always a prefix of ``make_bytes(m, s)`` for n <= m.

Every file in tests/vectors/files.json and dirs.json is ``make_bytes(size, seed)``
for the (size, seed) recorded next to it; ``write_tree`` rebuilds a directory
tree spec from dirs.json on disk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

_DOMAIN = b"carget-vectors\x00"


def make_bytes(size: int, seed: int) -> bytes:
    """Return ``size`` deterministic pseudo-random bytes for ``seed``."""
    if size < 0:
        raise ValueError("size must be >= 0")
    if size == 0:
        return b""
    return hashlib.shake_256(_DOMAIN + int(seed).to_bytes(8, "little")).digest(size)


def write_file(path: os.PathLike | str, size: int, seed: int) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(make_bytes(size, seed))
    return p


def write_tree(root: os.PathLike | str, entries: Iterable[Mapping]) -> Path:
    """Materialise a tree spec (as stored in dirs.json) under ``root``.

    Each entry is ``{"path": "a/b.txt", "kind": "file", "size": N, "seed": S}``,
    ``{"path": "a/empty", "kind": "dir"}`` or
    ``{"path": "a/link", "kind": "symlink", "target": "b.txt"}``.
    Paths are relative, '/'-separated, UTF-8. ``root`` itself is created.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for e in entries:
        p = root.joinpath(*e["path"].split("/"))
        kind = e["kind"]
        if kind == "file":
            write_file(p, e["size"], e["seed"])
        elif kind == "dir":
            p.mkdir(parents=True, exist_ok=True)
        elif kind == "symlink":
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(e["target"], p)
        else:
            raise ValueError(f"unknown entry kind {kind!r}")
    return root


def tree_entries(trees: Mapping[str, Mapping], name: str) -> list[dict]:
    """Resolve tree ``name`` of dirs.json's ``trees`` into a flat entry list.

    A tree is ``{"entries": [...]}``, optionally with ``"extends": BASE`` (the
    first ``"take"`` entries of tree BASE, all of them if ``take`` is absent,
    come before ``entries``). This keeps the large HAMT trees, which share
    most of their entries, small in the JSON.
    """
    t = trees[name]
    out: list[dict] = []
    if "extends" in t:
        base = tree_entries(trees, t["extends"])
        out.extend(base[: t["take"]] if "take" in t else base)
    out.extend(t.get("entries", []))
    return out


if __name__ == "__main__":  # tiny self-check / speed probe
    import time

    t = time.perf_counter()
    b = make_bytes(50_000_000, 1)
    print(len(b), f"{time.perf_counter() - t:.3f}s", b[:8].hex())
    assert make_bytes(1000, 1) == b[:1000]
    assert make_bytes(10, 2) != make_bytes(10, 1)
