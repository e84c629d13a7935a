"""File import, sans-IO: chunks in, finished blocks out, the root link at the end.

Stages (as js-ipfs-unixfs): chunker (``chunker.py``) → leaf encoder (here) → layout
(``layout.py``, never hashes) → parent reducer (here). Memory is bounded by the layout's
pending links (depth × max_links), whatever the file size.

Leaves, byte for byte as boxo builds them:

* raw leaves: the chunk itself, codec raw, always CIDv1;
* dag-pb leaves: ``PBNode{Data: UnixFS{Type, Data: chunk, filesize: len}}`` with Type File
  under the balanced layout and Raw under trickle (boxo's ``FillNodeLayer``);
* the empty file under balanced: one leaf with no Data field at all.

Parents: ``PBNode{Links: [{Hash, Name: "", Tsize}...], Data: UnixFS{File, filesize,
blocksizes}}``; Tsize is the child's block length plus its own links' Tsizes.

With ``inline``, any block of at most ``inline_limit`` bytes gets an identity CIDv1 of its
codec instead (kubo's ``cidutil.InlineBuilder``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from hashlib import sha256

from ..cid import CID, DAG_PB, RAW, SHA2_256, Block, HashFunction, encode_varint, hash_function
from .dagpb import data_field, encode_node, link_field
from .data import DataType, UnixFSData, encode_data
from .layout import Layout, new_layout
from .options import ImportOptions

__all__ = ["FileImporter", "FileLink", "LeafEncoder", "LeafHook", "make_cid", "tell_leaf"]

#: told of every leaf that holds file bytes, before its block is emitted: (leaf CID, file
#: offset of its bytes, their length, the block's bytes before them, the block's bytes
#: after them). A leaf's block is exactly ``head + file[offset:offset+length] + tail``, so
#: a store can serve it from the file (``carget serve``) without keeping it. Leaves of no
#: bytes and identity (inlined) leaves are not reported: their blocks are tiny.
LeafHook = Callable[[CID, int, int, bytes, bytes], None]


class FileLink:
    """What a parent needs of a child: CID, DAG size (Tsize) and file bytes below it."""

    __slots__ = ("cid", "filesize", "tsize")

    def __init__(self, cid: CID, tsize: int, filesize: int) -> None:
        self.cid = cid
        self.tsize = tsize
        self.filesize = filesize

    def __repr__(self) -> str:
        return f"FileLink({self.cid}, tsize={self.tsize}, filesize={self.filesize})"


def make_cid(
    codec: int,
    mh_parts: tuple[bytes | memoryview, ...],
    length: int,
    opts: ImportOptions,
    hasher: HashFunction,
) -> CID:
    """The CID of a block given as concatenated parts (hashed without joining them)."""
    if opts.inline and length <= opts.inline_limit:
        data = b"".join(mh_parts)
        return CID(1, codec, b"\x00" + encode_varint(length) + data)
    h = hasher.new() if hasher.new is not None else hashlib.sha256()
    for part in mh_parts:
        h.update(part)
    version = 1 if codec == RAW else opts.cid_version
    return CID(version, codec, hasher.prefix + h.digest())


class LeafEncoder:
    """Turns a chunk into a leaf block (or just its CID, for the parallel hashing path)."""

    def __init__(self, opts: ImportOptions) -> None:
        self.opts = opts
        self.hasher = hash_function(opts.hash)
        self.raw = opts.raw_leaves
        self._type = b"\x08\x00" if opts.layout == "trickle" else b"\x08\x02"
        # the common case (raw leaves, sha2-256) skips the general path: a leaf is one
        # hashlib call and one CID; inlining still goes the general way for small chunks
        self._fast_raw = self.raw and self.hasher.code == SHA2_256
        self._inline_below = opts.inline_limit + 1 if opts.inline else 0
        # and dag-pb leaves (CIDv0's default) likewise, when nothing is inlined
        self._fast_pb = not self.raw and self.hasher.code == SHA2_256 and not opts.inline
        self._pb_prefix = b"" if opts.cid_version == 0 else b"\x01\x70"

    def frame(self, size: int) -> tuple[bytes, bytes]:
        """For dag-pb leaves: the bytes before and after a chunk of ``size`` bytes."""
        n = encode_varint(size)
        unixfs_len = len(self._type) + 1 + len(n) + size + 1 + len(n)
        head = b"\x0a" + encode_varint(unixfs_len) + self._type + b"\x12" + n
        return head, b"\x18" + n

    def encode(
        self, chunk: bytes | memoryview, want_data: bool = True
    ) -> tuple[FileLink, Block | None]:
        size = len(chunk)
        if self._fast_raw and size >= self._inline_below:
            mh = b"\x12\x20" + sha256(chunk).digest()
            cid = CID._unchecked(1, RAW, mh, b"\x01\x55" + mh)
            return FileLink(cid, size, size), Block(cid, chunk) if want_data else None
        if self.raw:
            cid = make_cid(RAW, (chunk,), size, self.opts, self.hasher)
            return FileLink(cid, size, size), Block(cid, chunk) if want_data else None
        if self._fast_pb and size:
            # frame() written out: PBNode{Data: UnixFS{Type, Data: chunk, filesize}}
            if 0x80 <= size < 0x4000 - 8:
                # the files of a tree: both varints (size, size + 8) are two bytes, so the
                # frame is made from its bytes at once (two varints and six joins cost
                # as much as a sixth of hashing a 4 KiB leaf)
                lo, hi, whole = (size & 0x7F) | 0x80, size >> 7, size + 8
                head = bytes((0x0A, (whole & 0x7F) | 0x80, whole >> 7, 0x08, self._type[1],
                              0x12, lo, hi))
                tail = bytes((0x18, lo, hi))
            else:
                n = encode_varint(size)
                typ = self._type
                head = (b"\x0a" + encode_varint(len(typ) + 2 + 2 * len(n) + size) + typ
                        + b"\x12" + n)
                tail = b"\x18" + n
            h = sha256(head)
            h.update(chunk)
            h.update(tail)
            mh = b"\x12\x20" + h.digest()
            pb = self._pb_prefix
            cid = CID._unchecked(1 if pb else 0, DAG_PB, mh, pb + mh if pb else mh)
            length = len(head) + size + len(tail)
            block = Block(cid, b"".join((head, chunk, tail))) if want_data else None
            return FileLink(cid, length, size), block
        if size == 0:
            body = encode_node((), encode_data(UnixFSData(DataType.FILE, filesize=0)))
            cid = make_cid(DAG_PB, (body,), len(body), self.opts, self.hasher)
            return FileLink(cid, len(body), 0), Block(cid, body) if want_data else None
        head, tail = self.frame(size)
        length = len(head) + size + len(tail)
        cid = make_cid(DAG_PB, (head, chunk, tail), length, self.opts, self.hasher)
        block = Block(cid, b"".join((head, chunk, tail))) if want_data else None
        return FileLink(cid, length, size), block


def tell_leaf(hook: LeafHook, enc: LeafEncoder, link: FileLink, offset: int) -> None:
    """Report the leaf ``link`` (its bytes at ``offset`` in the file) to ``hook``."""
    cid, n = link.cid, link.filesize
    if n == 0 or cid.is_identity:
        return
    head, tail = enc.frame(n) if cid.codec == DAG_PB else (b"", b"")
    hook(cid, offset, n, head, tail)


class FileImporter:
    """Sans-IO file importer.

    Feed leaves with :meth:`add_chunk` (or pre-hashed ones with :meth:`add_leaf`), then call
    :meth:`finish`; blocks are handed to ``emit`` as soon as they are final, parents after
    their children, the root last.
    """

    def __init__(self, opts: ImportOptions, emit: Callable[[Block], None] | None = None,
                 on_leaf: LeafHook | None = None) -> None:
        self.opts = opts
        self.leaves = LeafEncoder(opts)
        self._hasher = self.leaves.hasher
        self._emit = emit
        self._on_leaf = on_leaf
        self._layout: Layout[FileLink] = new_layout(opts.layout, opts.max_links, self._reduce)
        self.size = 0

    def add_chunk(self, chunk: bytes | memoryview) -> None:
        self.add_leaf(*self.leaves.encode(chunk, want_data=self._emit is not None))

    def add_leaf(self, link: FileLink, block: Block | None = None) -> None:
        """Push a leaf the caller encoded: ``on_leaf`` is told where its bytes lie, then
        ``block`` (if given) is emitted."""
        if self._on_leaf is not None:
            tell_leaf(self._on_leaf, self.leaves, link, self.size)
        if block is not None and self._emit is not None:
            self._emit(block)
        self.size += link.filesize
        self._layout.push(link)

    def _reduce(self, children: list[FileLink]) -> FileLink:
        filesize = sum(c.filesize for c in children)
        data = encode_data(
            UnixFSData(
                DataType.FILE, filesize=filesize, blocksizes=tuple(c.filesize for c in children)
            )
        )
        fields = [link_field(c.cid, b"", c.tsize) for c in children]  # Name present, empty
        fields.append(data_field(data))
        body = b"".join(fields)
        cid = make_cid(DAG_PB, (body,), len(body), self.opts, self._hasher)
        if self._emit is not None:
            self._emit(Block(cid, body))
        return FileLink(cid, len(body) + sum(c.tsize for c in children), filesize)

    def finish(self) -> FileLink:
        root = self._layout.finish()
        if root is None:  # balanced layout over an empty file: one empty leaf
            link, block = self.leaves.encode(b"")
            if self._emit is not None and block is not None:
                self._emit(block)
            return link
        return root
