"""Where verified bytes go: a file written atomically (with a resume journal), a directory
tree, or stdout. Blocking code, called from worker threads; no trio here.

Nothing unverified ever reaches the output path: a file is written to
``OUT.carget-partial`` beside it (``pwrite`` at each leaf's offset, so split streams and
resumes write in any order) and renamed only when every byte is placed; a tree is built in
a temporary directory beside ``OUT`` and renamed at the end. An interrupted file download
keeps its partial file and ``OUT.carget-journal``: the verified DAG nodes (so the next run
can re-derive every leaf CID from the root), the frames of dag-pb leaves, and the byte
ranges written. The next run re-hashes the kept leaves before trusting them.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import functools
import hashlib
import json
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Final, Protocol, cast

from ..cid import CID, RAW
from ..errors import (
    IncompleteDAG,
    InputError,
    OutputError,
    UnixFSError,
    UnsafePathError,
    UsageError,
)
from ..names import is_safe_name, join
from ..safetree import SafeTree, is_real_dir, open_beside, remove_tree
from ..unixfs.node import decode_unixfs
from .verifier import EntityStart, FileData, InnerNode, SymlinkEntry, VerifierEvent

__all__ = [
    "JOURNAL_SUFFIX",
    "PARTIAL_SUFFIX",
    "EventOutput",
    "FileOutput",
    "StreamOutput",
    "TreeLedger",
    "TreeOutput",
    "Under",
    "file_digest",
    "parse_digest",
]

PARTIAL_SUFFIX: Final = ".carget-partial"
JOURNAL_SUFFIX: Final = ".carget-journal"
#: the journal is rewritten after this many newly written bytes (and at the end): a
#: SIGKILL loses at most this much progress, and the rewrite cost stays negligible
JOURNAL_EVERY: Final = 16 << 20
#: ... or after this many seconds, so a slow download killed hard loses little too
JOURNAL_SECONDS: Final = 1.0
JOURNAL_VERSION: Final = 1
_READ: Final = 1 << 20
#: pieces per pwritev (Linux's IOV_MAX)
_IOV_MAX: Final = 1024


def parse_digest(text: str) -> tuple[str, str]:
    """``sha256:HEX`` / ``sha512:HEX`` → (algorithm, lower-case hex). Raises UsageError."""
    algo, sep, hexd = text.partition(":")
    algo = algo.lower()
    size = {"sha256": 64, "sha512": 128}.get(algo)
    if not sep or size is None:
        raise UsageError(f"digest {text!r} must be sha256:HEX or sha512:HEX")
    hexd = hexd.lower()
    if len(hexd) != size or any(c not in "0123456789abcdef" for c in hexd):
        raise UsageError(f"digest {text!r} has a malformed hex value")
    return algo, hexd


def file_digest(path: str, algo: str) -> str:
    """``algo:HEX`` of a file's contents (read in 1 MiB pieces; hashlib drops the GIL)."""
    h = hashlib.new(algo)
    buf = bytearray(_READ)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return f"{algo}:{h.hexdigest()}"


def recheck(fd: int, cid: CID, offset: int, size: int, nodes: dict[str, bytes],
            frames: dict[str, tuple[bytes, bytes]], claimed: list[list[int]],
            good: list[tuple[int, int]],
            emit: Callable[[CID, bytes | memoryview], None] | None = None) -> None:
    """Append to ``good`` the ranges of the file ``fd`` under the DAG node ``cid`` (at
    ``offset``, ``size`` bytes) that ``claimed`` says were written AND whose leaves re-hash
    to the CIDs the DAG gives. ``nodes`` (inner blocks by CID text) and ``frames`` (the
    dag-pb bytes around a leaf's data) come from a journal: each node is checked against
    its CID before it is believed, so a tampered journal vouches for nothing. ``emit``
    gets every block so verified (``--car`` of a resumed run must hold them too). A loop
    in file order, not recursion: a file DAG from outside may be any depth."""
    stack = [(cid, offset, size)]
    while stack:
        cid, offset, size = stack.pop()
        whole = any(a <= offset and offset + size <= b for a, b in claimed)
        if not whole and not any(a < offset + size and offset < b for a, b in claimed):
            continue  # nothing of this subtree was written
        key = str(cid)
        block = nodes.get(key)
        if block is not None and cid.codec != RAW:
            try:
                cid.verify(block)
                node = decode_unixfs(cid, block)
            except Exception:  # a tampered journal: trust nothing below this node
                continue
            if node.links:
                if emit is not None:
                    emit(cid, block)
                stack.extend(reversed([(link.cid, offset + a, b - a)
                                       for link, a, b in node.file_children()]))
                continue
        if not whole:
            continue
        data = os.pread(fd, size, offset)
        if len(data) != size:
            continue
        prefix, suffix = frames.get(key, (b"", b""))
        leaf = prefix + data + suffix if key in frames else data
        try:
            cid.verify(leaf)
        except Exception:
            continue
        if emit is not None:
            emit(cid, leaf)
        good.append((offset, offset + size))


