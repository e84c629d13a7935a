"""A decoded UnixFS node: one block read as raw leaf, file, directory, HAMT shard or symlink.

The shared reading layer under the exporter, ``car verify --dag``, the gateway server and
the fetcher's verifier. Decoding is strict and checks the facts the DAG itself can check
(blocksizes against links, HAMT parameters); sizes that need children are the exporter's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..cid import CID, DAG_CBOR, DAG_PB, IDENTITY, RAW, decode_varint
from ..errors import DagCBORError, NotFoundError, UnixFSError, UsageError
from .dagpb import PBLink, decode_node, decode_node_view
from .data import HAMT_HASH_MURMUR3, DataType, UnixFSData, decode_data_view
from .murmur3 import murmur3_x64_64

__all__ = [
    "HAMT_HASH_MURMUR3",
    "Node",
    "block_links",
    "cbor_walk",
    "decode_dag_cbor",
    "decode_unixfs",
    "hamt_index",
    "identity_data",
]



@dataclass(frozen=True, slots=True)
class Node:
    """``kind`` is "raw", "file", "directory", "hamt" or "symlink".

    ``data`` is the file bytes a leaf holds (the raw block, or UnixFS Data), or a
    symlink's target; ``links`` the dag-pb links (empty for raw); ``unixfs`` the UnixFS
    message (its ``data`` left None: that is ``data`` here). A file node decoded
    with ``view=True`` holds its data as a memoryview of the block, which starts at
    ``data_at`` in it.
    """

    cid: CID
    kind: str
    links: tuple[PBLink, ...]
    unixfs: UnixFSData | None
    data: bytes | memoryview
    data_at: int = 0

    @property
    def filesize(self) -> int:
        """File bytes under this node as the node declares them (raw: its length)."""
        if self.unixfs is None:
            return len(self.data)
        if self.unixfs.filesize is not None:
            return self.unixfs.filesize
        return len(self.data) + sum(self.unixfs.blocksizes)

    def file_children(self) -> Iterator[tuple[PBLink, int, int]]:
        """For a file node: each child link with the [start, end) file range it covers,
        counted from the node's start (after the node's own inline data)."""
        assert self.unixfs is not None
        pos = len(self.data)
        for link, size in zip(self.links, self.unixfs.blocksizes, strict=True):
            yield link, pos, pos + size
            pos += size

    def hamt_fanout_bits(self) -> int:
        assert self.unixfs is not None and self.unixfs.fanout is not None
        return self.unixfs.fanout.bit_length() - 1

    def hamt_lookup(self, name: str, depth: int) -> tuple[str, PBLink] | None:
        """Find ``name`` in this HAMT shard at ``depth`` (0 for the root shard).

        Returns ("entry", link) when the entry is here, ("shard", link) when it lives in a
        sub-shard (look there at ``depth + 1``), or None when it is absent.
        """
        bits = self.hamt_fanout_bits()
        width = len(f"{(1 << bits) - 1:X}")
        prefix = f"{hamt_index(name.encode('utf-8'), depth, bits):0{width}X}"
        for link in self.links:
            lname = link.name or ""
            if not lname.startswith(prefix):
                continue
            if len(lname) == width:
                return "shard", link
            if lname[width:] == name:
                return "entry", link
            return None
        return None

    def hamt_links(self) -> Iterator[tuple[str | None, PBLink]]:
        """Each link of a HAMT shard: (entry name, link) or (None, link) for a sub-shard."""
        width = len(f"{(1 << self.hamt_fanout_bits()) - 1:X}")
        for link in self.links:
            lname = link.name or ""
            yield (lname[width:] if len(lname) > width else None), link


def decode_dag_cbor(cid: CID, block: bytes | memoryview) -> Any:
    """Decode one dag-cbor block (the ``dag_cbor`` package's value: dicts, lists, str,
    bytes, int, float, bool, None and ``multiformats.CID`` links).

    Raises :class:`DagCBORError` naming ``cid`` for bytes that are not strict DAG-CBOR,
    and for nothing else: the block comes from outside, and on garbage the ``dag_cbor``
    package raises not only its own ``CBORDecodingError`` family but also what its
    dependencies raise (``KeyError`` for an unknown multihash in a link, ``OverflowError``
    for a length past the index range, ``RecursionError`` for deep nesting, since it
    decodes recursively).
    """
    import dag_cbor

    try:
        return dag_cbor.decode(bytes(block))
    except RecursionError:
        raise DagCBORError(f"dag-cbor block {cid} does not decode: nested too deeply"
                           ) from None
    except Exception as exc:  # see the docstring: any failure on these bytes is theirs
        raise DagCBORError(f"dag-cbor block {cid} does not decode: "
                          f"{type(exc).__name__}: {exc}") from None


#: a list index longer than this many digits is past any list a block can hold (and
#: ``int()`` refuses strings of more than 4300 digits with ValueError)
_MAX_INDEX_DIGITS = 20


def cbor_walk(
    value: Any, segments: Sequence[str], i: int, err: type[NotFoundError] = NotFoundError
) -> tuple[CID | None, int]:
    """Follow ``segments[i:]`` through the maps and lists of one decoded dag-cbor value,
    stopping at the first link: ``(link, next segment index)``, or ``(None, len)`` when
    the path ends inside the value. Raises ``err`` for a segment that is not there (a
    list index is ASCII digits only), :class:`CIDDecodeError` for a link carget cannot
    read."""
    from multiformats import CID as MFCID

    while i < len(segments):
        seg = segments[i]
        if isinstance(value, dict) and seg in value:
            value = value[seg]
        elif (isinstance(value, list) and seg.isascii() and seg.isdigit()
              and len(seg) <= _MAX_INDEX_DIGITS and int(seg) < len(value)):
            value = value[int(seg)]
        else:
            raise err(f"no field {seg!r} in dag-cbor block")
        i += 1
        if isinstance(value, MFCID):
            return CID.from_bytes(bytes(value)), i
    return None, i


def hamt_index(name: bytes, depth: int, bits: int) -> int:
    """Bucket of ``name`` at ``depth``: the depth-th group of ``bits`` bits of its murmur3
    hash, taken from the most significant end (go-unixfs ``hashBits``)."""
    h = int.from_bytes(murmur3_x64_64(name), "big")
    shift = 64 - bits * (depth + 1)
    if shift < 0:
        raise UnixFSError(f"HAMT deeper than its 64-bit hash allows (depth {depth})")
    return (h >> shift) & ((1 << bits) - 1)


def identity_data(cid: CID) -> bytes | None:
    """The bytes an identity CID carries inside itself, or None for a hashed CID."""
    mh = cid.multihash
    if mh[0] != IDENTITY:
        return None
    length, pos = decode_varint(mh, 1)
    return mh[pos : pos + length]


def decode_unixfs(cid: CID, block: bytes | memoryview, *, view: bool = False) -> Node:
    """Decode a raw or dag-pb block as UnixFS. With ``view``, a file node's data is a
    memoryview of ``block`` (no copy; it keeps ``block`` alive), at ``data_at``.

    Raises :class:`DagPBError` / :class:`UnixFSError` for malformed blocks or inconsistent
    UnixFS (blocksizes that do not match the links, a HAMT with an unknown hash or a fanout
    that is not a power of two), and :class:`UnixFSError` for codecs that are not UnixFS
    (a DAG that is not a file tree is bad content here, not a usage mistake).
    """
    if cid.codec == RAW:
        return Node(cid, "raw", (), None, memoryview(block) if view else bytes(block))
    if cid.codec != DAG_PB:
        raise UnixFSError(f"{cid} is {cid.codec_name}, not UnixFS (dag-pb or raw)")
    links, pb_data = decode_node_view(block)
    if pb_data is None:
        raise UnixFSError(f"dag-pb node {cid} has no UnixFS Data")
    fs, fs_data, at = decode_data_view(pb_data)
    t = fs.type
    if t in (DataType.FILE, DataType.RAW):
        if links and len(fs.blocksizes) != len(links):
            raise UnixFSError(
                f"file node {cid} has {len(links)} links but {len(fs.blocksizes)} blocksizes"
            )
        size = len(fs_data) if fs_data is not None else 0
        if fs.filesize is not None and fs.filesize != size + sum(fs.blocksizes):
            raise UnixFSError(
                f"file node {cid} declares filesize {fs.filesize} but holds "
                f"{size + sum(fs.blocksizes)} bytes"
            )
        if fs_data is None:
            return Node(cid, "file", links, fs, b"")
        # Data is the last field of a canonical dag-pb node: it ends the block
        at += len(block) - len(pb_data)
        return Node(cid, "file", links, fs, fs_data if view else bytes(fs_data), at)
    data = bytes(fs_data) if fs_data is not None else b""
    if t == DataType.DIRECTORY:
        return Node(cid, "directory", links, fs, b"")
    if t == DataType.HAMT_SHARD:
        fanout = fs.fanout or 0
        if fs.hash_type != HAMT_HASH_MURMUR3:
            raise UnixFSError(f"HAMT shard {cid} uses unsupported hash {fs.hash_type}")
        if fanout < 2 or fanout & (fanout - 1) or fanout > 1024:
            raise UnixFSError(f"HAMT shard {cid} has invalid fanout {fanout}")
        return Node(cid, "hamt", links, fs, data)
    if t == DataType.SYMLINK:
        return Node(cid, "symlink", (), fs, data)
    raise UnixFSError(f"unsupported UnixFS type {t.name} in {cid}")


def block_links(cid: CID, block: bytes | memoryview) -> list[CID]:
    """The CIDs a block links to, in the order a DFS walk follows them (kubo's): dag-pb
    links as listed, dag-cbor tag-42 links in document order (map entries in their
    encoded order, which for canonical DAG-CBOR is length-then-bytes), none for raw.

    Raises :class:`DecodeError` for a malformed block, :class:`UsageError` for a codec
    carget cannot read.
    """
    if cid.codec == RAW:
        return []
    if cid.codec == DAG_PB:
        return [link.cid for link in decode_node(block).links]
    if cid.codec == DAG_CBOR:
        from multiformats import CID as MFCID

        found: list[CID] = []
        stack = [decode_dag_cbor(cid, block)]
        while stack:
            v = stack.pop()
            if isinstance(v, MFCID):
                found.append(CID.from_bytes(bytes(v)))
            elif isinstance(v, dict):  # document order: the stack takes them reversed
                stack.extend(reversed(list(v.values())))
            elif isinstance(v, list):
                stack.extend(reversed(v))
        return found
    raise UsageError(f"cannot follow links in {cid.codec_name} block {cid}")
