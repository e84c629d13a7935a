"""The disk cache: verified blocks kept on disk, a served block source of its own.

Layout: ``DIR/blocks/XX/<hex multihash>``, ``XX`` the multihash's last byte (digests are
uniform there, so 256 folders share the load). One file per block, the block's bytes and
nothing else, so a cached raw leaf goes out with ``os.sendfile`` like a local file.

**Writing.** :meth:`DiskCache.put` (any thread) writes a temporary
``.tmp-<pid>-<n>`` beside the final name and renames it over: a process that dies at any
point leaves either no block or the whole block under its name, never a part. There is
no ``fsync``: one per block costs far more than the block at GB/s, and a batch sync would
hold every waiting answer back. So a power cut (or a kernel crash) *can* leave a block
file whose data never reached the disk (empty, short or zeroed) under its final name.
It is never served as it is: a block this process did not write itself — found at start,
or written meanwhile by another carget sharing the folder — is hashed once before its
first use, and a file that does not match is deleted and counts as absent. Blocks this
process wrote (or has hashed since) are sent without hashing again.

**Temporaries.** A leftover ``.tmp-<pid>-…`` whose process is gone is removed at start;
those of a live process (another carget sharing the folder) are left alone. Temporaries
are never taken for blocks: their names are not multihashes.

**Size and eviction.** ``max_bytes`` bounds the blocks this process knows of (found at
start, written or seen since); past it, the least recently used are deleted. Recency is
kept in memory, rebuilt at start from the files' modification times (a block's mtime is
refreshed the first time this process uses it). Two processes sharing the folder each
enforce the bound over what they know: one may delete a block the other still lists; the
other then finds the file gone, drops it and treats it as absent (an open span keeps its
bytes until sent: the file is only unlinked).

**Waiting.** :meth:`wait_for` (trio) returns once a block is in the cache; the filler
(:class:`Filler`, e.g. an upstream fetcher) is asked for it first. ``put`` wakes the
waiters from whatever thread it runs on, through each waiter's trio token;
:meth:`fail` wakes them with the error that ends their wait.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import trio

from ..car.decoder import MAX_BLOCK_TRUSTLESS
from ..cid import CID, RAW
from ..errors import CargetError, HashMismatch, NotFoundError, OutputError, UsageError
from ..unixfs.node import identity_data
from .blocks import SPAN_FILES, SPAN_MIN, FileSpan, Want

__all__ = ["DEFAULT_CACHE_SIZE", "DiskCache", "Filler", "default_cache_dir", "parse_size"]

#: 10 GiB: a few VM images, small next to today's disks
DEFAULT_CACHE_SIZE = 10 << 30
_TMP = ".tmp-"
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20,
          "mb": 1000 ** 2, "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30,
          "t": 1 << 40, "tb": 1000 ** 4, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """``512MiB``, ``10GiB``, ``10G`` (binary), ``2GB`` (decimal) or plain bytes. Raises
    :class:`UsageError`."""
    t = text.strip().lower().replace(" ", "")
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"{text!r} is not a size (e.g. 512MiB, 10GiB)") from None
    if unit not in _UNITS or value < 0:
        raise UsageError(f"{text!r} is not a size (e.g. 512MiB, 10GiB)")
    return int(value * _UNITS[unit])


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/carget``, else ``~/.cache/carget``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".cache")
    return os.path.join(base, "carget")


class Filler(Protocol):
    """Gets blocks into the cache (an upstream fetcher): ``request`` starts getting
    ``cid`` (``want`` says what answer it is for, so whole runs can be fetched) and
    returns at once; it later calls :meth:`DiskCache.put` or :meth:`DiskCache.fail`.
    Called on the server's trio thread."""

    def request(self, cid: CID, want: Want | None) -> None: ...


