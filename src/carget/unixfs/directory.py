"""Directories, sans-IO: entries (name, CID, Tsize) in, a directory DAG out.

A basic directory, byte for byte as boxo's ``BasicDirectory``::

    PBNode{Links: [{Hash, Name, Tsize}...] sorted by name bytes (go-merkledag sorts links
           by Name, a Go string compare = bytes), Data: UnixFS{Type=Directory, mode?, mtime?}}

Tsize is cumulative (block length + the links' Tsizes), as for every dag-pb node. The empty
directory is ``0a 02 08 01``: QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn as CIDv0.

When to shard (boxo ``ipld/unixfs/io/directory.go``, threshold ``HAMTShardingSize`` =
256 KiB), by ``ImportOptions.hamt_estimation``:

* ``"links"`` (kubo's default, profile legacy-cid-v0): the sum over entries of name bytes +
  CID bytes (a CIDv0 counts 34, a CIDv1 sha2-256 36), shard when it is ``>`` the threshold,
  as kubo >= 0.40 (boxo >= 0.37, checked against kubo 0.43.1); kubo <= 0.39 sharded at
  ``>=``, so a directory summing exactly 262144 has two CIDs (tests/vectors/README.md).
* ``"block"`` (IPIP-499, profile unixfs-v1-2025): the exact length of the basic directory's
  dag-pb block (every link's protobuf bytes incl. Tsize, plus the Data field with mode and
  mtime), shard when it is ``>`` the threshold.

And whatever the size, a directory of more than ``max_directory_links`` entries
(``--max-directory-links``, when positive) is a HAMT (boxo ``checkMaxLinksExceeded``).

While kubo adds a tree, entries only grow or are replaced by same-length CIDs, so the
directory ends sharded exactly when its final estimate crosses the threshold: deciding once,
at :meth:`DirectoryBuilder.finish`, gives kubo's result. So the links estimate is kept as
entries come (two lengths an entry), and the block estimate, which needs each link's
encoding, is counted only when asked (once, at the end: the encoding was ~10% of adding a
tree of small files when it was kept per entry).
"""

from __future__ import annotations

from collections.abc import Callable

from ..cid import CID, DAG_PB, Block, hash_function
from ..errors import UsageError
from ..names import is_valid_name
from .dagpb import data_field, decode_node, encode_node, link_field
from .data import DataType, UnixFSData, UnixTime, decode_data, encode_data
from .file import make_cid
from .hamt import build_hamt, check_fanout, hamt_order
from .options import ImportOptions

__all__ = ["DirResult", "DirectoryBuilder", "directory_data", "symlink_block", "with_metadata"]

class DirResult:
    """A finished directory: root CID, cumulative Tsize, and whether it is a HAMT."""

    __slots__ = ("cid", "sharded", "tsize")

    def __init__(self, cid: CID, tsize: int, sharded: bool) -> None:
        self.cid = cid
        self.tsize = tsize
        self.sharded = sharded

    def __repr__(self) -> str:
        return f"DirResult({self.cid}, tsize={self.tsize}, sharded={self.sharded})"


def directory_data(mode: int | None = None, mtime: UnixTime | None = None) -> bytes:
    """UnixFS Data of a basic directory (boxo ``FolderPBData``/``FolderPBDataWithStat``)."""
    return encode_data(UnixFSData(DataType.DIRECTORY, mode=mode or None, mtime=mtime))


