"""HAMT-sharded directories (UnixFS ``HAMTShard``), sans-IO: entries in, blocks out.

The shape is boxo's ``ipld/unixfs/hamt`` trie, which does not depend on insertion order:
a name goes to bucket ``hash_bits(murmur3(name), depth)`` of the shard at ``depth``; a
bucket holding one name is an entry link, a bucket holding several is a sub-shard one level
deeper (boxo forks a leaf into a child shard the moment a second name lands in its bucket).

A shard node, byte for byte as boxo's ``Shard.Node``::

    PBNode{
      Links: one per occupied bucket, in bucket order:
             Name = "%0{w}X" % bucket (w = hex width of fanout-1, "FF" -> 2 digits)
                    + the entry name (nothing for a sub-shard),
             Hash, Tsize (cumulative, as every dag-pb link: block length + links' Tsizes)
      Data:  UnixFS{Type=HAMTShard, Data=bitfield, hashType=0x22, fanout,
                    mode/mtime on the root shard only (HAMTShardDataWithStat)}
    }

The bitfield is go-bitfield's ``Bytes()``: the fanout-bit big-endian integer with bit
``i`` set for each occupied bucket ``i``, leading zero bytes removed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..cid import CID, DAG_PB, Block, HashFunction
from ..errors import UnixFSError
from .dagpb import PBLink, encode_node
from .data import HAMT_HASH_MURMUR3, DataType, UnixFSData, UnixTime, encode_data
from .file import make_cid
from .murmur3 import murmur3_x64_64
from .options import ImportOptions

__all__ = ["HASH_BITS", "HamtEntry", "build_hamt", "check_fanout", "hamt_order", "name_hash"]

#: murmur3-x64-64 gives 64 bits; a trie deeper than that cannot separate two names
#: (boxo: "sharded directory too deep")
HASH_BITS = 64

#: boxo's ``validShardWidth``: a power of two and a multiple of 8 (whole bitfield bytes);
#: 1024 is the largest fanout UnixFS readers (and ``node.py``) accept
MAX_FANOUT = 1024

#: (name, hash of the name, cid, tsize)
HamtEntry = tuple[str, int, CID, int]


def check_fanout(fanout: int) -> int:
    """Return log2(fanout). Raises :class:`UnixFSError` unless boxo would accept it."""
    if fanout < 8 or fanout > MAX_FANOUT or fanout & (fanout - 1) or fanout % 8:
        raise UnixFSError(f"HAMT fanout {fanout} must be a power of two, multiple of 8, "
                          f"at most {MAX_FANOUT}")
    return fanout.bit_length() - 1


def name_hash(name: bytes) -> int:
    """The 64-bit murmur3 value whose bits, from the most significant end, pick buckets."""
    return int.from_bytes(murmur3_x64_64(name), "big")


def hamt_order(names: Sequence[str]) -> list[str]:
    """``names`` in the order a walk of their HAMT visits them (boxo ``ForEachLink``).

    Buckets are taken from the hash's most significant bits first and visited in
    ascending order, so the walk order is the numeric order of the 64-bit hash, whatever
    the fanout.
    """
    return sorted(names, key=lambda n: name_hash(n.encode("utf-8")))


class _Shard:
    """Builds one shard level; ``emit`` gets sub-shards before their parent."""

    def __init__(self, opts: ImportOptions, hasher: HashFunction,
                 emit: Callable[[Block], None] | None) -> None:
        self.opts = opts
        self.hasher = hasher
        self.emit = emit
        self.bits = check_fanout(opts.hamt_fanout)
        self.width = len(f"{opts.hamt_fanout - 1:X}")

    def build(self, entries: list[HamtEntry], depth: int,
              mode: int | None, mtime: UnixTime | None) -> tuple[CID, int]:
        shift = HASH_BITS - self.bits * (depth + 1)
        if shift < 0:
            names = ", ".join(repr(e[0]) for e in entries[:3])
            raise UnixFSError(f"HAMT too deep: names {names} share all {HASH_BITS} hash bits")
        mask = (1 << self.bits) - 1
        links: list[PBLink] = []
        bitfield = 0
        i = 0
        n = len(entries)
        # entries are sorted by hash, so each bucket is one contiguous run
        while i < n:
            bucket = (entries[i][1] >> shift) & mask
            j = i + 1
            while j < n and (entries[j][1] >> shift) & mask == bucket:
                j += 1
            prefix = f"{bucket:0{self.width}X}"
            if j - i == 1:
                name, _, cid, tsize = entries[i]
                links.append(PBLink(cid, prefix + name, tsize))
            else:
                cid, tsize = self.build(entries[i:j], depth + 1, None, None)
                links.append(PBLink(cid, prefix, tsize))
            bitfield |= 1 << bucket
            i = j
        field = bitfield.to_bytes(self.opts.hamt_fanout // 8, "big").lstrip(b"\x00")
        data = encode_data(UnixFSData(
            DataType.HAMT_SHARD, data=field or None, hash_type=HAMT_HASH_MURMUR3,
            fanout=self.opts.hamt_fanout, mode=mode, mtime=mtime,
        ))
        body = encode_node(links, data)
        cid = make_cid(DAG_PB, (body,), len(body), self.opts, self.hasher)
        if self.emit is not None:
            self.emit(Block(cid, body))
        return cid, len(body) + sum(link.tsize or 0 for link in links)


def build_hamt(
    entries: Sequence[tuple[str, CID, int]],
    opts: ImportOptions,
    hasher: HashFunction,
    emit: Callable[[Block], None] | None = None,
    *,
    mode: int | None = None,
    mtime: UnixTime | None = None,
) -> tuple[CID, int]:
    """Build the HAMT of ``entries`` (name, CID, Tsize); return the root's (CID, Tsize).

    ``emit`` receives every shard block, sub-shards before their parents, the root last.
    Names must be distinct. Raises :class:`UnixFSError` for a fanout boxo refuses or for
    names whose 64-bit hashes are all equal.
    """
    hashed = sorted(
        ((name, name_hash(name.encode("utf-8")), cid, tsize) for name, cid, tsize in entries),
        key=lambda e: e[1],
    )
    return _Shard(opts, hasher, emit).build(hashed, 0, mode, mtime)
