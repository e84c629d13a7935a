"""The disk cache's folder of pack files: where each block lies, appends, recency and
eviction, and what other processes sharing the folder wrote (blocking, thread-safe).

Layout: ``packs/<pid>-<n>.pack`` holds blocks' bytes back to back and
``packs/<pid>-<n>.idx`` says where each lies (the format: :mod:`._packindex`). A process
appends to one pack of its own at a time and starts the next at :data:`PACK_BYTES` (less
for a small cache, see eviction), so a bridged 512 MiB file costs a handful of file
creations, not one per block (on ext4 each creation scans the recently deleted inodes:
with a file per block, that was most of the bridge's CPU time).

**Writing.** :meth:`PackFolder.append` writes the block's bytes to the pack, then its
record to the index: a process that dies at any point leaves at worst bytes that no record
points to, or a record cut short, which readers ignore. There is no ``fsync`` (see
:mod:`.cache` for why and for what that means).

**Leftovers.** A pack without its index, or with no block in it, whose process is gone
(killed between creating the two files) is removed when the folder is scanned; those of a
live process are left alone. Whatever lies under a pack's or an index's name that this
cache could not have written (a FIFO, a link, a folder, a file larger than any pack or
index, an index without the magic) is removed without being opened through, blocked on
or read.

**Size and eviction** are per pack: ``max_bytes`` bounds the packs this process knows of
(found at start, written or seen since, counted at their pack files' sizes); past it, the
pack whose most recent use is oldest is deleted whole (never the one being written). A
pack is at most an eighth (:data:`PACK_SHARE`) of ``max_bytes``, so the bound stays close
whatever the cache's size. Recency is kept in memory, rebuilt at start from the packs'
modification times (refreshed when this process uses a pack, at most once a
:data:`TOUCH_EVERY`). Deleting only unlinks: an answer sending from the pack keeps its
bytes until it is done.

**Two processes sharing the folder** each write their own packs and enforce the bound
over what they know: one may delete a pack the other still lists or appends to (the other
finds it gone and drops it; its appends go on into the unlinked file until it starts its
next pack). A block another process wrote is found by a rescan of the folder on a miss, at
most once every ``rescan_every`` seconds (:data:`RESCAN_EVERY`): new packs are indexed,
and the newest pack of each live process is read on from where the last rescan stopped. A
miss in between is a miss.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..car.decoder import MAX_BLOCK_TRUSTLESS
from ..cid import CID
from ..errors import HashMismatch
from ._packindex import (
    INDEX_MAGIC,
    INDEX_SUFFIX,
    MAX_MULTIHASH,
    PACK_SUFFIX,
    encode_record,
    pack_stem,
    parse_records,
    parse_stem,
)

__all__ = [
    "INDEX_LIMIT",
    "PACK_BYTES",
    "PACK_LIMIT",
    "PACK_SHARE",
    "RESCAN_EVERY",
    "TOUCH_EVERY",
    "Location",
    "Pack",
    "PackFolder",
]

#: a pack's size: two file creations per 64 MiB cost nothing next to the bytes, and
#: eviction drops no more than this at a time
PACK_BYTES = 64 << 20
#: a pack is at most this share of ``max_bytes``: whole packs are evicted
PACK_SHARE = 8
#: a file under a pack's name larger than any pack this cache writes is not one
PACK_LIMIT = PACK_BYTES + MAX_BLOCK_TRUSTLESS
#: an index this cache writes stays below this (the writer starts a new pack first), so
#: a larger file under an index's name is not one (some 250,000 blocks of a few bytes)
INDEX_LIMIT = 16 << 20
#: seconds between two rescans of the folder for blocks other processes wrote
RESCAN_EVERY = 1.0
#: seconds between two refreshes of a pack's modification time (its recency at start)
TOUCH_EVERY = 60.0
#: bytes of an index read at a time
INDEX_READ = 1 << 20
_RECORD_MAX = 1 + MAX_MULTIHASH + 16
#: never through a link, never blocking on a FIFO planted under a pack's name
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK

_Record = tuple[bytes, int, int]  # multihash, offset, length


@dataclass(eq=False)
class Pack:
    """A pack this process knows of."""

    stem: str
    own: bool  # written by this process
    size: int = 0  # its file's bytes, counted against max_bytes
    ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the pack file indexed
    indexed: int = 0  # bytes of its index read or written so far
    ended: bool = False  # its index takes no more records (or none are read any more)
    touched: float = -math.inf  # when this process last refreshed its mtime
    blocks: list[bytes] = field(default_factory=list)


#: where a block lies: its pack, offset and length
Location = tuple[Pack, int, int]


@dataclass(eq=False)
class _Writer:
    """The pack this process appends to: its file (read-write) and its index's."""

    pack: Pack
    fd: int
    index_fd: int