def leaf_block(ev: FileData) -> bytes | memoryview:
    """The whole block a file leaf came in (its dag-pb framing around the data, if any)."""
    return ev.frame[0] + bytes(ev.data) + ev.frame[1] if ev.frame is not None else ev.data


def _cat_other(ev: VerifierEvent, on_block: Callable[[CID, bytes | memoryview], None] | None
               ) -> None:
    """What ``cat``'s outputs do with an event that is not file bytes: refuse anything but
    one file, pass inner blocks on to ``--car``."""
    if isinstance(ev, EntityStart) and ev.kind != "file":
        raise UsageError(f"{ev.cid} is a {ev.kind}: cat needs a file")
    if isinstance(ev, SymlinkEntry):
        raise UsageError("cat of a symlink: fetch its target instead")
    if isinstance(ev, InnerNode) and on_block is not None:
        on_block(ev.cid, ev.data)


def _merge(ranges: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


@contextmanager
def _writing(where: str) -> Iterator[None]:
    """An OSError from writing the output becomes :class:`OutputError`; BrokenPipeError
    (a ``cat`` reader that went away) passes, and the command line words it itself."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from None


def reserve(fd: int, size: int) -> None:
    """Allocate the first ``size`` bytes of the file's blocks now (Linux ``fallocate``,
    mode 0: bytes already there stay), so a disk without room for the download fails
    at its start rather than near its end, and the writes that follow skip ext4's
    per-page delayed allocation (512 MiB of 1 MiB pwrites: 0.088 s fresh, 0.051 s into
    reserved blocks). A filesystem that cannot reserve ahead just allocates as bytes
    are written. Raises :class:`OSError` when there is no room (ENOSPC, EFBIG, EDQUOT)."""
    call = _fallocate()
    if call is None or size <= 0:
        return
    import ctypes

    while call(fd, 0, 0, size) != 0:
        err = ctypes.get_errno()
        if err == errno.EINTR:
            continue
        if err in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise OSError(err, os.strerror(err))
        return  # EOPNOTSUPP and the like: allocated as written instead


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):  # pragma: no cover - a libc without fallocate
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", fn)


class FileOutput:
    """A single file assembled at ``path`` from verified leaves, resumable.

    Thread-safe: several streams' worker threads call :meth:`handle` at once.
    """

    def __init__(self, path: str, cid: CID, size: int, *, target: str = "") -> None:
        self.path = path
        self.cid = cid
        self.size = size
        self.target = target
        self.partial = path + PARTIAL_SUFFIX
        self.journal_path = path + JOURNAL_SUFFIX
        self._lock = threading.Lock()
        self._done: list[list[int]] = []
        self._nodes: dict[str, str] = {}
        self._frames: dict[str, list[str]] = {}
        self._since_journal = 0
        self._journal_at = time.monotonic()
        self.written = 0
        self.on_block: Callable[[CID, bytes | memoryview], None] | None = None
        # the whole-file digest, computed as the file fills in (see _digest_step)
        self._digest: Any = None
        self._digest_algo = ""
        self._hashed = 0
        self._dlock = threading.Lock()
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise InputError(f"output directory {parent} does not exist")
        if os.path.isdir(path):
            raise InputError(f"{path} is a directory")
        if os.path.isdir(self.partial) and not os.path.islink(self.partial):
            # an interrupted tree's partial directory at this name: another target now
            remove_tree(self.partial)
            for p in (self.journal_path, self.journal_path + ".tmp"):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        if os.path.islink(self.partial):  # planted: trust neither it nor the journal
            os.unlink(self.partial)
            for p in (self.journal_path, self.journal_path + ".tmp"):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        created = not os.path.lexists(self.partial)
        self._fd = open_beside(self.partial, os.O_RDWR | os.O_CREAT)
        try:
            if os.fstat(self._fd).st_size != size:
                os.ftruncate(self._fd, size)
            reserve(self._fd, size)
        except OSError as exc:
            os.close(self._fd)
            if created:
                os.unlink(self.partial)
            raise OutputError(f"no room for {size} bytes at {self.partial}: "
                              f"{exc.strerror or exc}") from None

    # --- resume ---------------------------------------------------------------------------

    def resume(self) -> list[tuple[int, int]]:
        """Ranges of the partial file that a journal vouches for AND whose leaves re-hash
        to the CIDs the (re-verified) DAG gives. Unusable journals are ignored."""
        try:
            with open(self.journal_path, encoding="utf-8") as f:
                doc = json.load(f)
            if (doc.get("version") != JOURNAL_VERSION or doc.get("cid") != str(self.cid)
                    or doc.get("size") != self.size):
                return []
            nodes = {k: base64.b64decode(v) for k, v in doc["nodes"].items()}
            frames = {k: (bytes.fromhex(a), bytes.fromhex(b)) for k, (a, b) in
                      doc["frames"].items()}
            claimed = _merge([[int(a), int(b)] for a, b in doc["done"]])
        except (OSError, ValueError, KeyError, TypeError):
            return []
        good: list[tuple[int, int]] = []
        self._recheck(self.cid, 0, self.size, nodes, frames, claimed, good)
        self._done = _merge([list(r) for r in good])
        self._nodes = {k: base64.b64encode(v).decode() for k, v in nodes.items()}
        self._frames = {k: [a.hex(), b.hex()] for k, (a, b) in frames.items()}
        return [(a, b) for a, b in self._done]

    def _recheck(self, cid: CID, offset: int, size: int, nodes: dict[str, bytes],
                 frames: dict[str, tuple[bytes, bytes]], claimed: list[list[int]],
                 good: list[tuple[int, int]]) -> None:
        recheck(self._fd, cid, offset, size, nodes, frames, claimed, good, self.on_block)

    # --- writing --------------------------------------------------------------------------

    def handle(self, events: list[VerifierEvent]) -> int:
        """Write the file bytes among ``events``; remember nodes and frames. Returns the
        number of file bytes written. Raises :class:`UnixFSError` on a leaf past the end,
        :class:`OutputError` when a write fails (a full disk).

        Runs of adjacent leaves go to the file in one ``pwritev`` (a 1 MiB piece holds
        four 256 KiB leaves: a quarter of the system calls)."""
        with _writing(self.partial):
            return self._handle(events)

    def _handle(self, events: list[VerifierEvent]) -> int:
        written = 0
        run: list[bytes | memoryview] = []
        run_at = run_end = 0
        for ev in events:
            if isinstance(ev, FileData):
                end = ev.offset + len(ev.data)
                if end > self.size:
                    raise UnixFSError(f"leaf {ev.cid} ends at {end}, past the file's {self.size}")
                if len(ev.data):
                    if run and (ev.offset != run_end or len(run) >= _IOV_MAX):
                        self._write_run(run, run_at)
                        run = []
                    if not run:
                        run_at = ev.offset
                    run.append(ev.data)
                    run_end = end
                written += len(ev.data)
                if ev.frame is not None:
                    with self._lock:
                        self._frames[str(ev.cid)] = [ev.frame[0].hex(), ev.frame[1].hex()]
                if self.on_block is not None:
                    self.on_block(ev.cid, leaf_block(ev))
            elif isinstance(ev, InnerNode):
                with self._lock:
                    key = str(ev.cid)
                    if key not in self._nodes and ev.cid.codec != RAW:
                        self._nodes[key] = base64.b64encode(ev.data).decode()
                if self.on_block is not None:
                    self.on_block(ev.cid, ev.data)
        if run:
            self._write_run(run, run_at)
        with self._lock:
            self.written += written
            self._since_journal += written
            if self._since_journal >= JOURNAL_EVERY or (
                    written and time.monotonic() - self._journal_at >= JOURNAL_SECONDS):
                self._write_journal_locked()
        return written

    def _write_run(self, run: list[bytes | memoryview], offset: int) -> None:
        """Write adjacent pieces at ``offset`` (looping over short writes), then record
        them as done (only now: another stream's digest may read them back) and advance
        the whole-file digest over them."""
        want = sum(len(p) for p in run)
        done = os.pwritev(self._fd, run, offset) if len(run) > 1 else os.pwrite(
            self._fd, run[0], offset)
        if done < want:  # short write (a full disk raises; this is just being careful)
            rest = b"".join(run)[done:]
            while rest:
                n = os.pwrite(self._fd, rest, offset + done)
                done += n
                rest = rest[n:]
        with self._lock:
            self._done.append([offset, offset + want])
        if self._digest is not None:
            for piece in run:
                self._digest_step(offset, piece)
                offset += len(piece)

    # --- the whole-file digest -------------------------------------------------------------

    def start_digest(self, algo: str) -> None:
        """Compute ``algo`` over the file while it is written, instead of reading the whole
        file again at the end (lima checks every download's digest)."""
        self._digest = hashlib.new(algo)
        self._digest_algo = algo
        self._hashed = 0

    @property
    def digesting(self) -> bool:
        """True while a whole-file digest is computed as the file fills in."""
        return self._digest is not None

    def _digest_step(self, offset: int, data: bytes | memoryview) -> None:
        """Advance the digest's frontier. Bytes that continue it are hashed from memory as
        they are written; a stretch another stream wrote earlier is read back (from the
        page cache) once the frontier reaches it. A thread that finds another one busy here
        skips: whatever it wrote is read back later, so nothing is missed or hashed twice."""
        if not self._dlock.acquire(blocking=False):
            return
        try:
            if offset == self._hashed:
                self._digest.update(data)
                self._hashed += len(data)
            self._catch_up_locked()
        finally:
            self._dlock.release()

    def _catch_up_locked(self) -> None:
        with self._lock:
            self._done = _merge(self._done)
            end = next((b for a, b in self._done if a <= self._hashed < b), self._hashed)
        while self._hashed < end:
            piece = os.pread(self._fd, min(_READ, end - self._hashed), self._hashed)
            if not piece:
                raise OSError(f"{self.partial} is shorter than the bytes written to it")
            self._digest.update(piece)
            self._hashed += len(piece)

    def finish_digest(self) -> str:
        """``algo:HEX`` of the complete file (call once every byte is written)."""
        assert self._digest is not None
        with self._dlock:
            self._catch_up_locked()
            if self._hashed != self.size:
                raise IncompleteDAG(f"digest stopped at byte {self._hashed} of {self.size}")
            return f"{self._digest_algo}:{self._digest.hexdigest()}"

    def covered(self) -> bool:
        with self._lock:
            self._done = _merge(self._done)
            return self.size == 0 or self._done == [[0, self.size]]

    def missing(self) -> list[tuple[int, int]]:
        with self._lock:
            self._done = _merge(self._done)
            out: list[tuple[int, int]] = []
            pos = 0
            for a, b in self._done:
                if a > pos:
                    out.append((pos, a))
                pos = max(pos, b)
            if pos < self.size:
                out.append((pos, self.size))
            return out

    def write_journal(self) -> None:
        with self._lock:
            self._write_journal_locked()

    def _write_journal_locked(self) -> None:
        self._since_journal = 0
        self._journal_at = time.monotonic()
        self._done = _merge(self._done)
        doc = {"version": JOURNAL_VERSION, "target": self.target, "cid": str(self.cid),
               "size": self.size, "done": self._done, "nodes": self._nodes,
               "frames": self._frames}
        tmp = self.journal_path + ".tmp"
        fd = open_beside(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, self.journal_path)

    # --- ending ---------------------------------------------------------------------------

    def commit(self) -> None:
        """Rename the complete partial file to ``path`` and drop the journal.

        No fsync: the rename is what makes the file appear whole to other processes, and
        forcing 512 MiB to disk cost ~15% of a loopback fetch (bench_fetch.py); a crash
        right after is covered by the digest check a careful caller runs anyway."""
        os.close(self._fd)
        self._fd = -1
        os.replace(self.partial, self.path)
        for p in (self.journal_path, self.journal_path + ".tmp"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def abandon(self, keep: bool) -> None:
        """Stop. ``keep`` (interrupted, resumable) writes the journal; otherwise the
        partial file and journal are removed."""
        if self._fd >= 0:
            if keep:
                self.write_journal()
            os.close(self._fd)
            self._fd = -1
        if not keep or not os.path.exists(self.journal_path):
            for p in (self.partial, self.journal_path, self.journal_path + ".tmp"):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass


class TreeLedger:
    """What of a tree is in place, for continuing after a failed answer (sans-IO): each
    entity announced (kind, CID, size), each file's bytes and each symlink received, and
    each plain directory's entries (the node right after its EntityStart). HAMT shards
    are not listed: a sharded directory is fetched again whole."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, CID, int]] = {}  # path -> (kind, cid, size)
        self.got: dict[str, int] = {}  # file path -> bytes written (a symlink: 1)
        self.links: dict[str, list[tuple[str, CID]]] = {}  # directory path -> entries
        self._pending_dir: tuple[str, CID] | None = None  # announced, node not yet seen

    def start(self, ev: EntityStart) -> None:
        self.entries[ev.path] = (ev.kind, ev.cid, ev.size or 0)
        if ev.kind == "directory":
            self._pending_dir = (ev.path, ev.cid)
        elif ev.kind == "file":
            self.got[ev.path] = 0

    def got_bytes(self, path: str, n: int) -> None:
        self.got[path] = self.got.get(path, 0) + n

    def directory(self, ev: InnerNode) -> tuple[str, CID] | None:
        """Note a directory's node if it is the one just announced: returns its (path,
        CID) when its entries were listed."""
        if self._pending_dir is None or self._pending_dir[1] != ev.cid:
            return None
        path, cid = self._pending_dir
        self._pending_dir = None
        try:
            node = decode_unixfs(cid, bytes(ev.data))
        except Exception:  # verified already; anything odd just means "fetch it whole"
            return None
        if node.kind != "directory":
            return None
        self.links[path] = [(link.name or "", link.cid) for link in node.links]
        return path, cid

    def complete(self, path: str) -> bool:
        """Everything under ``path`` is in place (a loop over the subtree, no recursion)."""
        stack = [path]
        while stack:
            p = stack.pop()
            entry = self.entries.get(p)
            if entry is None:
                return False
            kind, _, size = entry
            if kind == "file":
                if self.got.get(p, -1) < size:
                    return False
            elif kind == "symlink":
                if p not in self.got:
                    return False
            else:
                links = self.links.get(p)
                if links is None:
                    return False
                stack.extend(f"{p}/{name}" if p else name for name, _ in links)
        return True

    def remaining(self, path: str, cid: CID) -> list[tuple[str, CID]]:
        """What is still missing under ``path`` (the entity ``cid``) after a failed answer,
        as (path, cid) subtrees to ask for, in DAG order: nothing if it is complete, its
        incomplete entries if it is a directory whose entries are known, else the whole
        of it."""
        out: list[tuple[str, CID]] = []
        stack = [(path, cid)]
        while stack:
            p, c = stack.pop()
            if self.complete(p):
                continue
            links = self.links.get(p)
            entry = self.entries.get(p)
            if (links is None or entry is None or entry[1] != c
                    or not all(is_safe_name(name) for name, _ in links)):
                out.append((p, c))  # the verifier refuses bad names: ask for all of it
                continue
            stack.extend(reversed([(f"{p}/{name}" if p else name, child)
                                   for name, child in links]))
        return out

    def file_bytes(self) -> int:
        """Bytes of all the files in the tree (each counted once)."""
        return sum(size for kind, _, size in self.entries.values() if kind == "file")


class TreeOutput:
    """A directory tree built under a directory beside ``path`` and renamed into place by
    :meth:`commit`. Names and depth were checked by the verifier (:mod:`carget.names`);
    every path is written through :class:`~carget.safetree.SafeTree`, so nothing is
    opened or created through a symlink, and symlinks are made only at :meth:`commit`,
    last, and kept only if each resolves inside the tree on disk.

    Only the file being written is open: a tree's files arrive one after another (DFS),
    and a tree of thousands of files must not run into the open-files limit (256 on
    macOS, often 1024 on Linux).

    Resumable when ``cid`` is given: the tree is built in ``path.carget-partial/`` and a
    journal (``path.carget-journal``, one JSON line per verified directory and finished
    file, with the blocks needed to check it again) grows as it fills in. An interrupted
    run keeps both (:meth:`abandon` with ``keep``); the next run for the same CID
    re-verifies them (:meth:`resume`: directory blocks against their CIDs, files leaf by
    leaf from disk) and asks only for what is still missing. No walk here recurses, so
    a tree as deep as the names rules allow is handled like any other."""

    def __init__(self, path: str, cid: CID | None = None, target: str = "") -> None:
        self.path = path
        self.cid = cid
        parent = os.path.dirname(os.path.abspath(path)) or "."
        if os.path.lexists(path):
            raise InputError(f"{path} already exists")
        self.journal_path = path + JOURNAL_SUFFIX
        self._journal: Any = None
        if cid is None:
            self.tmp = tempfile.mkdtemp(prefix=".carget-", dir=parent)
        else:
            self.tmp = path + PARTIAL_SUFFIX
            if not self._journal_matches():
                self._remove_partial()
            os.makedirs(os.path.join(self.tmp, "out"), exist_ok=True)
            self._journal = open(open_beside(self.journal_path,
                                             os.O_WRONLY | os.O_APPEND | os.O_CREAT),
                                 "a", encoding="utf-8")
            if self._journal.tell() == 0:
                self._log({"version": JOURNAL_VERSION, "target": target, "cid": str(cid),
                           "kind": "tree"})
        self.root = os.path.join(self.tmp, "out")
        if cid is None:
            os.mkdir(self.root)
        self._tree = SafeTree(self.root)
        # the file being written, and the blocks that will let a later run check it
        self._cur: str | None = None
        self._cur_nodes: dict[str, bytes] = {}
        self._cur_frames: dict[str, tuple[bytes, bytes]] = {}
        self._files: dict[str, int] = {}
        self.written = 0
        self.on_block: Callable[[CID, bytes | memoryview], None] | None = None
        # what is in place, for continuing after a failed answer (see remaining())
        self.ledger = TreeLedger()

    def under(self, prefix: str) -> Under:
        """An output for an answer about the entity at ``prefix`` (its paths are relative
        to it): used to fetch again only what a failed answer left missing."""
        return Under(self, prefix)

    def handle(self, events: list[VerifierEvent]) -> int:
        with _writing(self.root):
            return self._handle(events)

    def _handle(self, events: list[VerifierEvent]) -> int:
        written = 0
        tree = self._tree
        for ev in events:
            if isinstance(ev, FileData):
                self.ledger.got_bytes(ev.path, len(ev.data))
                if ev.frame is not None and ev.path == self._cur:
                    self._cur_frames[str(ev.cid)] = ev.frame
                fd = self._files.get(ev.path)
                if fd is None:
                    self._close_files()
                    fd = tree.open_file(ev.path, os.O_WRONLY | os.O_CREAT)
                    self._files[ev.path] = fd
                if len(ev.data):
                    os.pwrite(fd, ev.data, ev.offset)
                written += len(ev.data)
                if self.on_block is not None:
                    self.on_block(ev.cid, leaf_block(ev))
                if ev.path == self._cur and self.ledger.complete(ev.path):
                    self._file_done(ev.path)
            elif isinstance(ev, EntityStart):
                self.ledger.start(ev)
                if ev.kind == "directory":
                    tree.makedirs(ev.path)
                elif ev.kind == "file":
                    if not ev.path:
                        raise UsageError(f"{ev.cid} is a file, not a tree")
                    self._cur, self._cur_nodes, self._cur_frames = ev.path, {}, {}
                    self._close_files()  # the previous file is complete
                    tree.remove(ev.path)  # fetched again after a failed answer
                    fd = tree.open_file(ev.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                    self._files[ev.path] = fd
                    os.ftruncate(fd, ev.size or 0)
                    reserve(fd, ev.size or 0)
                elif ev.kind != "symlink":
                    raise UsageError(f"{ev.cid} at {ev.path or '/'} is not UnixFS "
                                     f"({ev.cid.codec_name}); carget get writes UnixFS only")
            elif isinstance(ev, SymlinkEntry):
                if not ev.path:
                    raise UnsafePathError(
                        f"{self.ledger.entries.get('', ('', '?'))[1]} is a symlink to "
                        f"{ev.target!r}: carget get writes files and directories, and a "
                        f"symlink alone would point outside its output; get what it "
                        f"points to instead")
                tree.add_link(ev.path, ev.target)  # made last, at commit()
                self.ledger.got[ev.path] = 1
            elif isinstance(ev, InnerNode):
                self._note_directory(ev)
                if self._cur is not None and ev.cid.codec != RAW:
                    self._cur_nodes[str(ev.cid)] = bytes(ev.data)
                if self.on_block is not None:
                    self.on_block(ev.cid, ev.data)
        self.written += written
        return written

    def _note_directory(self, ev: InnerNode) -> None:
        listed = self.ledger.directory(ev)
        if listed is not None:
            path, cid = listed
            self._log({"dir": path, "cid": str(cid),
                       "node": base64.b64encode(bytes(ev.data)).decode()})

    # --- the journal ------------------------------------------------------------------

    def _log(self, doc: dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal.write(json.dumps(doc, separators=(",", ":")) + "\n")
            self._journal.flush()

    def _file_done(self, path: str) -> None:
        _, cid, size = self.ledger.entries[path]
        self._log({"file": path, "cid": str(cid), "size": size,
                   "nodes": {k: base64.b64encode(v).decode()
                             for k, v in self._cur_nodes.items()},
                   "frames": {k: [a.hex(), b.hex()] for k, (a, b) in self._cur_frames.items()}})
        self._cur, self._cur_nodes, self._cur_frames = None, {}, {}

    def _journal_matches(self) -> bool:
        if os.path.islink(self.journal_path) or not is_real_dir(os.path.join(self.tmp, "out")):
            return False  # a link planted at one of carget's names: start afresh
        try:
            with open(self.journal_path, encoding="utf-8") as f:
                head = json.loads(f.readline())
        except (OSError, ValueError):
            return False
        return (isinstance(head, dict) and head.get("version") == JOURNAL_VERSION
                and head.get("kind") == "tree" and head.get("cid") == str(self.cid)
                and is_real_dir(self.tmp))

    def _remove_partial(self) -> None:
        remove_tree(self.tmp)
        for p in (self.journal_path, self.journal_path + ".tmp"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def resume(self) -> int:
        """Take back what an interrupted run left, re-verified: each directory block
        against its CID, each finished file leaf by leaf from disk (a file that fails is
        deleted). A file counts only if a verified directory lists it at that path.
        Returns the bytes kept; :meth:`remaining` then says what to ask for."""
        if self.cid is None or self._journal is None:
            return 0
        dirs: dict[str, tuple[CID, bytes]] = {}
        files: list[dict[str, Any]] = []
        try:
            with open(self.journal_path, encoding="utf-8") as f:
                f.readline()
                for line in f:
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by the interruption
                    if not isinstance(doc, dict):
                        continue
                    if "dir" in doc:
                        dirs[str(doc["dir"])] = (CID.parse(doc["cid"]),
                                                 base64.b64decode(doc["node"]))
                    elif "file" in doc:
                        files.append(doc)
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        # directories: from the root down, each listed by a verified parent
        pending = [("", self.cid)]
        while pending:
            path, cid = pending.pop()
            got = dirs.get(path)
            if got is None or got[0] != cid:
                continue
            try:
                cid.verify(got[1])
                node = decode_unixfs(cid, got[1])
            except Exception:
                continue
            if node.kind != "directory" or (path and self._tree.lookup(path) != ("dir", None)):
                continue  # gone from disk (or replaced): fetched again whole
            self.ledger.entries[path] = ("directory", cid, 0)
            self.ledger.links[path] = [(link.name or "", link.cid) for link in node.links]
            if self.on_block is not None:
                self.on_block(cid, got[1])
            for name, child in self.ledger.links[path]:
                try:
                    pending.append((join(path, name), child))
                except UnsafePathError:
                    continue  # the verifier refuses it when it is fetched
        kept = 0
        for doc in files:
            try:
                path, cid, size = str(doc["file"]), CID.parse(doc["cid"]), int(doc["size"])
                nodes = {str(k): base64.b64decode(v) for k, v in doc["nodes"].items()}
                frames = {str(k): (bytes.fromhex(a), bytes.fromhex(b))
                          for k, (a, b) in doc["frames"].items()}
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            parent, _, name = path.rpartition("/")
            if (name, cid) not in self.ledger.links.get(parent, []) or not is_safe_name(name):
                continue  # not where a verified directory puts this file
            if self._check_file(path, cid, size, nodes, frames):
                self.ledger.entries[path] = ("file", cid, size)
                self.ledger.got[path] = size
                kept += size
        self._sweep()
        return kept

    def _sweep(self) -> None:
        """Delete what the partial tree holds beyond the re-verified directories and
        files (partly written files, symlinks, anything else): it is fetched again."""
        tree = self._tree
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(tree.dir_fd(rel)) as it:
                    found = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            except (OSError, UnsafePathError):
                continue
            for name, is_dir in found:
                path = f"{rel}/{name}" if rel else name
                entry = self.ledger.entries.get(path)
                kind = entry[0] if entry is not None else ""
                if is_dir and kind == "directory":
                    stack.append(path)
                elif is_dir or kind != "file" or path not in self.ledger.got:
                    tree.remove(path)

    def _check_file(self, path: str, cid: CID, size: int, nodes: dict[str, bytes],
                    frames: dict[str, tuple[bytes, bytes]]) -> bool:
        try:
            fd = self._tree.open_file(path, os.O_RDONLY)
        except (OSError, UnsafePathError):
            return False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size != size:
                ok = False
            else:
                good: list[tuple[int, int]] = []
                recheck(fd, cid, 0, size, nodes, frames, [[0, size]], good, self.on_block)
                ok = _merge([list(r) for r in good]) == ([[0, size]] if size else [])
        finally:
            os.close(fd)
        if not ok:
            self._tree.remove(path)
        return ok

    def remaining(self, path: str, cid: CID) -> list[tuple[str, CID]]:
        """What is still missing under ``path`` (see :meth:`TreeLedger.remaining`)."""
        return self.ledger.remaining(path, cid)

    def file_bytes(self) -> int:
        """Bytes of all the files in the tree (each counted once)."""
        return self.ledger.file_bytes()

    def _close_files(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def commit(self) -> None:
        """Make the symlinks, then rename the tree into place. Raises
        :class:`UnsafePathError` if a symlink leads outside the tree; then, as on any
        failure here, the partial tree and its journal are removed."""
        self._close_files()
        self._close_journal()
        try:
            try:
                self._tree.finish_links()
            finally:
                self._tree.close()
            os.rename(self.root, self.path)
        except BaseException:
            self._remove_partial()
            raise
        self._remove_partial()

    def abandon(self, keep: bool = False) -> None:
        """Stop. ``keep`` (interrupted, resumable, and ``cid`` given) leaves the partial
        tree and its journal for the next run; otherwise both are removed, however deep
        the tree."""
        self._close_files()
        self._close_journal()
        self._tree.close()
        if keep and self.cid is not None:
            return
        self._remove_partial()


class EventOutput(Protocol):
    """Anything that takes verified events: ``handle`` returns the file bytes it placed,
    ``written`` counts them."""

    @property
    def written(self) -> int: ...

    def handle(self, events: list[VerifierEvent]) -> int: ...


class Under:
    """A tree output seen from the entity at ``prefix``: event paths are relative to it."""

    def __init__(self, tree: EventOutput, prefix: str) -> None:
        self.tree = tree
        self.prefix = prefix

    @property
    def written(self) -> int:
        return self.tree.written

    def handle(self, events: list[VerifierEvent]) -> int:
        if self.prefix:
            moved: list[VerifierEvent] = []
            for ev in events:
                if isinstance(ev, (FileData, EntityStart, SymlinkEntry)):
                    ev = dataclasses.replace(ev, path=f"{self.prefix}/{ev.path}"
                                             if ev.path else self.prefix)
                moved.append(ev)
            events = moved
        return self.tree.handle(events)


class StreamOutput:
    """Verified file bytes, in order, to a binary stream (``carget cat``)."""

    def __init__(self, out: BinaryIO, digest_algo: str | None = None) -> None:
        self.out = out
        self.hasher = hashlib.new(digest_algo) if digest_algo else None
        self.pos = 0
        self.written = 0
        self.on_block: Callable[[CID, bytes | memoryview], None] | None = None

    def handle(self, events: list[VerifierEvent]) -> int:
        with _writing("the output stream"):
            return self._handle(events)

    def _handle(self, events: list[VerifierEvent]) -> int:
        written = 0
        for ev in events:
            if isinstance(ev, FileData):
                if ev.path:
                    raise UsageError("cat needs a file, not a directory")
                if ev.offset != self.pos:
                    if ev.offset + len(ev.data) <= self.pos:
                        continue  # already written (a resumed stream repeats a leaf)
                    raise UnixFSError(f"file bytes out of order at {ev.offset} "
                                      f"(expected {self.pos})")
                self.out.write(ev.data)
                if self.hasher is not None:
                    self.hasher.update(ev.data)
                self.pos += len(ev.data)
                written += len(ev.data)
                if self.on_block is not None:
                    self.on_block(ev.cid, leaf_block(ev))
            else:
                _cat_other(ev, self.on_block)
        self.out.flush()
        self.written += written
        return written

    def write_bytes(self, data: bytes | memoryview) -> None:
        """Write file bytes verified elsewhere (a :class:`SegmentBuffer`), in order."""
        with _writing("the output stream"):
            self.out.write(data)
            self.out.flush()
        if self.hasher is not None:
            self.hasher.update(data)
        self.pos += len(data)


class SegmentBuffer:
    """Verified bytes of ``[lo, hi)`` of a file, gathered in memory for ``carget cat``
    while an earlier part is still being written out (see :mod:`carget.fetcher.inorder`).

    :meth:`handle` runs on a stream's writer thread; ``filled`` (bytes from ``lo`` that
    are in place) only grows, and the bytes before it never change, so the trio side may
    read them at any time. Leaves that reach outside ``[lo, hi)`` are clipped."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi
        self.buf = bytearray()  # allocated by start(): only started segments hold memory
        self.filled = 0
        self.written = 0
        self.on_block: Callable[[CID, bytes | memoryview], None] | None = None
        self.on_progress: Callable[[], None] | None = None

    def start(self, spare: list[bytearray]) -> None:
        """Give the segment its buffer (once) before a stream fills it in: one from
        ``spare`` (buffers of segments already written out) if it is big enough."""
        if self.buf:
            return
        need = self.hi - self.lo
        for i, b in enumerate(spare):
            if len(b) >= need:
                self.buf = spare.pop(i)
                return
        self.buf = bytearray(need)

    def release(self, spare: list[bytearray]) -> None:
        """The bytes are written out: hand the buffer back for a later segment."""
        if self.buf:
            spare.append(self.buf)
        self.buf = bytearray()

    @property
    def ready(self) -> int:
        """Bytes from ``lo`` in place and within ``[lo, hi)`` (``hi`` may drop while a
        stream is still filling in past it: another stream took over that part)."""
        return min(self.filled, self.hi - self.lo)

    @property
    def complete(self) -> bool:
        return self.filled >= self.hi - self.lo

    def handle(self, events: list[VerifierEvent]) -> int:
        placed = 0
        for ev in events:
            if isinstance(ev, FileData):
                if ev.path:
                    raise UsageError("cat needs a file, not a directory")
                at = self.lo + self.filled
                end = ev.offset + len(ev.data)
                if end <= at or ev.offset >= self.hi:
                    # before what is still missing (a repeated leaf), or past the end
                    # (another stream took the rest over while this one ran on)
                    continue
                if ev.offset > at:
                    raise UnixFSError(f"file bytes out of order at {ev.offset} (expected {at})")
                take = min(end, self.hi) - at
                if take <= 0:
                    continue
                start = at - ev.offset
                self.buf[self.filled:self.filled + take] = ev.data[start:start + take]
                self.filled += take
                placed += take
                if self.on_block is not None:
                    self.on_block(ev.cid, leaf_block(ev))
            else:
                _cat_other(ev, self.on_block)
        self.written += placed
        if placed and self.on_progress is not None:
            self.on_progress()
        return placed