@dataclass(eq=False)
class _Waiter:
    token: trio.lowlevel.TrioToken
    event: trio.Event
    error: list[CargetError] = field(default_factory=list)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DiskCache:
    """Verified blocks on disk under ``root``, at most ``max_bytes`` of them (see the
    module doc). Thread-safe. Raises :class:`OutputError` if the folder cannot be made."""

    def __init__(self, root: str, max_bytes: int = DEFAULT_CACHE_SIZE,
                 filler: Filler | None = None) -> None:
        self.root = os.path.join(root, "blocks")
        self.max_bytes = max_bytes
        self.filler = filler
        self._lock = threading.Lock()
        self._lru: OrderedDict[bytes, int] = OrderedDict()  # multihash -> size, oldest first
        self._used = 0
        self._verified: set[bytes] = set()  # written or hashed by this process
        self._touched: set[bytes] = set()  # mtime refreshed by this process
        self._waiters: dict[bytes, list[_Waiter]] = {}
        self._serial = itertools.count()
        self._folders: set[str] = set()  # block folders made or seen by this process
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use cache folder {root}: {exc.strerror or exc}") \
                from None
        self._scan()

    # --- the folder ----------------------------------------------------------------------

    def _path(self, mh: bytes) -> str:
        return os.path.join(self.root, f"{mh[-1]:02x}", mh.hex())

    def _scan(self) -> None:
        """Index the blocks already there (oldest first), remove dead temporaries."""
        found: list[tuple[int, bytes, int]] = []
        with os.scandir(self.root) as subs:
            for sub in subs:
                if not sub.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(sub.path) as it:
                    for entry in it:
                        name = entry.name
                        if name.startswith(_TMP):
                            pid = name[len(_TMP):].partition("-")[0]
                            if not pid.isdigit() or not _pid_alive(int(pid)):
                                _unlink(entry.path)
                            continue
                        try:
                            mh = bytes.fromhex(name)
                            st = entry.stat(follow_symlinks=False)
                        except (ValueError, OSError):
                            continue
                        if mh and entry.is_file(follow_symlinks=False):
                            found.append((st.st_mtime_ns, mh, st.st_size))
        found.sort()
        with self._lock:
            for _, mh, size in found:
                self._lru[mh] = size
                self._used += size
            victims = self._evict_locked(None)
        for path in victims:
            _unlink(path)

    def _evict_locked(self, keep: bytes | None) -> list[str]:
        out: list[str] = []
        while self._used > self.max_bytes and self._lru:
            mh = next(iter(self._lru))
            if mh == keep:
                if len(self._lru) == 1:
                    break
                self._lru.move_to_end(mh)
                continue
            self._used -= self._lru.pop(mh)
            self._verified.discard(mh)
            self._touched.discard(mh)
            out.append(self._path(mh))
        return out

    def _forget(self, mh: bytes) -> None:
        with self._lock:
            size = self._lru.pop(mh, None)
            if size is not None:
                self._used -= size
            self._verified.discard(mh)

    def _lookup(self, cid: CID) -> int | None:
        """The block's size if the folder has it (another process may have put it)."""
        mh = cid.multihash
        with self._lock:
            size = self._lru.get(mh)
            if size is not None:
                self._lru.move_to_end(mh)
                return size
        try:
            st = os.stat(self._path(mh))
        except OSError:
            return None
        with self._lock:
            if mh not in self._lru:
                self._lru[mh] = st.st_size
                self._used += st.st_size
            victims = self._evict_locked(mh)
        for path in victims:
            _unlink(path)
        return st.st_size

    def _open_checked(self, cid: CID) -> int | None:
        """An open descriptor of the block's file, hashed first unless this process
        already knows its bytes; None (and the file dropped) when absent or wrong."""
        mh = cid.multihash
        path = self._path(mh)
        try:
            # never through a link, never blocking on a FIFO planted under a block's name
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            self._forget(mh)
            if exc.errno == errno.ELOOP:  # a link under a block's name: never ours
                _unlink(path)
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            self._forget(mh)
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BLOCK_TRUSTLESS:
            # not a block this cache could have written: dropped, never read or served
            os.close(fd)
            self._forget(mh)
            _unlink(path)
            return None
        if mh not in self._verified:
            try:
                cid.verify(_read_all(fd))
            except (HashMismatch, OSError):
                os.close(fd)
                self._forget(mh)
                _unlink(path)  # a torn write from a power cut, or damage: never served
                return None
            with self._lock:
                self._verified.add(mh)
        if mh not in self._touched:
            self._touched.add(mh)
            try:
                os.utime(fd)
            except OSError:
                pass
        return fd

    # --- the served-source protocol ------------------------------------------------------

    def get(self, cid: CID, /) -> bytes | None:
        inline = identity_data(cid)
        if inline is not None:
            return inline
        if self._lookup(cid) is None:
            return None
        fd = self._open_checked(cid)
        if fd is None:
            return None
        try:
            return _read_all(fd)
        except OSError:
            return None
        finally:
            os.close(fd)

    def size(self, cid: CID, /) -> int | None:
        if cid.is_identity:
            data = identity_data(cid)
            return None if data is None else len(data)
        return self._lookup(cid)

    def is_leaf(self, cid: CID, /) -> bool:
        return cid.codec == RAW

    def read_into(self, cid: CID, buf: memoryview, /) -> int:
        data = self.get(cid)
        if data is None:
            raise KeyError(cid)
        buf[: len(data)] = data
        return len(data)

    def open_span(self, cid: CID, fds: dict[str, int], /) -> FileSpan | None:
        size = self._lookup(cid) if not cid.is_identity else None
        if size is None or size < SPAN_MIN:
            return None
        path = self._path(cid.multihash)
        fd = fds.pop(path, None)
        if fd is None:
            fd = self._open_checked(cid)
            if fd is None:
                return None
            while len(fds) >= SPAN_FILES:
                os.close(fds.pop(next(iter(fds))))
        fds[path] = fd  # now the most recently used
        return FileSpan(fd, 0, size)

    def data_span(self, cid: CID, fds: dict[str, int], /) -> FileSpan | None:
        return self.open_span(cid, fds) if cid.codec == RAW else None

    def in_memory(self, cid: CID, /) -> bytes | None:
        return None

    def __contains__(self, cid: CID) -> bool:
        return self.size(cid) is not None

    # --- filling -------------------------------------------------------------------------

    def put(self, cid: CID, data: bytes | memoryview, *, verified: bool = False) -> None:
        """Keep ``cid``'s block (from any thread) and wake whoever waits for it.

        ``data`` is hashed unless ``verified`` says the caller just did (the fetcher's
        verifier). Raises :class:`HashMismatch` for bytes that are not the block (nothing
        is kept), :class:`OutputError` when the folder cannot take it (the waiters are
        woken with that error)."""
        if cid.is_identity:
            self._wake(cid.multihash, None)
            return
        if not verified:
            cid.verify(data)
        mh = cid.multihash
        n = len(data)
        if n > self.max_bytes:
            err = OutputError(f"block {cid} ({n} bytes) is larger than the cache")
            self._wake(mh, err)
            raise err
        path = self._path(mh)
        folder = os.path.dirname(path)
        tmp = os.path.join(folder, f"{_TMP}{os.getpid()}-{next(self._serial)}")
        try:
            fd = self._create(folder, tmp)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError as exc:
            _unlink(tmp)
            err = OutputError(f"cannot write block {cid} to the cache: {exc.strerror or exc}")
            self._wake(mh, err)
            raise err from None
        with self._lock:
            old = self._lru.pop(mh, None)
            self._used += n - (old or 0)
            self._lru[mh] = n
            self._verified.add(mh)
            self._touched.add(mh)
            victims = self._evict_locked(mh)
        for victim in victims:
            _unlink(victim)
        self._wake(mh, None)

    def _create(self, folder: str, tmp: str) -> int:
        """Create the temporary ``tmp`` in ``folder``, making the folder first unless this
        process knows it (a ``mkdir`` per block showed up in every put); a folder removed
        meanwhile is made again."""
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def fail(self, cid: CID, error: CargetError) -> None:
        """End every wait for ``cid`` with ``error`` (from any thread): the filler could
        not get it."""
        self._wake(cid.multihash, error)

    def _wake(self, mh: bytes, error: CargetError | None) -> None:
        with self._lock:
            waiters = self._waiters.pop(mh, [])
        for w in waiters:
            if error is not None:
                w.error.append(error)
            try:
                w.token.run_sync_soon(w.event.set)
            except trio.RunFinishedError:
                pass

    async def wait_for(self, cid: CID, want: Want | None = None) -> None:
        """Return once ``cid`` is in the cache, asking the filler for it. Raises
        :class:`NotFoundError` when there is no filler, and the filler's error (given to
        :meth:`fail`) when it could not get the block. Cancel it with a timeout."""
        if self.size(cid) is not None:
            return
        if self.filler is None:
            raise NotFoundError(f"block {cid} is not held here, and no upstream is set")
        mh = cid.multihash
        me = _Waiter(trio.lowlevel.current_trio_token(), trio.Event())
        with self._lock:
            self._waiters.setdefault(mh, []).append(me)
        try:
            if self.size(cid) is not None:  # put between the check and the registration
                return
            self.filler.request(cid, want)
            await me.event.wait()
        finally:
            with self._lock:
                waiting = self._waiters.get(mh)
                if waiting is not None and me in waiting:
                    waiting.remove(me)
                    if not waiting:
                        del self._waiters[mh]
        if me.error:
            raise me.error[0]

    @property
    def used(self) -> int:
        """Bytes of the blocks this process knows to be in the folder."""
        return self._used


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise OSError("short read")
    return data


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
