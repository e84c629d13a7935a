"""A single file assembled from verified leaves, written atomically and resumable.

Nothing unverified ever reaches the output path: the file is written to
``OUT.carget-partial`` beside it (``pwrite`` at each leaf's offset, so split requests and
resumes write in any order) and renamed only when every byte is placed. An interrupted
download keeps its partial file and its journal (:mod:`~carget.fetcher.outputs.journal`);
the next run re-hashes the kept leaves before trusting them. A whole-file digest can
follow the bytes as they land instead of reading the file again at the end.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Final

from ...cid import CID, RAW
from ...digest import READ_BYTES, new_hasher
from ...errors import IncompleteDAG, InputError, OutputError, UnixFSError
from ...safetree import open_beside, remove_tree
from ..split import gaps, merge_ranges
from ..types import BlockSink
from ..verifier import FileData, InnerNode, VerifierEvent
from .disk import reserve, writing
from .journal import (
    JOURNAL_EVERY,
    JOURNAL_SECONDS,
    JOURNAL_SUFFIX,
    PARTIAL_SUFFIX,
    FileJournal,
    encode_blocks,
    encode_frame,
    encode_node,
    read_file_journal,
    remove_journal,
)
from .recheck import recheck

__all__ = ["FileOutput"]

#: pieces per pwritev (Linux's IOV_MAX)
_IOV_MAX: Final = 1024


class FileOutput:
    """A single file assembled at ``path`` from verified leaves, resumable.

    Thread-safe: several requests' writing threads call :meth:`handle` at once.
    """

    def __init__(self, path: str, cid: CID, size: int, *, target: str = "") -> None:
        self.path = path
        self.cid = cid
        self.size = size
        self.target = target
        self.partial = path + PARTIAL_SUFFIX
        self.journal_path = path + JOURNAL_SUFFIX
        self._lock = threading.Lock()
        self._done: list[tuple[int, int]] = []
        # every block the journal needs (encoded), and what of it and of _done is not
        # logged yet: a flush appends only that (see _write_journal_locked)
        self._nodes: dict[str, str] = {}
        self._frames: dict[str, list[str]] = {}
        self._new_done: list[tuple[int, int]] = []
        self._new_nodes: dict[str, str] = {}
        self._new_frames: dict[str, list[str]] = {}
        self._journal: FileJournal | None = None
        self._since_journal = 0
        self._journal_at = time.monotonic()
        self.written = 0
        self.on_block: BlockSink | None = None
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
            remove_journal(self.journal_path)
        if os.path.islink(self.partial):  # planted: trust neither it nor the journal
            os.unlink(self.partial)
            remove_journal(self.journal_path)
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
        kept = read_file_journal(self.journal_path, self.cid, self.size)
        if kept is None:
            return []
        good: list[tuple[int, int]] = []
        recheck(self._fd, self.cid, 0, self.size, kept.nodes, kept.frames,
                merge_ranges(kept.done), good, self.on_block)
        self._done = merge_ranges(good)
        blocks = encode_blocks(kept.nodes, kept.frames)
        self._nodes, self._frames = blocks["nodes"], blocks["frames"]
        return list(self._done)

    # --- writing --------------------------------------------------------------------------

    def handle(self, events: list[VerifierEvent]) -> int:
        """Write the file bytes among ``events``; remember nodes and frames. Returns the
        number of file bytes written. Raises :class:`UnixFSError` on a leaf past the end,
        :class:`OutputError` when a write fails (a full disk).

        Runs of adjacent leaves go to the file in one ``pwritev`` (a 1 MiB piece holds
        four 256 KiB leaves: a quarter of the system calls)."""
        with writing(self.partial):
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
                        key = str(ev.cid)
                        if key not in self._frames:
                            self._frames[key] = self._new_frames[key] = encode_frame(ev.frame)
                if self.on_block is not None:
                    self.on_block(ev.cid, ev.block())
            elif isinstance(ev, InnerNode):
                with self._lock:
                    key = str(ev.cid)
                    if key not in self._nodes and ev.cid.codec != RAW:
                        self._nodes[key] = self._new_nodes[key] = encode_node(ev.data)
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
        them as done (only now: another request's digest step may read them back) and advance
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
            self._done.append((offset, offset + want))
            self._new_done.append((offset, offset + want))
        if self._digest is not None:
            for piece in run:
                self._digest_step(offset, piece)
                offset += len(piece)

    # --- the whole-file digest -------------------------------------------------------------

    def start_digest(self, algo: str) -> None:
        """Compute ``algo`` over the file while it is written, instead of reading the whole
        file again at the end (lima checks every download's digest)."""
        self._digest = new_hasher(algo)
        self._digest_algo = algo
        self._hashed = 0

    @property
    def digesting(self) -> bool:
        """True while a whole-file digest is computed as the file fills in."""
        return self._digest is not None

    def _digest_step(self, offset: int, data: bytes | memoryview) -> None:
        """Advance the digest's frontier. Bytes that continue it are hashed from memory as
        they are written; a stretch another request wrote earlier is read back (from the
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
            self._done = merge_ranges(self._done)
            end = next((b for a, b in self._done if a <= self._hashed < b), self._hashed)
        while self._hashed < end:
            piece = os.pread(self._fd, min(READ_BYTES, end - self._hashed), self._hashed)
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
        """Every byte of the file is in place."""
        return not self.missing()

    def missing(self) -> list[tuple[int, int]]:
        """The byte ranges not yet written."""
        with self._lock:
            self._done = merge_ranges(self._done)
            return gaps(self._done, 0, self.size)

    def write_journal(self) -> None:
        with self._lock:
            self._write_journal_locked()

    def _write_journal_locked(self) -> None:
        self._since_journal = 0
        self._journal_at = time.monotonic()
        self._done = merge_ranges(self._done)
        if self._journal is None:  # the run's first flush: all it knows, in a new log
            self._journal = FileJournal(self.journal_path, self.target, self.cid, self.size,
                                        self._done, self._nodes, self._frames)
        else:  # then only what is new: each flush costs what was written since the last
            self._journal.add(merge_ranges(self._new_done), self._new_nodes,
                              self._new_frames)
        self._new_done, self._new_nodes, self._new_frames = [], {}, {}

    def _close_journal(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    # --- ending ---------------------------------------------------------------------------

    def commit(self) -> None:
        """Rename the complete partial file to ``path`` and drop the journal.

        No fsync: the rename is what makes the file appear whole to other processes, and
        forcing 512 MiB to disk cost ~15% of a loopback fetch (bench_fetch.py); a crash
        right after is covered by the digest check a careful caller runs anyway."""
        os.close(self._fd)
        self._fd = -1
        self._close_journal()
        os.replace(self.partial, self.path)
        remove_journal(self.journal_path)

    def abandon(self, keep: bool) -> None:
        """Stop. ``keep`` (interrupted, resumable) writes the journal; otherwise the
        partial file and journal are removed."""
        if self._fd >= 0:
            try:
                if keep:
                    self.write_journal()
            finally:
                self._close_journal()
                os.close(self._fd)
                self._fd = -1
        if not keep or not os.path.exists(self.journal_path):
            try:
                os.unlink(self.partial)
            except FileNotFoundError:
                pass
            remove_journal(self.journal_path)