class PackFolder:
    """The packs in ``root`` (see the module doc). Holds two descriptors while a pack is
    being written (the pack and its index)."""

    def __init__(self, root: str, max_bytes: int, rescan_every: float) -> None:
        """Scan ``root`` (made first). Raises :class:`OSError` if it cannot be made."""
        self.root = root
        self.max_bytes = max_bytes
        self.rescan_every = rescan_every
        #: where this process starts its next pack
        self.pack_bytes = max(1, min(PACK_BYTES, max_bytes // PACK_SHARE))
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the state below
        self._write_lock = threading.Lock()  # appends, and starting a pack
        self._scan_lock = threading.Lock()  # one rescan at a time
        self._packs: OrderedDict[str, Pack] = OrderedDict()  # by stem, oldest use first
        self._where: dict[bytes, Location] = {}  # multihash -> where its block lies
        self._used = 0
        self._verified: set[bytes] = set()  # written or hashed by this process
        self._writer: _Writer | None = None
        self._serial = 0
        self._scanned_at = -math.inf
        os.makedirs(root, exist_ok=True)
        self._rescan(start=True)

    @property
    def used(self) -> int:
        """Bytes of the packs this process knows to be in the folder."""
        return self._used

    def close(self) -> None:
        """Close the pack being written (a later append starts a new one)."""
        with self._write_lock:
            self._retire()

    def path(self, pack: Pack) -> str:
        """The pack's file."""
        return self._path(pack.stem, PACK_SUFFIX)

    def _path(self, stem: str, suffix: str) -> str:
        return os.path.join(self.root, stem + suffix)

    def _remove(self, stem: str) -> None:
        # the index first: a pack left without one is a leftover, never misread
        _unlink(self._path(stem, INDEX_SUFFIX))
        _unlink(self._path(stem, PACK_SUFFIX))

    # --- finding blocks --------------------------------------------------------------------

    def lookup(self, mh: bytes) -> Location | None:
        """Where the block lies, if a pack this process knows holds it (now its most
        recently used); on a miss, the folder is rescanned first when the last rescan is
        ``rescan_every`` old."""
        with self._lock:
            loc = self._where.get(mh)
            if loc is not None:
                self._packs.move_to_end(loc[0].stem)
                return loc
        if time.monotonic() - self._scanned_at < self.rescan_every:
            return None
        self._rescan()
        with self._lock:
            loc = self._where.get(mh)
            if loc is not None:
                self._packs.move_to_end(loc[0].stem)
            return loc

    def holds_verified(self, mh: bytes) -> bool:
        """Whether the block is here and this process knows its bytes are right."""
        with self._lock:
            return mh in self._verified

    def open(self, pack: Pack) -> int | None:
        """A new descriptor of ``pack`` for reading (the caller closes it); None, and the
        pack dropped, when its file is gone, is not the pack that was indexed, or cannot
        be opened (dropped too, so that a waiting answer asks the filler again rather
        than finding the block listed and unreadable, again and again)."""
        with self._lock:
            w = self._writer
            if w is not None and w.pack is pack:
                try:
                    return os.dup(w.fd)
                except OSError:
                    self._forget_locked(pack)
                    return None
        try:
            fd = os.open(self.path(pack), _READ_FLAGS)
        except OSError as exc:
            self._forget(pack)
            if exc.errno == errno.ELOOP:  # a link under a pack's name: never ours
                self._remove(pack.stem)
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            self._forget(pack)
            return None
        foreign = not stat.S_ISREG(st.st_mode) or st.st_size > PACK_LIMIT
        if foreign or (st.st_dev, st.st_ino) != pack.ident:
            # not the file that was indexed: dropped, never read or served (and removed
            # when it is nothing this cache could have written)
            os.close(fd)
            self._forget(pack)
            if foreign:
                self._remove(pack.stem)
            return None
        now = time.monotonic()
        if now - pack.touched >= TOUCH_EVERY:
            pack.touched = now
            try:
                os.utime(fd)
            except OSError:
                pass
        return fd

    def checked(self, cid: CID, loc: Location, fd: int) -> bytes | bool:
        """Whether the block at ``loc`` (its pack open as ``fd``) may be served: True
        when this process knows its bytes, its bytes when it hashed them just now, False
        (and the block forgotten) when they are not the block's."""
        mh = cid.multihash
        with self._lock:
            if mh in self._verified:
                return True
        _, offset, length = loc
        try:
            data = os.pread(fd, length, offset)
            cid.verify(data)
        except (HashMismatch, OSError):
            self.drop(mh, loc)  # a power cut's zeroes, a torn or damaged pack: never served
            return False
        with self._lock:
            if self._where.get(mh) == loc:
                self._verified.add(mh)
        return data

    def drop(self, mh: bytes, loc: Location) -> None:
        """Forget the block at ``loc`` (it cannot be read, or is wrong): it counts as
        absent; its bytes stay in its pack until the pack goes."""
        with self._lock:
            if self._where.get(mh) == loc:
                del self._where[mh]
                self._verified.discard(mh)

    # --- writing ---------------------------------------------------------------------------

    def append(self, mh: bytes, data: bytes | memoryview) -> None:
        """Keep a verified block (any thread): its bytes into this process's pack, then
        its record into the pack's index. Raises :class:`OSError` (the pack then takes no
        more: the next append starts another)."""
        n = len(data)
        with self._write_lock:
            try:
                w = self._writer_for(n)
                offset = w.pack.size
                _pwrite_all(w.fd, data, offset)
                # the record after the bytes: a crash leaves no record of absent bytes
                record = encode_record(mh, offset, n)
                if os.write(w.index_fd, record) != len(record):
                    raise OSError(errno.ENOSPC, "short write")
            except OSError:
                self._retire()
                raise
            with self._lock:
                pack = w.pack
                pack.size = offset + n
                pack.indexed += len(record)
                if self._packs.get(pack.stem) is not pack:
                    return  # found gone meanwhile: the block counts as absent
                self._used += n
                self._where[mh] = (pack, offset, n)
                pack.blocks.append(mh)
                self._verified.add(mh)
                self._packs.move_to_end(pack.stem)
                victims = self._evict_locked()
        for victim in victims:
            self._remove(victim.stem)

    def _writer_for(self, n: int) -> _Writer:
        """The pack to append ``n`` bytes to, a new one when the current one is full or
        was found gone (under the write lock)."""
        w = self._writer
        if w is not None and (w.pack.size == 0 or w.pack.size + n <= self.pack_bytes) \
                and w.pack.indexed + _RECORD_MAX <= INDEX_LIMIT \
                and self._packs.get(w.pack.stem) is w.pack:
            return w
        self._retire()
        while True:
            stem = pack_stem(self._pid, self._serial)
            self._serial += 1
            path = self._path(stem, PACK_SUFFIX)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue  # a dead process's with the same pid
            except FileNotFoundError:  # the folder was removed by hand: made again
                os.makedirs(self.root, exist_ok=True)
                continue
            try:
                index_fd = os.open(self._path(stem, INDEX_SUFFIX),
                                   os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            except OSError as exc:
                os.close(fd)
                _unlink(path)
                if isinstance(exc, FileExistsError):
                    continue
                raise
            break
        try:
            os.write(index_fd, INDEX_MAGIC)
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            os.close(index_fd)
            self._remove(stem)
            raise
        pack = Pack(stem, own=True, ident=(st.st_dev, st.st_ino),
                    indexed=len(INDEX_MAGIC), touched=time.monotonic())
        w = _Writer(pack, fd, index_fd)
        with self._lock:
            self._packs[stem] = pack
            self._writer = w
        return w

    def _retire(self) -> None:
        """Stop appending to the current pack (under the write lock; the descriptors are
        closed under the state lock too, so :meth:`open` never duplicates a closed one)."""
        with self._lock:
            w = self._writer
            self._writer = None
            for fd in (w.fd, w.index_fd) if w is not None else ():
                try:
                    os.close(fd)
                except OSError:
                    pass

    # --- the folder ------------------------------------------------------------------------

    def _rescan(self, start: bool = False) -> None:
        """Index the packs in the folder this process does not know yet, read on the
        indexes other live processes may still append to, forget packs whose files are
        gone; order the new packs by their times (at start, all of them)."""
        if not self._scan_lock.acquire(blocking=start):
            return  # another thread is at it
        try:
            self._scanned_at = time.monotonic()
            with self._lock:
                known = dict(self._packs)  # before listing: those missing from it are gone
            try:
                with os.scandir(self.root) as it:
                    entries = list(it)
            except OSError:
                entries = []
            found: dict[str, list[os.DirEntry[str] | None]] = {}
            newest: dict[int, int] = {}
            for entry in entries:
                stem, dot, suffix = entry.name.rpartition(".")
                ids = parse_stem(stem)
                if not dot or "." + suffix not in (PACK_SUFFIX, INDEX_SUFFIX) or ids is None:
                    continue  # not a pack's: left alone
                found.setdefault(stem, [None, None])[int("." + suffix == INDEX_SUFFIX)] = entry
                newest[ids[0]] = max(newest.get(ids[0], ids[1]), ids[1])
            adopted: list[tuple[int, Pack, list[_Record]]] = []
            for stem, (pack_entry, index_entry) in found.items():
                pid, serial = parse_stem(stem) or (0, 0)
                pack = known.get(stem)
                if pack is None:
                    got = self._adopt(stem, pid, pack_entry, index_entry)
                    if got is not None:
                        adopted.append(got)
                elif not pack.own and not pack.ended:
                    self._read_on(pack, closing=serial < newest[pid])
            for pack in [p for s, p in known.items() if s not in found]:
                self._forget(pack)  # removed by another process, or by hand
            adopted.sort(key=lambda a: a[0])  # least recently used first
            with self._lock:
                for _, pack, records in adopted:
                    if pack.stem in self._packs:
                        continue  # this process's own, started while the folder was listed
                    self._packs[pack.stem] = pack
                    self._used += pack.size
                    self._add_locked(pack, records)
                victims = self._evict_locked()
            for pack in victims:
                self._remove(pack.stem)
        finally:
            self._scan_lock.release()

    def _adopt(self, stem: str, pid: int, pack_entry: os.DirEntry[str] | None,
               index_entry: os.DirEntry[str] | None) -> tuple[int, Pack, list[_Record]] | None:
        """A pack found in the folder, read: ``(mtime, pack, records)``; None when it is
        removed or left for later."""
        live = pid != self._pid and _pid_alive(pid)
        if pack_entry is None or index_entry is None:
            if not live:  # killed between creating the two
                self._remove(stem)
            return None
        try:
            planted = not pack_entry.is_file(follow_symlinks=False) or \
                not index_entry.is_file(follow_symlinks=False)
        except OSError:
            return None
        if planted:
            self._remove(stem)
            return None
        pack = Pack(stem, own=False, ended=not live)
        read = self._read_index(pack)
        if read is None:
            self._remove(stem)
            return None
        records, whole = read
        try:  # after the index: every record read points into what the stat counts
            st = os.stat(self._path(stem, PACK_SUFFIX), follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > PACK_LIMIT or \
                (not live and not records):  # not a pack, or nothing in it
            self._remove(stem)
            return None
        pack.size = st.st_size
        pack.ident = (st.st_dev, st.st_ino)
        pack.ended = pack.ended or not whole
        return st.st_mtime_ns, pack, records

    def _read_on(self, pack: Pack, closing: bool) -> None:
        """Read the records another live process appended to ``pack`` since the last
        look (``closing``: it has started a newer pack, so this one is complete)."""
        read = self._read_index(pack)
        try:
            st = os.stat(self.path(pack), follow_symlinks=False)
        except OSError:
            st = None
        if read is None or st is None or (st.st_dev, st.st_ino) != pack.ident:
            self._forget(pack)
            return
        records, whole = read
        with self._lock:
            if self._packs.get(pack.stem) is not pack:
                return
            pack.ended = closing or not whole
            self._used += max(0, st.st_size - pack.size)
            pack.size = max(pack.size, st.st_size)
            if records:
                self._packs.move_to_end(pack.stem)  # just written: recently used
            self._add_locked(pack, records)
            victims = self._evict_locked()
        for victim in victims:
            self._remove(victim.stem)

    def _read_index(self, pack: Pack) -> tuple[list[_Record], bool] | None:
        """The records of ``pack``'s index from ``pack.indexed`` on (which it advances),
        and whether they end where the file does (else at a wrong record). None when the
        file is not an index (a link, a FIFO, too large, another magic)."""
        try:
            fd = os.open(self._path(pack.stem, INDEX_SUFFIX), _READ_FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > INDEX_LIMIT:
                return None
            pos = pack.indexed
            if pos == 0:
                head = os.pread(fd, len(INDEX_MAGIC), 0)
                if head != INDEX_MAGIC[: len(head)] or \
                        (len(head) < len(INDEX_MAGIC) and pack.ended):
                    return None
                if len(head) < len(INDEX_MAGIC):
                    return [], True  # being made by a live process: read again later
                pos = len(INDEX_MAGIC)
            out: list[_Record] = []
            while True:
                data = os.pread(fd, INDEX_READ, pos)
                records, used, wrong = parse_records(data, MAX_BLOCK_TRUSTLESS)
                out += [(r.multihash, r.offset, r.length) for r in records
                        if r.offset + r.length <= PACK_LIMIT]
                pos += used
                if wrong:
                    return out, False
                if used == 0 or len(data) < INDEX_READ:
                    pack.indexed = pos
                    return out, True
        except OSError:
            return None
        finally:
            os.close(fd)

    def _add_locked(self, pack: Pack, records: list[_Record]) -> None:
        for mh, offset, length in records:
            if mh not in self._where:  # a block already known elsewhere stays there
                self._where[mh] = (pack, offset, length)
                pack.blocks.append(mh)

    def _forget(self, pack: Pack) -> None:
        """Forget ``pack`` and its blocks (the pack being written too: the next append
        starts a new one)."""
        with self._lock:
            self._forget_locked(pack)

    def _forget_locked(self, pack: Pack) -> None:
        if self._packs.get(pack.stem) is not pack:
            return
        del self._packs[pack.stem]
        self._used -= pack.size
        for mh in pack.blocks:
            loc = self._where.get(mh)
            if loc is not None and loc[0] is pack:
                del self._where[mh]
                self._verified.discard(mh)

    def _evict_locked(self) -> list[Pack]:
        out: list[Pack] = []
        if self._used <= self.max_bytes:
            return out
        w = self._writer
        for pack in list(self._packs.values()):  # least recently used first
            if self._used <= self.max_bytes:
                break
            if w is not None and pack is w.pack:
                continue
            self._forget_locked(pack)
            out.append(pack)
        return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:
            raise OSError(errno.ENOSPC, "no space")
        view = view[n:]
        offset += n


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
