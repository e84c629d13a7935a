"""Re-verifying what an interrupted run left before a resumed one trusts it (blocking).

A journal vouches for byte ranges and carries the DAG nodes and leaf framings to check
them; nothing in it is believed until it hashes to the CIDs the root gives.
"""

from __future__ import annotations

import os

from ...cid import CID, RAW
from ...unixfs.node import decode_unixfs
from ..types import BlockSink

__all__ = ["recheck"]


def recheck(fd: int, cid: CID, offset: int, size: int, nodes: dict[str, bytes],
            frames: dict[str, tuple[bytes, bytes]], claimed: list[tuple[int, int]],
            good: list[tuple[int, int]],
            emit: BlockSink | None = None) -> None:
    """Append to ``good`` the ranges of the file ``fd`` under the DAG node ``cid`` (at
    ``offset``, ``size`` bytes) that ``claimed`` says were written AND whose leaves re-hash
    to the CIDs the DAG gives. ``nodes`` (inner blocks by CID text) and ``frames`` (the
    dag-pb bytes around a leaf's data) come from a journal: each node is checked against
    its CID before it is believed, so a tampered journal vouches for nothing. ``emit``
    gets every block so verified (``--car`` of a resumed run must hold them too). A loop
    in file order, not recursion: a file DAG from outside may be any depth."""
    stack = [(cid, offset, size)]
    while stack:
        cid, offset, size = stack.pop()
        whole = any(a <= offset and offset + size <= b for a, b in claimed)
        if not whole and not any(a < offset + size and offset < b for a, b in claimed):
            continue  # nothing of this subtree was written
        key = str(cid)
        block = nodes.get(key)
        if block is not None and cid.codec != RAW:
            try:
                cid.verify(block)
                node = decode_unixfs(cid, block)
            except Exception:  # a tampered journal: trust nothing below this node
                continue
            if node.links:
                if emit is not None:
                    emit(cid, block)
                stack.extend(reversed([(link.cid, offset + a, b - a)
                                       for link, a, b in node.file_children()]))
                continue
        if not whole:
            continue
        data = os.pread(fd, size, offset)
        if len(data) != size:
            continue
        prefix, suffix = frames.get(key, (b"", b""))
        leaf = prefix + data + suffix if key in frames else data
        try:
            cid.verify(leaf)
        except Exception:
            continue
        if emit is not None:
            emit(cid, leaf)
        good.append((offset, offset + size))
