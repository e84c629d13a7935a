"""The disk cache: verified blocks kept on disk in pack files (several blocks to a file), a
served block source of its own.

Where blocks lie, how packs are written, found, shared with other processes and evicted
(least recently used, a whole pack at a time, within ``max_bytes``) is
:mod:`._packfolder`'s job; the index format is :mod:`._packindex`'s. A cached block goes
out with ``os.sendfile`` from its pack at its offset, one open file per pack and answer.
An earlier version's ``DIR/blocks`` folder (one file per block) is neither read nor
removed: delete it to get its space back.

**Crash safety.** There is no ``fsync``: one per block costs far more than the block at
GB/s, and a batch sync would hold every waiting answer back. A crash leaves at worst
bytes no index record points to, or a record cut short, which readers ignore; a power cut
(or a kernel crash) *can* leave an index whose records point at bytes that never reached
the disk (zeroes, or another block's). Neither is served as it is: a block this process
did not write itself — found at start, or written meanwhile by another carget sharing
the folder — is hashed once before its first use, and one that does not match is dropped
and counts as absent (its bytes stay in the pack until the pack goes). Blocks this process
wrote (or has hashed since) are sent without hashing again.

**Waiting.** :meth:`DiskCache.wait_for` (trio) returns once a block is in the cache; the
filler (:class:`Filler`, e.g. an upstream fetcher) is asked for it first. ``put`` wakes
the waiters from whatever thread it runs on, through each waiter's trio token: one call
for all the wakes trio has not run yet, not one per block. :meth:`~DiskCache.fail` wakes
them with the error that ends their wait.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Protocol

import trio

from ..car.decoder import MAX_BLOCK_TRUSTLESS
from ..cid import CID, RAW
from ..errors import CargetError, NotFoundError, OutputError, UsageError
from ..unixfs.node import identity_data
from ._packfolder import RESCAN_EVERY, Location, PackFolder
from .blocks import SPAN_FILES, SPAN_MIN, FileSpan, Want

__all__ = ["DEFAULT_CACHE_SIZE", "DiskCache", "Filler", "default_cache_dir", "parse_size"]

#: 10 GiB: a few VM images, small next to today's disks
DEFAULT_CACHE_SIZE = 10 << 30
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


class DiskCache:
    """Verified blocks on disk in ``root/packs``, at most ``max_bytes`` of them (see the
    module doc); blocks other processes write there are looked for at most once every
    ``rescan_every`` seconds. Thread-safe. Raises :class:`OutputError` if the folder
    cannot be made."""

    def __init__(self, root: str, max_bytes: int = DEFAULT_CACHE_SIZE,
                 filler: Filler | None = None, *,
                 rescan_every: float = RESCAN_EVERY) -> None:
        self.root = os.path.join(root, "packs")
        self.max_bytes = max_bytes
        self.filler = filler
        try:
            self.packs = PackFolder(self.root, max_bytes, rescan_every)
        except OSError as exc:
            raise OutputError(f"cannot use cache folder {root}: {exc.strerror or exc}") \
                from None
        self._lock = threading.Lock()  # the waiters
        self._waiters: dict[bytes, list[_Waiter]] = {}
        self._woken: dict[trio.lowlevel.TrioToken, list[_Waiter]] = {}

    def close(self) -> None:
        """Close the pack being written (the cache stays usable)."""
        self.packs.close()

    # --- the served-source protocol ------------------------------------------------------

    def _lookup(self, cid: CID) -> Location | None:
        return None if cid.is_identity else self.packs.lookup(cid.multihash)

    def get(self, cid: CID, /) -> bytes | None:
        inline = identity_data(cid)
        if inline is not None:
            return inline
        loc = self._lookup(cid)
        if loc is None:
            return None
        fd = self.packs.open(loc[0])
        if fd is None:
            return None
        try:
            ok = self.packs.checked(cid, loc, fd)
            if ok is False:
                return None
            if ok is not True:
                return ok  # hashed just now
            _, offset, length = loc
            data = os.pread(fd, length, offset)
            if len(data) == length:
                return data
        except OSError:
            pass
        finally:
            os.close(fd)
        self.packs.drop(cid.multihash, loc)  # unreadable now: absent, so asked for again
        return None

    def size(self, cid: CID, /) -> int | None:
        if cid.is_identity:
            data = identity_data(cid)
            return None if data is None else len(data)
        loc = self.packs.lookup(cid.multihash)
        return None if loc is None else loc[2]

    def is_leaf(self, cid: CID, /) -> bool:
        return cid.codec == RAW

    def read_into(self, cid: CID, buf: memoryview, /) -> int:
        data = self.get(cid)
        if data is None:
            raise KeyError(cid)
        buf[: len(data)] = data
        return len(data)

    def open_span(self, cid: CID, fds: dict[str, int], /) -> FileSpan | None:
        loc = self._lookup(cid)
        if loc is None or loc[2] < SPAN_MIN:
            return None
        pack, offset, length = loc
        path = self.packs.path(pack)
        fd = fds.pop(path, None)
        if fd is None:
            fd = self.packs.open(pack)
            if fd is None:
                return None
            while len(fds) >= SPAN_FILES:
                os.close(fds.pop(next(iter(fds))))
        fds[path] = fd  # now the most recently used
        if self.packs.checked(cid, loc, fd) is False:
            return None
        return FileSpan(fd, offset, length)

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
        is kept), :class:`OutputError` when the folder cannot take it, or it is larger
        than the cache or than a trustless gateway may send (the waiters are woken with
        that error)."""
        if cid.is_identity:
            self._wake(cid.multihash, None)
            return
        if not verified:
            cid.verify(data)
        mh = cid.multihash
        n = len(data)
        err: OutputError | None = None
        if n > self.max_bytes or n > MAX_BLOCK_TRUSTLESS:
            err = OutputError(f"block {cid} ({n} bytes) is larger than the cache takes")
        elif not self.packs.holds_verified(mh):
            try:
                self.packs.append(mh, data)
            except OSError as exc:
                err = OutputError(f"cannot write block {cid} to the cache: "
                                  f"{exc.strerror or exc}")
        self._wake(mh, err)
        if err is not None:
            raise err

    def fail(self, cid: CID, error: CargetError) -> None:
        """End every wait for ``cid`` with ``error`` (from any thread): the filler could
        not get it."""
        self._wake(cid.multihash, error)

    def _wake(self, mh: bytes, error: CargetError | None) -> None:
        calls: list[trio.lowlevel.TrioToken] = []
        with self._lock:
            waiters = self._waiters.pop(mh, None)
            if not waiters:
                return
            for w in waiters:
                if error is not None:
                    w.error.append(error)
                batch = self._woken.get(w.token)
                if batch is None:
                    self._woken[w.token] = [w]
                    calls.append(w.token)
                else:
                    batch.append(w)  # trio has yet to run the call that sets it
        for token in calls:
            try:
                token.run_sync_soon(self._set_woken, token)
            except trio.RunFinishedError:
                with self._lock:
                    self._woken.pop(token, None)

    def _set_woken(self, token: trio.lowlevel.TrioToken) -> None:
        with self._lock:
            batch = self._woken.pop(token, [])
        for w in batch:
            w.event.set()

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
        """Bytes of the packs this process knows to be in the folder."""
        return self.packs.used
