"""The UnixFS exporter: the importer in reverse, pulling blocks on demand.

Everything here works over one :class:`~carget.blocksource.BlockSource` (``get(cid)``
gives a block's bytes, already verified by whoever fetched them, or None); a block the
walk needs and the source lacks raises :class:`~carget.errors.IncompleteDAG`
(:func:`carget.blocksource.require`), and the source's own errors pass through unchanged.
Only the blocks that an operation needs are requested: resolving a path touches the
directories and HAMT shards on the way; reading a byte range descends only into children
whose ``blocksizes`` range overlaps it.

Sizes are checked against what blocks really hold: a child whose bytes (raw length, or
declared ``filesize``) differ from its parent's ``blocksizes`` entry, or a file whose
leaves hold fewer or more bytes than declared, raises :class:`UnixFSError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..blocksource import BlockSource, require
from ..cid import CID, RAW
from ..errors import UnixFSError, UsageError
from ..names import NameSet, check_entry_name
from .node import Node, decode_unixfs
from .walk import check_hamt_depth, file_children_in, path_step

__all__ = [
    "DirEntry",
    "Exporter",
    "Resolved",
    "split_path",
]

@dataclass(frozen=True, slots=True)
class DirEntry:
    """One entry of a directory listing (plain or HAMT)."""

    name: str
    cid: CID
    tsize: int | None


@dataclass(slots=True)
class Resolved:
    """Where a path led: the target's CID and node, every block read on the way (root
    first, target last; for the trustless "pathing" block list), and the raw link name of
    the last hop (a HAMT entry's name carries its bucket prefix)."""

    cid: CID
    node: Node
    visited: list[CID] = field(default_factory=list)
    link_name: str | None = None


def split_path(path: str | Sequence[str]) -> list[str]:
    """Path segments: "a/b//c/" -> ["a", "b", "c"]; a sequence is taken as is."""
    if isinstance(path, str):
        return [seg for seg in path.split("/") if seg]
    return list(path)


class Exporter:
    """Pull-based reader of UnixFS DAGs over a block source."""

    def __init__(self, source: BlockSource) -> None:
        self.source = source

    def block(self, cid: CID) -> bytes | memoryview:
        """A block's bytes; identity CIDs answer from the CID itself. Raises
        :class:`IncompleteDAG` when the source lacks it."""
        return require(self.source, cid)

    def node(self, cid: CID) -> Node:
        """Fetch and decode one block as UnixFS. Raises DagPBError/UnixFSError when it is
        malformed, UsageError for a codec that is not UnixFS, and IncompleteDAG for a
        missing block."""
        return decode_unixfs(cid, self.block(cid))

    # --- paths ------------------------------------------------------------------------

    def resolve(self, root: CID, path: str | Sequence[str] = ()) -> Resolved:
        """Follow ``path`` from ``root`` through directories and HAMT shards.

        Raises :class:`~carget.errors.PathNotFound` when a segment is absent or a
        non-directory is in the way, :class:`~carget.errors.DuplicateName` when a
        directory lists it twice, and what :meth:`node` raises.
        """
        node = self.node(root)
        res = Resolved(root, node, [root])
        segments = split_path(path)
        seg = depth = 0
        cid = root
        while seg < len(segments):
            step = path_step(cid, self.block(cid), segments, seg, depth, node)
            assert step.cid is not None  # only dag-cbor paths end inside a block
            cid, seg, depth = step.cid, step.seg, step.hamt_depth
            node = self.node(cid)
            if depth:  # a HAMT sub-shard: one more block of the proof, same segment
                res.visited.append(cid)
                continue
            res.link_name = step.link_name
            res.cid, res.node = cid, node
            res.visited.append(cid)
        return res

    # --- directories ------------------------------------------------------------------

    def list_dir(self, cid: CID, node: Node | None = None,
                 visited: list[CID] | None = None) -> Iterator[DirEntry]:
        """The entries of a directory or HAMT shard (all sub-shards walked, in link order),
        each name checked by :mod:`carget.names`.

        Raises :class:`UsageError` if ``cid`` is not a directory; sub-shards that are not
        shards raise :class:`UnixFSError`; an unsafe name raises
        :class:`~carget.errors.UnsafePathError` and a name listed twice (in a HAMT: across
        its shards) :class:`DuplicateName`. Sub-shard CIDs are appended to ``visited``.
        """
        node = node or self.node(cid)
        names = NameSet(cid)
        if node.kind == "directory":
            for link in node.links:
                if link.name is None:
                    raise UnixFSError(f"directory {cid} has a link without a name")
                names.add(check_entry_name(link.name, cid))
                yield DirEntry(link.name, link.cid, link.tsize)
            return
        if node.kind != "hamt":
            raise UsageError(f"{cid} is a {node.kind}, not a directory")
        for entry in self._hamt_entries(node, 0, visited):
            names.add(check_entry_name(entry.name, cid))
            yield entry

    def _hamt_entries(self, shard: Node, depth: int,
                      visited: list[CID] | None) -> Iterator[DirEntry]:
        check_hamt_depth(shard, depth, shard.cid)
        for name, link in shard.hamt_links():
            if name is not None:
                yield DirEntry(name, link.cid, link.tsize)
                continue
            sub = self.node(link.cid)
            if sub.kind != "hamt":
                raise UnixFSError(f"HAMT sub-shard link {link.cid} is a {sub.kind}")
            if visited is not None:
                visited.append(link.cid)
            # a sub-shard's entries come where its link sits, as go-unixfs lists them
            yield from self._hamt_entries(sub, depth + 1, visited)

    # --- files ------------------------------------------------------------------------

    def file_size(self, cid: CID, node: Node | None = None) -> int:
        node = node or self.node(cid)
        if node.kind not in ("raw", "file"):
            raise UsageError(f"{cid} is a {node.kind}, not a file")
        return node.filesize

    def read_file(self, cid: CID, start: int = 0, end: int | None = None,
                  node: Node | None = None) -> Iterator[bytes | memoryview]:
        """The file's bytes in ``[start, end)`` (``end`` None: to the end), in order, as
        chunks; only the blocks that hold the range are requested.

        Raises :class:`UsageError` if ``cid`` is not a file or the range is negative,
        :class:`UnixFSError` when a block holds a different number of bytes than its parent
        declares, and :class:`IncompleteDAG` for missing blocks.
        """
        if start < 0 or (end is not None and end < start):
            raise UsageError(f"invalid byte range {start}:{end}")
        if cid.codec == RAW and node is None:
            data = self.block(cid)
            yield memoryview(data)[start:end]
            return
        node = node or self.node(cid)
        if node.kind not in ("raw", "file"):
            raise UsageError(f"{cid} is a {node.kind}, not a file")
        size = node.filesize
        end = size if end is None else min(end, size)
        if start >= end:
            return
        # stack of (cid, node or None, absolute file offset, expected size)
        stack: list[tuple[CID, Node | None, int, int]] = [(cid, node, 0, size)]
        while stack:
            c, n, off, want = stack.pop()
            if n is None and c.codec == RAW:
                data = self.block(c)
                if len(data) != want:
                    raise UnixFSError(f"raw leaf {c} holds {len(data)} bytes, its parent "
                                      f"says {want}")
                lo, hi = max(start - off, 0), min(end - off, want)
                yield memoryview(data)[lo:hi]
                continue
            n = n or self.node(c)
            if n.kind not in ("raw", "file"):
                raise UnixFSError(f"file DAG links to a {n.kind} ({c})")
            if n.filesize != want:
                raise UnixFSError(f"file node {c} holds {n.filesize} bytes, its parent "
                                  f"says {want}")
            if n.kind == "raw":
                yield n.data[max(start - off, 0) : min(end - off, want)]
                continue
            if n.data:
                lo, hi = max(start - off, 0), min(end - off, len(n.data))
                if lo < hi:
                    yield n.data[lo:hi]
            # zero-length children are skipped (they cannot hold range bytes)
            stack.extend(reversed([(lk.cid, None, a, b - a) for lk, a, b
                                   in file_children_in(n, off, (start, end - 1)) if b > a]))

    def read_all(self, cid: CID) -> bytes:
        """The whole file as one bytes object (small files, tests)."""
        return b"".join(bytes(c) for c in self.read_file(cid))

    # --- symlinks ---------------------------------------------------------------------

    def readlink(self, cid: CID, node: Node | None = None) -> str:
        """A symlink's target. Raises UsageError if ``cid`` is not a symlink,
        UnixFSError if the target is not UTF-8."""
        node = node or self.node(cid)
        if node.kind != "symlink":
            raise UsageError(f"{cid} is a {node.kind}, not a symlink")
        try:
            return bytes(node.data).decode("utf-8")
        except UnicodeDecodeError:
            raise UnixFSError(f"symlink {cid} target is not UTF-8") from None
