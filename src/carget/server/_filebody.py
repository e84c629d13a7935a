"""The body of a path-gateway file answer, sans-IO: a file's bytes ``[first, last]`` as
pieces, walked with the one DAG walker (:func:`carget.unixfs.walk.file_children_in`).

:func:`file_pieces` yields, in order, byte views (inline data, leaves held in memory or
small enough to copy), :class:`FileSpan` s of exactly the wanted bytes of a leaf that lies
whole in a file (sent with ``os.sendfile``), and :class:`Need` markers for a block the
source does not have yet. After a ``Need`` the caller waits for the block and resumes the
generator, which then looks for it again, as a span first (a leaf that came into the
cache goes out with ``sendfile`` too); a caller that cannot wait closes the generator.

Every block's bytes are checked against what its parent declares (a leaf holding more or
fewer bytes than its ``blocksizes`` entry raises :class:`UnixFSError`), so the answer is
never longer or shorter than its ``Content-Length`` without the caller seeing an error.
"""

from __future__ import annotations

from collections.abc import Generator

from ..cid import CID, DAG_PB, RAW
from ..errors import UnixFSError
from ..unixfs.node import decode_unixfs, identity_data
from ..unixfs.walk import file_children_in
from .blocks import FileSpan, Need, ServedSource

__all__ = ["Piece", "file_pieces", "read_block"]

Piece = memoryview | FileSpan | Need


def read_block(src: ServedSource, cid: CID, fds: dict[str, int]
               ) -> Generator[Need, None, bytes | FileSpan]:
    """A block of a file DAG: a span of its UnixFS bytes when it is a leaf that lies
    whole in a file, else its bytes; yields :class:`Need` until the source has it
    (``got = yield from read_block(src, cid, fds)``). A block that had to be waited for
    is looked for as a span again once it came (into a file: the cache's), rather than
    read into memory and copied out."""
    inline = identity_data(cid)
    if inline is not None:
        return inline
    leaf = cid.codec == RAW or (cid.codec == DAG_PB and src.is_leaf(cid))
    while True:
        if leaf:
            span = src.data_span(cid, fds)
            if span is not None:
                return span
        data = src.get(cid)
        if data is not None:
            return data
        yield Need(cid)
        leaf = leaf or src.is_leaf(cid)


def file_pieces(src: ServedSource, root: CID, size: int, first: int, last: int,
                fds: dict[str, int]) -> Generator[Piece, None, None]:
    """The bytes ``first..last`` (inclusive) of the ``size``-byte UnixFS file ``root``.
    ``fds`` is the answer's open-file cache for spans (the caller closes it). Raises
    :class:`UnixFSError` for a DAG whose blocks disagree with their parents, the
    decoders' errors for malformed blocks, and the source's own errors."""
    if last < first:
        return
    # (cid, absolute start, bytes its parent says it holds)
    stack: list[tuple[CID, int, int]] = [(root, 0, size)]
    while stack:
        cid, base, want = stack.pop()
        lo, hi = max(first - base, 0), min(last + 1 - base, want)
        data = yield from read_block(src, cid, fds)
        if isinstance(data, FileSpan):
            if data.length != want:
                raise UnixFSError(f"leaf {cid} holds {data.length} bytes, its parent "
                                  f"says {want}")
            if hi > lo:
                yield data.part(lo, hi - lo)
            continue
        if cid.codec == RAW:
            if len(data) != want:
                raise UnixFSError(f"raw leaf {cid} holds {len(data)} bytes, its parent "
                                  f"says {want}")
            if hi > lo:
                yield memoryview(data)[lo:hi]
            continue
        node = decode_unixfs(cid, data)
        if node.kind != "file":
            raise UnixFSError(f"file DAG links to a {node.kind} ({cid})")
        if node.filesize != want:
            raise UnixFSError(f"file node {cid} holds {node.filesize} bytes, its parent "
                              f"says {want}")
        inline = node.data
        if inline:
            a, b = lo, min(hi, len(inline))
            if b > a:
                yield memoryview(inline)[a:b]
        children = [(link.cid, a, b - a) for link, a, b
                    in file_children_in(node, base, (first, last)) if b > a]
        stack.extend(reversed(children))
