"""Where served blocks live: a read-only block source over local files and CARs.

Nothing is copied into a second store:

* files are imported with the same options as ``carget add``; the importer tells where
  each leaf's bytes lie in which file and the leaf block's framing around them (its leaf
  hook, :data:`carget.tree.TreeLeafHook`), so a leaf is ``head + file[offset:offset +
  length] + tail`` and is never kept. Only internal nodes (file parents, directories,
  HAMT shards) are kept in memory;
* CARs are indexed as (file, offset, length) and read back with ``os.pread`` when served:
  a CARv2 with an index through that index (no scan at start; each block is read and
  hashed the first time it is asked for, since an index may lie), any other CAR by one
  scan that hash-checks every block.

Served bytes must be the bytes hashed at start. A file's identity is taken *before* the
import reads it (every file under the sources is stat'ed first) and compared once its
blocks are known: a file that changed meanwhile is imported again on its own, and if that
no longer gives the very leaves reported, it is refused (:class:`InputError`) instead of
being served with blocks hashed from other bytes (issue 12: a file rewritten 1 s into its
import served a leaf with bytes of another hash). A CAR is checked the same way around
its scan. Each read re-checks the file's identity
(device, inode, size, mtime, ctime: ctime cannot be set by a user, so a rewrite that
restores the mtime is still seen); once a file has changed, every block read from it is
re-hashed before it is handed out, and a block that no longer matches raises
:class:`HashMismatch` rather than being served. :meth:`BlockStore.open_span` hands out a
block of an unchanged file as an open file range, for the server to send from the page
cache with ``os.sendfile``; the identity is checked again after each send
(:meth:`FileSpan.unchanged`), and a file rewritten during a send ends that answer.

Blocks are keyed by multihash, so a CIDv0 and a CIDv1 of the same bytes find the same block
(as go-ipfs blockstores do). Identity CIDs need no storage: their bytes are in the CID.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from ..car.decoder import DEFAULT_LIMITS
from ..car.reader import CarBlockStore, CarReader
from ..cid import CID, RAW, Block, decode_varint, encode_varint, read_cid
from ..errors import CargetError, HashMismatch, InputError
from ..unixfs.node import identity_data
from ..unixfs.options import ImportOptions
from .blocks import SPAN_FILES, SPAN_MIN, FileSpan

__all__ = ["BlockStore", "Report"]

Report = Callable[[str, str, "str | None"], None]


class _Source:
    """One file on disk that blocks are read from, and the identity it had when indexed."""

    __slots__ = ("_notify", "changed", "path", "signature")

    def __init__(self, path: str, st: os.stat_result,
                 notify: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.signature = _signature(st)
        self.changed = False
        self._notify = notify

    def mark_changed(self) -> None:
        """Note that the file no longer holds what was indexed (once: the notice goes
        to the store's ``on_changed``)."""
        if not self.changed:
            self.changed = True
            if self._notify is not None:
                self._notify(self.path)

    def check(self, fd: int) -> bool:
        """True while ``fd`` (this file, open) still has the identity it had when indexed;
        False (and the file is re-hashed on every later read) once it does not."""
        if self.changed:
            return False
        try:
            same = _signature(os.fstat(fd)) == self.signature
        except OSError:
            same = False
        if not same:
            self.mark_changed()
        return same


_Signature = tuple[int, int, int, int, int]


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _identities(sources: Sequence[str]) -> dict[tuple[int, int], _Signature]:
    """The identity of every regular file under ``sources`` (a source itself is followed
    if it is a symlink, as the import does; symlinks inside directories are not: they are
    imported as links), keyed by (device, inode). Iterative: any depth. Unreadable
    entries are left out (the import reports them)."""
    out: dict[tuple[int, int], _Signature] = {}
    dirs: list[str] = []
    for src in sources:
        if src == "-":
            continue
        try:
            st = os.stat(src)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[st.st_dev, st.st_ino] = _signature(st)
        elif stat.S_ISDIR(st.st_mode):
            dirs.append(src)
    while dirs:
        try:
            with os.scandir(dirs.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            dirs.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            est = entry.stat(follow_symlinks=False)
                            out[est.st_dev, est.st_ino] = _signature(est)
                    except OSError:
                        continue
        except OSError:
            continue
    return out


class _Loc:
    """A block: ``head + source[offset:offset+length] + tail`` (``source`` None: in memory,
    the whole block is ``head``)."""

    __slots__ = ("head", "length", "offset", "source", "tail")

    def __init__(self, source: _Source | None, offset: int, length: int, head: bytes,
                 tail: bytes) -> None:
        self.source = source
        self.offset = offset
        self.length = length
        self.head = head
        self.tail = tail

    @property
    def size(self) -> int:
        return len(self.head) + self.length + len(self.tail)


@dataclass(frozen=True, slots=True)
class _PendingLeaf:
    multihash: bytes
    codec: int
    offset: int  # file offset of the chunk
    length: int  # chunk bytes
    head: bytes
    tail: bytes


class _LeafRecorder:
    """What an import tells a store: each leaf's place in its file (the importer's leaf
    hook, possibly from worker threads), every other block in memory. Leaves are told
    before their blocks are emitted, so no leaf's bytes are ever kept."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store
        self.files: dict[str, list[_PendingLeaf]] = {}
        self._leaves: set[bytes] = set()
        self._lock = threading.Lock()

    def on_leaf(self, path: str, cid: CID, offset: int, length: int, head: bytes,
                tail: bytes) -> None:
        leaf = _PendingLeaf(cid.multihash, cid.codec, offset, length, head, tail)
        with self._lock:
            self.files.setdefault(path, []).append(leaf)
            self._leaves.add(cid.multihash)

    def emit(self, block: Block) -> None:
        cid = block.cid
        if cid.is_identity or cid.multihash in self._leaves:
            return  # a leaf (placed by on_leaf) or in the CID itself; an empty leaf,
            # told of by no one, is kept here
        with self._lock:
            self.store._mem(cid, bytes(block.data))


class BlockStore:
    """Read-only blocks from imported files and indexed CARs.

    ``roots`` lists (root CID, name) for everything added, in order. Reads are thread-safe
    (``os.pread`` on descriptors opened per read), so a server may read on worker threads.
    """

    def __init__(self, on_changed: Callable[[str], None] | None = None) -> None:
        self._locs: dict[bytes, _Loc] = {}
        #: CARv2 files with an index: blocks found (and hashed) on first use
        self._indexed: list[tuple[_Source, CarBlockStore]] = []
        self.roots: list[tuple[CID, str]] = []
        #: told the path of a served file found changed (its blocks are refused from then
        #: on unless they still hash right): the access log's notice
        self.on_changed = on_changed

    # --- adding ---------------------------------------------------------------------------

    def _mem(self, cid: CID, data: bytes) -> None:
        self._locs.setdefault(cid.multihash, _Loc(None, 0, 0, data, b""))

    def add_block(self, cid: CID, data: bytes) -> None:
        """Keep one block in memory (tests, small synthetic DAGs). Raises
        :class:`HashMismatch` if ``data`` is not ``cid``'s block."""
        cid.verify(data)
        if not cid.is_identity:
            self._mem(cid, bytes(data))

    def add_paths(self, sources: Sequence[str], opts: ImportOptions, *, jobs: int | None = None,
                  report: Report | None = None) -> list[CID]:
        """Import files and directories as ``carget add`` does and index their blocks:
        the importer tells where each leaf's bytes lie in which file
        (:data:`carget.tree.TreeLeafHook`), every other block is kept in memory.

        ``report(cid, name, digest)`` gets the same lines ``carget add`` prints. Raises
        :class:`InputError` for unreadable paths (from :func:`carget.tree.add_paths`) and
        for a file that changed while it was imported (identity taken before it was read,
        compared after) and, imported again on its own, no longer gives the same leaves.
        """
        from ..add import add_file
        from ..tree import add_paths

        rec = _LeafRecorder(self)
        before = _identities(sources)  # before the import reads anything
        roots = add_paths(list(sources), opts, jobs=jobs, emit=rec.emit, report=report,
                          on_leaf=rec.on_leaf)
        for path, leaves in rec.files.items():
            if self._attach(path, leaves, before):
                continue
            # the file changed since it was stat'ed: import it again on its own (identity
            # first); it is served only if it still holds the very leaves reported
            again = _LeafRecorder(self)
            first = _identities([path])

            def told(cid: CID, offset: int, length: int, head: bytes, tail: bytes,
                     _path: str = path, _again: _LeafRecorder = again) -> None:
                _again.on_leaf(_path, cid, offset, length, head, tail)

            try:
                add_file(path, opts, jobs=jobs, on_leaf=told)
            except InputError:
                raise InputError(f"{path} changed while it was being imported; "
                                 "not serving it") from None
            fresh = again.files.get(path, [])
            if fresh != leaves or not self._attach(path, fresh, first):
                raise InputError(f"{path} changed while it was being imported; "
                                 "not serving it")
        for src, root in zip(sources, roots, strict=False):
            name = os.path.basename(os.path.normpath(src)) if src != "-" else str(root)
            if opts.wrap:
                name = ""
            self.roots.append((root, name))
        return roots

    def _attach(self, path: str, leaves: list[_PendingLeaf],
                before: dict[tuple[int, int], _Signature]) -> bool:
        """Record ``leaves`` as living in ``path``, whose identity must still be the one in
        ``before`` (taken before it was read); check the file size and re-hash the first
        and last leaf. Returns False if they disagree."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        if before.get((st.st_dev, st.st_ino)) != _signature(st):
            return False  # changed (or replaced) since it was stat'ed: its leaves may lie
        end = leaves[-1].offset + leaves[-1].length
        if st.st_size != end:
            return False
        src = _Source(path, st, self._changed)
        locs = [(leaf, _Loc(src, leaf.offset, leaf.length, leaf.head, leaf.tail))
                for leaf in leaves]
        for leaf, loc in {id(x): x for x in (locs[0], locs[-1])}.values():
            cid = CID(1, leaf.codec, leaf.multihash)
            try:
                data = self._read_loc(loc)
                cid.verify(data)
            except (OSError, HashMismatch):
                return False
        for leaf, loc in locs:
            self._locs.setdefault(leaf.multihash, loc)
        return True

    def add_car(self, path: str) -> list[CID]:
        """Index a CARv1 or CARv2 file: hash-check every block and remember where it is.

        Returns the header's roots. Raises :class:`InputError` if the file cannot be read
        or changed while it was scanned,
        :class:`CARError` (or :class:`LimitExceeded`) if it is malformed,
        :class:`HashMismatch` if a block does not match its CID, :class:`UsageError` for a
        hash function carget does not implement.
        """
        try:
            f = open(path, "rb", buffering=0)
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
        with f:
            st = os.fstat(f.fileno())
            src = _Source(path, st, self._changed)
            v2 = CarReader(f, verify=False).header.v2
            f.seek(0)
            car = CarBlockStore(f) if v2 is not None and v2.index_offset else None
            locs: dict[bytes, _Loc] = {}
            if car is not None and car.indexed:
                # the CARv2 index says where blocks are: no scan; each block is read and
                # hashed the first time it is asked for (an index may lie), then served
                # like any other
                roots = list(car.header.roots)
                self._indexed.append((src, car))
            else:
                roots = _scan_car(f, src, locs)
            if _signature(os.fstat(f.fileno())) != src.signature:
                raise InputError(f"{path} changed while it was being indexed; not serving it")
        for mh, loc in locs.items():
            self._locs.setdefault(mh, loc)
        name = os.path.basename(path)
        for root in roots:
            self.roots.append((root, name))
        return roots

    def _changed(self, path: str) -> None:
        if self.on_changed is not None:
            self.on_changed(path)

    # --- reading --------------------------------------------------------------------------

    def _find(self, cid: CID) -> _Loc | None:
        """Where the block is: indexed at start, or found through a CARv2 index (then
        read and hashed once, here, before it is ever handed out)."""
        mh = cid.multihash
        loc = self._locs.get(mh)
        if loc is not None or not self._indexed:
            return loc
        for src, car in self._indexed:
            for offset in car.locate(mh):
                loc = _indexed_loc(src, offset, cid)
                if loc is not None:
                    return self._locs.setdefault(mh, loc)
        return None

    def has(self, cid: CID) -> bool:
        return cid.is_identity or self._find(cid) is not None

    def size(self, cid: CID) -> int | None:
        """The block's length, or None if the store does not have it."""
        if cid.is_identity:
            data = identity_data(cid)
            return None if data is None else len(data)
        loc = self._find(cid)
        return None if loc is None else loc.size

    def is_leaf(self, cid: CID) -> bool:
        """True when the block is known to have no links without reading it (raw blocks and
        file leaves read from imported files)."""
        if cid.codec == RAW:
            return True
        loc = self._find(cid)
        return loc is not None and loc.source is not None and bool(loc.head)

    def get(self, cid: CID) -> bytes | None:
        """The block's bytes, or None if absent.

        Raises :class:`HashMismatch` if the file it lives in changed and the bytes no longer
        match, :class:`InputError` if the file can no longer be read.
        """
        if cid.is_identity:
            return identity_data(cid)
        loc = self._find(cid)
        if loc is None:
            return None
        if loc.source is None:
            return loc.head
        data = self._read_loc(loc)
        if loc.source.changed:
            _check(cid, data)
        return data

    def in_memory(self, cid: CID) -> bytes | None:
        """The block if it is held in memory (internal nodes, added blocks), without a
        copy; None if it is read from a file (or absent)."""
        loc = self._find(cid)
        return loc.head if loc is not None and loc.source is None else None

    def read_into(self, cid: CID, buf: memoryview) -> int:
        """Write the block into ``buf`` (at least :meth:`size` bytes); return its length.

        The large part is read straight into ``buf`` with ``os.preadv`` (no copy). Raises
        :class:`KeyError` if absent, :class:`HashMismatch` / :class:`InputError` as
        :meth:`get`.
        """
        if cid.is_identity:
            data = identity_data(cid) or b""
            buf[: len(data)] = data
            return len(data)
        loc = self._find(cid)
        if loc is None:
            raise KeyError(cid)
        head, tail, n = loc.head, loc.tail, loc.length
        buf[: len(head)] = head
        if loc.source is None:
            return len(head)
        src = loc.source
        fd = _open_source(src)
        try:
            got = os.preadv(fd, [buf[len(head): len(head) + n]], loc.offset)
            if not src.changed and _signature(os.fstat(fd)) != src.signature:
                src.mark_changed()
        finally:
            os.close(fd)
        if got != n:
            raise HashMismatch(f"{cid}: {src.path} is shorter than when it was indexed")
        end = len(head) + n
        buf[end: end + len(tail)] = tail
        end += len(tail)
        if src.changed:
            _check(cid, buf[:end])
        return end

    def open_span(self, cid: CID, fds: dict[str, int]) -> FileSpan | None:
        """The block as a :class:`FileSpan` to send straight from its file, or None when it
        is small (:data:`SPAN_MIN`: copying it is cheaper than a system call of its own),
        in memory, absent, or in a file that changed since it was indexed (then
        :meth:`read_into` reads and re-hashes it).

        ``fds`` caches open files by path for one answer, least recently used first, at
        most :data:`SPAN_FILES` of them (a tree of 100,000 files must not exhaust the
        open-files limit); the caller closes what is left. A body chunk holds at most
        ``chunk size / SPAN_MIN`` spans, far fewer, so no file is closed while a span of
        the chunk being built still needs it. Raises :class:`InputError` if the file can
        no longer be opened."""
        loc = self._find(cid)
        if (loc is None or loc.source is None or loc.source.changed or cid.is_identity
                or loc.length < SPAN_MIN):
            return None
        return self._span(loc, fds, loc.head, loc.tail)

    def data_span(self, cid: CID, fds: dict[str, int]) -> FileSpan | None:
        """For a leaf of an imported file, or a raw block: a span of exactly its UnixFS
        bytes (the file chunk, no framing); None as :meth:`open_span` does, and for other
        blocks (whose file range holds dag-pb framing)."""
        loc = self._find(cid)
        if (loc is None or loc.source is None or loc.source.changed or cid.is_identity
                or loc.length < SPAN_MIN or not (cid.codec == RAW or loc.head)):
            return None
        return self._span(loc, fds, b"", b"")

    @staticmethod
    def _span(loc: _Loc, fds: dict[str, int], head: bytes, tail: bytes) -> FileSpan | None:
        src = loc.source
        assert src is not None
        fd = fds.pop(src.path, None)
        if fd is None:
            while len(fds) >= SPAN_FILES:
                os.close(fds.pop(next(iter(fds))))
            fd = _open_source(src)
        fds[src.path] = fd  # now the most recently used
        span = FileSpan(fd, loc.offset, loc.length, head, tail, check=src.check)
        return span if span.unchanged() else None

    def _read_loc(self, loc: _Loc) -> bytes:
        buf = bytearray(loc.size)
        assert loc.source is not None
        src = loc.source
        fd = _open_source(src)
        try:
            data = os.pread(fd, loc.length, loc.offset)
            if not src.changed and _signature(os.fstat(fd)) != src.signature:
                src.mark_changed()
        finally:
            os.close(fd)
        if len(data) != loc.length:
            src.mark_changed()
        h = len(loc.head)
        buf[:h] = loc.head
        buf[h: h + len(data)] = data
        buf[h + len(data):] = loc.tail
        return bytes(buf)

    def __len__(self) -> int:
        return len(self._locs)


def _open_source(src: _Source) -> int:
    """The source file opened for reading; :class:`InputError` if it no longer can be."""
    try:
        return os.open(src.path, os.O_RDONLY)
    except OSError as exc:
        raise InputError(f"{src.path}: {exc.strerror or exc}") from None


def _check(cid: CID, data: bytes | bytearray | memoryview) -> None:
    try:
        cid.verify(data)
    except HashMismatch:
        raise HashMismatch(f"block {cid} changed on disk since it was indexed; not serving it")\
            from None


# --- CAR index -----------------------------------------------------------------------------

#: bytes read at an indexed offset to parse the section's length and CID
_SECTION_HEAD = 10 + 128


def _indexed_loc(src: _Source, offset: int, cid: CID) -> _Loc | None:
    """The block at an index's ``offset`` if the section there is ``cid``'s and its bytes
    hash right; None otherwise (a lying index, a changed file)."""
    try:
        fd = _open_source(src)
    except InputError:
        return None
    try:
        head = os.pread(fd, _SECTION_HEAD, offset)
        try:
            length, p = decode_varint(head, 0)
            found, end = read_cid(head, p)
        except (IndexError, CargetError):
            return None
        if found.multihash != cid.multihash:
            return None
        n = length - (end - p)
        if n < 0 or n > DEFAULT_LIMITS.section:
            return None
        data = os.pread(fd, n, offset + end)
        if _signature(os.fstat(fd)) != src.signature:
            src.mark_changed()
            return None
    finally:
        os.close(fd)
    try:
        cid.verify(data)
    except HashMismatch:
        return None
    return _Loc(src, offset + end, n, b"", b"")


def _scan_car(f: BinaryIO, src: _Source, locs: dict[bytes, _Loc]) -> list[CID]:
    """One pass of :class:`carget.car.reader.CarReader` (every block verified; CARv1/v2,
    its limits): remember where each block's bytes start, keep none of them."""
    reader = CarReader(f, verify=True)
    roots = list(reader.header.roots)
    for block in reader.blocks():
        cid = block.cid
        if cid.is_identity:
            continue
        n = len(block.data)
        raw = cid.bytes
        start = reader.section_offset + len(encode_varint(len(raw) + n)) + len(raw)
        locs.setdefault(cid.multihash, _Loc(src, start, n, b"", b""))
    return roots
