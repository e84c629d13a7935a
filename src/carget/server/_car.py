"""Which blocks a CAR response carries, in which order (sans-IO over a block source).

Trustless Gateway spec (ipfs/specs http-gateways/trustless-gateway), IPIP-402 and IPIP-412:
first every block needed to verify the path, then the terminal element's blocks as
``dag-scope`` says (``block``: its own block; ``entity``: a whole UnixFS file, or the byte
range ``entity-bytes`` asks for, a directory's own block, a HAMT's shard nodes; ``all``: the
whole DAG below it), depth-first in link order. ``dups=n`` sends each block once; ``dups=y``
every time it occurs. Identity CIDs are never sent: their bytes are in the CID.

Everything here is iterative (explicit stacks), so a hostile deep DAG cannot overflow the
Python stack. A block the walk needs but the source lacks raises :class:`IncompleteDAG`
from the iterator, after every block before it was produced: the caller ends the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..blocksource import BlockSource, require
from ..cid import CID, DAG_CBOR, DAG_PB, RAW
from ..errors import DecodeError, IncompleteDAG, NotFoundError, UnsupportedCodec, UsageError
from ..unixfs.node import Node, block_links, decode_unixfs
from ..unixfs.walk import file_children_in, path_step

__all__ = [
    "WalkSource",
    "ByteRange",
    "Resolved",
    "UnsupportedCodec",
    "car_blocks",
    "resolve_path",
    "resolve_range",
]

#: codecs whose links carget can follow (the others can only be sent as single blocks)
TRAVERSABLE = (RAW, DAG_PB, DAG_CBOR)
#: longest all-digit path segment taken as a dag-cbor list index: 2**63 has 19 digits and
#: no block holds a list that long; a longer one is a bad request, and ``int()`` of more
#: than 4300 digits would raise ValueError (the issue: 5000 digits were a 500)
MAX_INDEX_DIGITS = 19


class WalkSource(BlockSource, Protocol):
    """A block source that may know a block has no links without reading it."""

    def is_leaf(self, cid: CID, /) -> bool: ...


@dataclass(frozen=True, slots=True)
class Resolved:
    """A content path resolved: the blocks that prove it, then the terminal CID."""

    path_blocks: tuple[CID, ...]
    terminal: CID


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive ``[first, last]`` range of file bytes, already resolved against the
    file size (``entity-bytes``)."""

    first: int
    last: int


def _need(src: WalkSource, cid: CID) -> bytes:
    return require(src, cid)


def _links(src: WalkSource, cid: CID) -> list[CID]:
    if cid.codec == RAW or src.is_leaf(cid):
        return []
    if cid.codec in (DAG_PB, DAG_CBOR):
        return block_links(cid, _need(src, cid))
    raise IncompleteDAG(f"cannot follow links of {cid.codec_name} block {cid}")


def resolve_path(src: WalkSource, root: CID, segments: list[str]) -> Resolved:
    """Walk ``segments`` from ``root`` through UnixFS directories, HAMT shards and dag-cbor
    maps and lists, one :func:`~carget.unixfs.walk.path_step` at a time.

    Raises :class:`NotFoundError` if a name is absent, a block on the way is missing, or the
    path goes into something that has no names (a file, raw block, symlink);
    :class:`UsageError` for a codec carget cannot walk or a segment that cannot name
    anything in a dag-cbor block (all digits, longer than :data:`MAX_INDEX_DIGITS`);
    :class:`DecodeError` for a malformed block, DuplicateName for a name listed twice.
    """
    proof: list[CID] = []
    cur = root
    seg = depth = 0
    while seg < len(segments):
        data = src.get(cur)
        if data is None:
            raise NotFoundError(f"block {cur} on the path is not available")
        proof.append(cur)
        try:
            step = path_step(cur, data, segments, seg, depth)
        except NotFoundError:
            # not there; but a segment that could not be an index at all is the
            # request's fault (400), not a missing entry
            if cur.codec == DAG_CBOR and any(
                    s.isascii() and s.isdigit() and len(s) > MAX_INDEX_DIGITS
                    for s in segments[seg:]):
                raise UsageError("a path segment of more than "
                                 f"{MAX_INDEX_DIGITS} digits is not a list index") from None
            raise
        if step.cid is None:  # the path ends inside this dag-cbor block
            proof.pop()
            return Resolved(tuple(proof), cur)
        cur, seg, depth = step.cid, step.seg, step.hamt_depth
    return Resolved(tuple(proof), cur)