class DirectoryBuilder:
    """Collects one directory's entries and builds it, basic or sharded, on :meth:`finish`.

    Holds only (name, CID, Tsize) per entry (and the name's UTF-8 bytes); blocks go to
    ``emit`` when made.
    """

    def __init__(self, opts: ImportOptions, *, mode: int | None = None,
                 mtime: UnixTime | None = None) -> None:
        if opts.hamt_estimation not in ("links", "block"):
            raise UsageError(f"unknown HAMT size estimation {opts.hamt_estimation!r}")
        check_fanout(opts.hamt_fanout)
        self.opts = opts
        self.mode = mode or None  # boxo stores no mode when the permission bits are 0
        self.mtime = mtime
        #: name -> (name bytes, CID, Tsize)
        self._entries: dict[str, tuple[bytes, CID, int]] = {}
        self._data = directory_data(self.mode, mtime)
        self._links_estimate = 0  # kept as entries come: two lengths each

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, name: str, cid: CID, tsize: int) -> None:
        """Add (or replace, as ``AddChild`` does) the entry ``name``.

        Raises :class:`UsageError` for a name a directory cannot hold: empty, ".", "..",
        containing "/" or NUL, or not encodable as UTF-8.
        """
        if not is_valid_name(name):
            raise UsageError(f"invalid directory entry name {name!r}")
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"directory entry name {name!r} is not valid UTF-8") from None
        entries = self._entries
        if name in entries:
            self._links_estimate -= len(raw) + len(entries[name][1].bytes)
        entries[name] = (raw, cid, tsize)
        self._links_estimate += len(raw) + len(cid.bytes)

    def _block_size(self) -> int:
        """The exact length of the basic directory's block (boxo ``linkSerializedSize``
        summed, plus the Data field)."""
        return len(data_field(self._data)) + sum(
            len(link_field(cid, raw, tsize)) for raw, cid, tsize in self._entries.values())

    @property
    def estimate(self) -> int:
        """The size the sharding decision looks at, in the configured estimation mode."""
        if self.opts.hamt_estimation == "block":
            return self._block_size()
        return self._links_estimate

    @property
    def sharded(self) -> bool:
        """Whether :meth:`finish` will build a HAMT (threshold 0 disables sharding)."""
        threshold = self.opts.hamt_threshold
        limit = self.opts.max_directory_links
        over_limit = 0 < limit < len(self._entries)
        if threshold <= 0:
            if over_limit:  # boxo: no HAMT to switch to, and a basic directory refuses it
                raise UsageError(f"BasicDirectory: cannot add child: maxLinks ({limit}) "
                                 "reached")
            return False
        if over_limit:
            return True
        if self.opts.hamt_estimation == "block":
            return self._block_size() > threshold
        return self._links_estimate > threshold

    def names_in_link_order(self) -> list[str]:
        """Entry names in the order the finished node lists them (what kubo's
        ``ListNames`` returns): name-byte order, or HAMT walk order when sharded."""
        if self.sharded:
            return hamt_order(list(self._entries))
        return [name for name, _ in sorted(self._entries.items(), key=_by_name_bytes)]

    def finish(self, emit: Callable[[Block], None] | None = None) -> DirResult:
        """Build the directory; ``emit`` gets its blocks (sub-shards first, root last)."""
        hasher = hash_function(self.opts.hash)
        if self.sharded:
            entries = [(name, cid, tsize) for name, (_, cid, tsize) in self._entries.items()]
            cid, tsize = build_hamt(entries, self.opts, hasher, emit,
                                    mode=self.mode, mtime=self.mtime)
            return DirResult(cid, tsize, True)
        # name bytes are unique, so sorting the entries sorts by them alone
        links = sorted(self._entries.values())
        fields = [link_field(cid, raw, tsize) for raw, cid, tsize in links]
        fields.append(data_field(self._data))
        body = b"".join(fields)
        cid = make_cid(DAG_PB, (body,), len(body), self.opts, hasher)
        if emit is not None:
            emit(Block(cid, body))
        return DirResult(cid, len(body) + sum(link[2] for link in links), False)


def _by_name_bytes(item: tuple[str, tuple[bytes, CID, int]]) -> bytes:
    return item[1][0]


def symlink_block(target: bytes, opts: ImportOptions,
                  mtime: UnixTime | None = None) -> tuple[Block, int]:
    """A symlink node (boxo ``SymlinkData``: Type=Symlink, Data=target; kubo adds mtime
    under --preserve-mtime but never a mode). Returns the block and its Tsize."""
    body = encode_node((), encode_data(UnixFSData(DataType.SYMLINK, data=target, mtime=mtime)))
    cid = make_cid(DAG_PB, (body,), len(body), opts, hash_function(opts.hash))
    return Block(cid, body), len(body)


def with_metadata(root: Block, tsize: int, opts: ImportOptions, mode: int | None,
                  mtime: UnixTime | None) -> tuple[Block, int]:
    """A file root re-encoded with UnixFS 1.5 mode/mtime (boxo ``SetFileAttributes``).

    boxo sets them on the finished root only, and only when it is dag-pb: a raw root (a
    one-chunk file with raw leaves) keeps no metadata, which is why kubo turns raw leaves
    off under --preserve-mode/--preserve-mtime. Returns the new block and the new Tsize.
    """
    if root.cid.codec != DAG_PB or (not mode and mtime is None):
        return root, tsize
    pb = decode_node(root.data)
    old = decode_data(pb.data or b"")
    new = UnixFSData(old.type, old.data, old.filesize, old.blocksizes, old.hash_type,
                     old.fanout, mode=(mode or old.mode), mtime=mtime or old.mtime)
    body = encode_node(pb.links, encode_data(new))
    cid = make_cid(DAG_PB, (body,), len(body), opts, hash_function(opts.hash))
    return Block(cid, body), tsize - len(root.data) + len(body)
