"""Where served blocks live: a read-only block source over local files and CARs.

Nothing is copied into a second store:

* files are imported with the same options as ``carget add``; each leaf is remembered as
  (file, offset, length) plus, for dag-pb leaves, the few bytes of framing before and after
  the chunk (:meth:`LeafEncoder.frame`). Only internal nodes (file parents, directories,
  HAMT shards) are kept in memory;
* CARs (v1 or v2) are scanned once: every block is hash-checked and indexed as
  (file, offset, length), then read back with ``os.pread`` when served.

Served bytes must be the bytes hashed at start. A file's identity is taken *before* the
import reads it (every file under the sources is stat'ed first) and compared once its
blocks are known: a file that changed meanwhile is imported again on its own, and if that
no longer gives the CID already reported, it is refused (:class:`InputError`) instead of
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from ..cid import CID, DAG_PB, RAW, Block, decode_varint, encode_varint
from ..errors import CargetError, HashMismatch, InputError
from ..unixfs.file import LeafEncoder
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


@dataclass
class _PendingLeaf:
    multihash: bytes
    codec: int
    offset: int  # file offset of the chunk
    length: int  # chunk bytes
    head: bytes
    tail: bytes


@dataclass
class _Recorder:
    """Turns the importer's ``emit`` stream into locations: leaves in file order become
    (offset, length) records for the file ``report`` names next; the rest stays in memory."""

    store: BlockStore
    enc: LeafEncoder
    pending: list[_PendingLeaf] = field(default_factory=list)
    pos: int = 0

    def emit(self, block: Block) -> None:
        cid = block.cid
        data = block.data
        if cid.codec == RAW:
            n = len(data)
            if not cid.is_identity:
                self.pending.append(_PendingLeaf(cid.multihash, RAW, self.pos, n, b"", b""))
            self.pos += n
            return
        chunk = self._dagpb_leaf_chunk(data) if cid.codec == DAG_PB else None
        if chunk is not None:
            start, n = chunk
            if not cid.is_identity:
                self.pending.append(_PendingLeaf(
                    cid.multihash, DAG_PB, self.pos, n, bytes(data[:start]),
                    bytes(data[start + n:])))
            self.pos += n
            return
        if not cid.is_identity:
            self.store._mem(cid, bytes(data))

    def _dagpb_leaf_chunk(self, data: bytes | memoryview) -> tuple[int, int] | None:
        """(start, length) of the chunk if ``data`` is exactly a dag-pb leaf as the importer
        frames one, else None (parents and directories start with Links, field 2)."""
        if len(data) < 6 or data[0] != 0x0A:
            return None
        try:
            _, p = decode_varint(data, 1)
            p += 2  # Type field: two bytes (08 02 or 08 00)
            if p >= len(data) or data[p] != 0x12:
                return None
            size, start = decode_varint(data, p + 1)
        except (IndexError, CargetError):
            return None
        head, tail = self.enc.frame(size)
        if (start != len(head) or len(data) != start + size + len(tail)
                or bytes(data[:start]) != head or bytes(data[start + size:]) != tail):
            return None
        return start, size

    def take(self) -> list[_PendingLeaf]:
        leaves, self.pending, self.pos = self.pending, [], 0
        return leaves


class BlockStore:
    """Read-only blocks from imported files and indexed CARs.

    ``roots`` lists (root CID, name) for everything added, in order. Reads are thread-safe
    (``os.pread`` on descriptors opened per read), so a server may read on worker threads.
    """

    def __init__(self, on_changed: Callable[[str], None] | None = None) -> None:
        self._locs: dict[bytes, _Loc] = {}
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
        """Import files and directories as ``carget add`` does and index their blocks.

        ``report(cid, name, digest)`` gets the same lines ``carget add`` prints. Raises
        :class:`InputError` for unreadable paths (from :func:`carget.tree.add_paths`) and
        for a file that changed while it was imported (identity taken before it was read,
        compared after) and no longer gives the CID reported for it.
        """
        from ..add import add_file
        from ..tree import add_paths

        enc = LeafEncoder(opts)
        rec = _Recorder(self, enc)
        out: list[CID] = []
        before = _identities(sources)  # before the import reads anything

        def on_report(cid_text: str, name: str, digest: str | None) -> None:
            leaves = rec.take()
            cid = CID.parse(cid_text)
            path = self._entry_path(sources, name)
            if leaves:
                if path is None or not self._attach(path, leaves, enc, before):
                    # the file changed since it was stat'ed, or the name does not map back
                    # to the file that produced these leaves: import that file again on its
                    # own (identity first), which is slower but exact
                    if path is None:
                        raise InputError(f"cannot locate the file for {name!r} to serve it")
                    again = _Recorder(self, enc)
                    first = _identities([path])
                    got = add_file(path, opts, jobs=jobs, emit=again.emit)
                    if got.cid != cid or not self._attach(path, again.take(), enc, first):
                        raise InputError(f"{path} changed while it was being imported; "
                                         "not serving it")
            if report is not None:
                report(cid_text, name, digest)

        roots = add_paths(list(sources), opts, jobs=jobs, emit=rec.emit, report=on_report)
        for src, root in zip(sources, roots, strict=False):
            name = os.path.basename(os.path.normpath(src)) if src != "-" else str(root)
            if opts.wrap:
                name = ""
            self.roots.append((root, name))
            out.append(root)
        return out

    @staticmethod
    def _entry_path(sources: Sequence[str], name: str) -> str | None:
        """The local path behind a ``carget add`` output name (kubo names entries relative
        to the parent of each source, so ``dir/sub/f`` is ``<parent of dir>/dir/sub/f``)."""
        for src in sources:
            if src == "-":
                continue
            base = os.path.normpath(src)
            if os.path.basename(base) in (".", ".."):
                base = os.path.realpath(base)  # kubo names "." by the directory's real name
            top = os.path.basename(base)
            if name == top or name.startswith(top + "/"):
                path = os.path.join(os.path.dirname(base), name)
                if os.path.isfile(path):
                    return path
        return None

    def _attach(self, path: str, leaves: list[_PendingLeaf], enc: LeafEncoder,
                before: dict[tuple[int, int], _Signature]) -> bool:
        """Record ``leaves`` as living in ``path``, whose identity must still be the one in
        ``before`` (taken before it was read); check the file size and re-hash the first
        and last leaf so a wrong mapping cannot survive. Returns False if they disagree."""
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
            locs: dict[bytes, _Loc] = {}
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

    def has(self, cid: CID) -> bool:
        return cid.is_identity or cid.multihash in self._locs

    def size(self, cid: CID) -> int | None:
        """The block's length, or None if the store does not have it."""
        if cid.is_identity:
            data = identity_data(cid)
            return None if data is None else len(data)
        loc = self._locs.get(cid.multihash)
        return None if loc is None else loc.size

    def is_leaf(self, cid: CID) -> bool:
        """True when the block is known to have no links without reading it (raw blocks and
        file leaves read from imported files)."""
        if cid.codec == RAW:
            return True
        loc = self._locs.get(cid.multihash)
        return loc is not None and loc.source is not None and bool(loc.head)

    def get(self, cid: CID) -> bytes | None:
        """The block's bytes, or None if absent.

        Raises :class:`HashMismatch` if the file it lives in changed and the bytes no longer
        match, :class:`InputError` if the file can no longer be read.
        """
        if cid.is_identity:
            return identity_data(cid)
        loc = self._locs.get(cid.multihash)
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
        loc = self._locs.get(cid.multihash)
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
        loc = self._locs[cid.multihash]
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
        loc = self._locs.get(cid.multihash)
        if (loc is None or loc.source is None or loc.source.changed or cid.is_identity
                or loc.length < SPAN_MIN):
            return None
        return self._span(loc, fds, loc.head, loc.tail)

    def data_span(self, cid: CID, fds: dict[str, int]) -> FileSpan | None:
        """For a leaf of an imported file, or a raw block: a span of exactly its UnixFS
        bytes (the file chunk, no framing); None as :meth:`open_span` does, and for other
        blocks (whose file range holds dag-pb framing)."""
        loc = self._locs.get(cid.multihash)
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

def _scan_car(f: BinaryIO, src: _Source, locs: dict[bytes, _Loc]) -> list[CID]:
    """One pass of :class:`carget.car.reader.CarReader` (every block verified; CARv1/v2,
    its limits): remember where each block's bytes start, keep none of them."""
    from ..car.reader import CarReader

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