def resolve_range(size: int, spec: tuple[int | None, int | None]) -> ByteRange | None:
    """Turn ``entity-bytes=from:to`` (None for ``*``; negatives count from the end) into an
    inclusive range of a ``size``-byte file, clamped to the file.

    Returns None when the range is empty (the response is then ``dag-scope=block``, spec).
    Raises :class:`UsageError` when it lies entirely past the end of a non-empty file (the
    spec's 400, "when the gateway is able to determine this upfront").
    """
    frm, to = spec
    first = 0 if frm is None else (max(0, size + frm) if frm < 0 else frm)
    last = size - 1 if to is None else (size + to if to < 0 else min(to, size - 1))
    if size > 0 and first >= size:
        raise UsageError(f"entity-bytes start {first} is past the end of a {size}-byte file")
    if last < first or size == 0:
        return None
    return ByteRange(first, last)


def car_blocks(src: WalkSource, resolved: Resolved, scope: str, byte_range: ByteRange | None,
               dups: bool) -> Iterator[CID]:
    """The CIDs of a CAR response body, in order (identity CIDs left out).

    ``scope`` is "block", "entity" or "all"; ``byte_range`` (entity scope on a file only)
    limits a file to the blocks that hold those bytes. Raises :class:`IncompleteDAG` where a
    needed block is missing and :class:`DecodeError` for a malformed one, lazily.
    """
    seen: set[bytes] = set()

    def fresh(cid: CID) -> bool:
        if cid.is_identity:
            return False
        if dups:
            return True
        if cid.bytes in seen:
            return False
        seen.add(cid.bytes)
        return True

    for cid in resolved.path_blocks:
        if fresh(cid):
            yield cid
    t = resolved.terminal
    if scope == "block":
        if fresh(t):
            yield t
        return
    if scope == "all":
        yield from _dfs(src, t, fresh, dups)
        return
    # entity
    if t.codec != DAG_PB or src.is_leaf(t):
        if fresh(t):
            yield t
        return
    node = decode_unixfs(t, _need(src, t))
    if node.kind == "file":
        # an entity is all its bytes: the walker's rule then leaves out empty edge leaves
        whole = byte_range or ByteRange(0, node.filesize - 1)
        yield from _file_dfs(src, t, node, whole, fresh)
    elif node.kind == "hamt":
        yield from _hamt_dfs(src, t, fresh)
    elif fresh(t):
        yield t


def _dfs(src: WalkSource, root: CID, fresh: Any, dups: bool) -> Iterator[CID]:
    stack: list[Iterator[CID]] = [iter((root,))]
    while stack:
        cid = next(stack[-1], None)
        if cid is None:
            stack.pop()
            continue
        if not fresh(cid):
            continue
        yield cid
        if cid.is_identity:
            continue
        children = _links(src, cid)
        if children:
            stack.append(iter(children))


def _file_dfs(src: WalkSource, root: CID, node: Node, rng: ByteRange | None,
              fresh: Any) -> Iterator[CID]:
    """A UnixFS file's blocks, or those holding bytes ``rng`` (offsets via blocksizes)."""
    # stack entries: iterator over (child cid, absolute start, absolute end)
    span = None if rng is None else (rng.first, rng.last)

    def children(n: Node, base: int) -> Iterator[tuple[CID, int, int]]:
        for link, s, e in file_children_in(n, base, span):
            yield link.cid, s, e

    if fresh(root):
        yield root
    stack = [children(node, 0)]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        cid, start, _ = item
        if not fresh(cid):
            continue
        yield cid
        if cid.codec != DAG_PB or src.is_leaf(cid) or cid.is_identity:
            continue
        child = decode_unixfs(cid, _need(src, cid))
        if child.kind != "file":
            raise DecodeError(f"file {root} links to a UnixFS {child.kind} ({cid})")
        if child.links:
            stack.append(children(child, start))


def _hamt_dfs(src: WalkSource, root: CID, fresh: Any) -> Iterator[CID]:
    """A sharded directory's entity: the root and every sub-shard, not the entries."""
    stack: list[Iterator[CID]] = [iter((root,))]
    while stack:
        cid = next(stack[-1], None)
        if cid is None:
            stack.pop()
            continue
        if not fresh(cid):
            continue
        yield cid
        node = decode_unixfs(cid, _need(src, cid))
        if node.kind != "hamt":
            raise DecodeError(f"HAMT link {cid} is not a shard")
        subs = [link.cid for name, link in node.hamt_links() if name is None]
        if subs:
            stack.append(iter(subs))
