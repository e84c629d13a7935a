"""A directory tree assembled from verified entities, renamed into place when complete,
and resumable; and the ledger of what a tree has in place (blocking, no trio)."""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from itertools import islice

from ...cid import CID, RAW
from ...errors import InputError, UnsafePathError, UsageError
from ...names import is_safe_name, join
from ...safetree import SafeTree, is_real_dir, remove_tree
from ...unixfs.node import decode_unixfs
from ..split import gaps, merge_ranges
from ..types import BlockSink
from ..verifier import EntityStart, FileData, InnerNode, SymlinkEntry, VerifierEvent
from . import EventOutput
from .disk import reserve, writing
from .journal import (
    JOURNAL_EVERY,
    JOURNAL_SECONDS,
    JOURNAL_SUFFIX,
    PARTIAL_SUFFIX,
    KeptFile,
    TreeJournal,
    read_tree_journal,
    remove_journal,
)
from .recheck import recheck

__all__ = ["Missing", "TreeLedger", "TreeOutput", "Under"]

#: what a tree still lacks: the subtree at a path (the entity with that CID) to ask for
#: whole (range None), or the byte range ``[lo, hi)`` of the file there
Missing = tuple[str, CID, tuple[int, int] | None]


class TreeLedger:
    """What of a tree is in place, for continuing after a failed answer (sans-IO): each
    entity announced (kind, CID, size), each file's verified byte ranges, each symlink
    received, and each plain directory's entries (the node right after its
    EntityStart). HAMT shards are not listed: a sharded directory is fetched again
    whole."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, CID, int]] = {}  # path -> (kind, cid, size)
        #: file path -> the byte ranges of it in place (merged by file_missing)
        self.spans: dict[str, list[tuple[int, int]]] = {}
        self.symlinks: set[str] = set()
        self.links: dict[str, list[tuple[str, CID]]] = {}  # directory path -> entries
        self._pending_dir: tuple[str, CID] | None = None  # announced, node not yet seen

    def start(self, ev: EntityStart) -> bool:
        """Note an entity announced. True for a file whose verified part (from an earlier
        answer or run) stays: the same file at the same path, some of it in place."""
        entry = (ev.kind, ev.cid, ev.size or 0)
        kept = ev.kind == "file" and self.entries.get(ev.path) == entry and bool(
            self.spans.get(ev.path))
        self.entries[ev.path] = entry
        if ev.kind == "directory":
            self._pending_dir = (ev.path, ev.cid)
        elif ev.kind == "file" and not kept:
            self.spans[ev.path] = []
        return kept

    def got_leaf(self, path: str, offset: int, n: int) -> None:
        """Verified bytes ``[offset, offset + n)`` of the file at ``path`` are in place."""
        spans = self.spans.setdefault(path, [])
        if spans and spans[-1][1] == offset:  # leaves arrive in order: one growing range
            spans[-1] = (spans[-1][0], offset + n)
        else:
            spans.append((offset, offset + n))

    def file_missing(self, path: str) -> list[tuple[int, int]]:
        """The byte ranges of the file at ``path`` not yet in place."""
        spans = self.spans[path] = merge_ranges(self.spans.get(path, []))
        return gaps(spans, 0, self.entries[path][2])

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
            kind = entry[0]
            if kind == "file":
                if self.file_missing(p):
                    return False
            elif kind == "symlink":
                if p not in self.symlinks:
                    return False
            else:
                links = self.links.get(p)
                if links is None:
                    return False
                stack.extend(f"{p}/{name}" if p else name for name, _ in links)
        return True

    def remaining(self, path: str, cid: CID) -> list[Missing]:
        """What is still missing under ``path`` (the entity ``cid``) after a failed answer,
        in DAG order: nothing if it is complete, the missing byte ranges of a file partly
        in place, its incomplete entries if it is a directory whose entries are known,
        else the whole of it."""
        out: list[Missing] = []
        stack = [(path, cid)]
        while stack:
            p, c = stack.pop()
            if self.complete(p):
                continue
            links = self.links.get(p)
            entry = self.entries.get(p)
            if entry is not None and entry[0] == "file" and entry[1] == c and self.spans.get(p):
                out.extend((p, c, r) for r in self.file_missing(p))
                continue
            if (links is None or entry is None or entry[1] != c
                    or not all(is_safe_name(name) for name, _ in links)):
                out.append((p, c, None))  # the verifier refuses bad names: ask for all of it
                continue
            stack.extend(reversed([(f"{p}/{name}" if p else name, child)
                                   for name, child in links]))
        return out

    def in_place(self, path: str, cid: CID) -> frozenset[tuple[str, CID]]:
        """The entities under ``path`` (the entity ``cid``) that are wholly in place,
        outermost only, as (path, CID): what an answer for the whole of ``path`` may
        skip (see :class:`~carget.fetcher.verifier.DagVerifier`'s ``have``)."""
        out: set[tuple[str, CID]] = set()
        stack = [(path, cid)]
        while stack:
            p, c = stack.pop()
            entry = self.entries.get(p)
            if entry is None or entry[1] != c:
                continue
            if self.complete(p):
                out.add((p, c))
                continue
            stack.extend((f"{p}/{name}" if p else name, child)
                         for name, child in self.links.get(p, ()))
        return frozenset(out)

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

    Resumable: the tree is built in ``path.carget-partial/`` and a journal
    (``path.carget-journal``: one JSON line per verified directory and finished file,
    and for the file being written its ranges so far with the blocks it got since its
    last such line) grows as it fills in. An interrupted run keeps both
    (:meth:`abandon` with ``keep``); the next run for the same CID re-verifies them
    (:meth:`resume`: directory blocks against their CIDs, files leaf by leaf from disk)
    and asks only for what is still missing, down to the byte ranges of a file left
    half-written. No walk here recurses, so
    a tree as deep as the names rules allow is handled like any other."""

    def __init__(self, path: str, cid: CID, target: str = "") -> None:
        self.path = path
        self.cid = cid
        if os.path.lexists(path):
            raise InputError(f"{path} already exists")
        self.journal_path = path + JOURNAL_SUFFIX
        self.tmp = path + PARTIAL_SUFFIX
        self.root = os.path.join(self.tmp, "out")
        if not (TreeJournal.matches(self.journal_path, cid) and is_real_dir(self.tmp)
                and is_real_dir(self.root)):
            self._remove_partial()  # none, another's, or a link planted at the name
        os.makedirs(self.root, exist_ok=True)
        self._journal: TreeJournal | None = TreeJournal(self.journal_path, cid, target)
        self._tree = SafeTree(self.root)
        # the file being written, and the blocks that will let a later run check it
        self._cur: str | None = None
        self._cur_nodes: dict[str, bytes] = {}
        self._cur_frames: dict[str, tuple[bytes, bytes]] = {}
        # files left incomplete (a failed answer, or an earlier run): their blocks so far
        self._parts: dict[str, tuple[dict[str, bytes], dict[str, tuple[bytes, bytes]]]] = {}
        # how many of an incomplete file's nodes and frames its part lines hold already:
        # a part line carries only those after (blocks are only ever added, and a dict
        # keeps their order), so logging a big file costs what is new, not all so far
        self._logged: dict[str, tuple[int, int]] = {}
        self._since_journal = 0
        self._journal_at = time.monotonic()
        self._files: dict[str, int] = {}
        self.written = 0
        self.on_block: BlockSink | None = None
        # what is in place, for continuing after a failed answer (see remaining())
        self.ledger = TreeLedger()

    def under(self, prefix: str) -> Under:
        """An output for an answer about the entity at ``prefix`` (its paths are relative
        to it): used to fetch again only what a failed answer left missing."""
        return Under(self, prefix)

    def handle(self, events: list[VerifierEvent]) -> int:
        with writing(self.root):
            return self._handle(events)

    def _handle(self, events: list[VerifierEvent]) -> int:
        written = 0
        tree = self._tree
        for ev in events:
            if isinstance(ev, FileData):
                self.ledger.got_leaf(ev.path, ev.offset, len(ev.data))
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
                    self.on_block(ev.cid, ev.block())
                if ev.path == self._cur:
                    if self.ledger.complete(ev.path):
                        self._file_done(ev.path)
                    else:
                        self._since_journal += len(ev.data)
            elif isinstance(ev, EntityStart):
                kept = self.ledger.start(ev)
                if ev.kind == "directory":
                    tree.makedirs(ev.path)
                elif ev.kind == "file":
                    if not ev.path:
                        raise UsageError(f"{ev.cid} is a file, not a tree")
                    self._switch_to(ev.path)
                    self._close_files()  # only the file being written stays open
                    if kept:  # its verified part stays: the rest is written around it
                        fd = tree.open_file(ev.path, os.O_WRONLY)
                        self._files[ev.path] = fd
                    else:
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
                self.ledger.symlinks.add(ev.path)
            elif isinstance(ev, InnerNode):
                self._note_directory(ev)
                if self._cur is not None and ev.cid.codec != RAW:
                    self._cur_nodes[str(ev.cid)] = bytes(ev.data)
                if self.on_block is not None:
                    self.on_block(ev.cid, ev.data)
        self.written += written
        if self._cur is not None and (self._since_journal >= JOURNAL_EVERY or (
                self._since_journal and time.monotonic() - self._journal_at >= JOURNAL_SECONDS)):
            self._journal_part(self._cur, self._cur_nodes, self._cur_frames)
        return written

    def _switch_to(self, path: str) -> None:
        """The file at ``path`` is the one being written now (again, after a failed
        answer, with the blocks it had); one left incomplete keeps its blocks aside."""
        if path == self._cur:
            return
        if self._cur is not None:
            self._parts[self._cur] = (self._cur_nodes, self._cur_frames)
        self._cur = path
        self._cur_nodes, self._cur_frames = self._parts.pop(path, ({}, {}))

    def _note_directory(self, ev: InnerNode) -> None:
        listed = self.ledger.directory(ev)
        if listed is not None:
            path, cid = listed
            if self._journal is not None:
                self._journal.directory(path, cid, bytes(ev.data))

    # --- the journal ------------------------------------------------------------------

    def _file_done(self, path: str) -> None:
        _, cid, size = self.ledger.entries[path]
        if self._journal is not None:
            self._journal.file(path, cid, size, self._cur_nodes, self._cur_frames)
        self._cur, self._cur_nodes, self._cur_frames = None, {}, {}
        self._logged.pop(path, None)

    def _journal_part(self, path: str, nodes: dict[str, bytes],
                      frames: dict[str, tuple[bytes, bytes]]) -> None:
        """Log what of the incomplete file at ``path`` is in place (the next run keeps it):
        its ranges, and the blocks its earlier part lines do not hold."""
        self._since_journal = 0
        self._journal_at = time.monotonic()
        entry = self.ledger.entries.get(path)
        if self._journal is None or entry is None or not self.ledger.file_missing(path):
            return
        n_nodes, n_frames = self._logged.get(path, (0, 0))
        self._journal.part(path, entry[1], entry[2], self.ledger.spans[path],
                           dict(islice(nodes.items(), n_nodes, None)),
                           dict(islice(frames.items(), n_frames, None)))
        self._logged[path] = (len(nodes), len(frames))

    def _remove_partial(self) -> None:
        remove_tree(self.tmp)
        remove_journal(self.journal_path)

    def resume(self) -> int:
        """Take back what an interrupted run left, re-verified: each directory block
        against its CID, each finished file leaf by leaf from disk (a file that fails is
        deleted). A file counts only if a verified directory lists it at that path.
        Returns the bytes kept; :meth:`remaining` then says what to ask for."""
        try:
            journal = read_tree_journal(self.journal_path)
        except OSError:
            return 0
        dirs = journal.dirs
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
        for path, (cid, size, blocks) in journal.files.items():
            if not self._listed(path, cid):
                continue  # not where a verified directory puts this file
            if self._check_file(path, cid, size, blocks.nodes, blocks.frames):
                self.ledger.entries[path] = ("file", cid, size)
                self.ledger.spans[path] = [(0, size)]
                kept += size
        for path, (cid, size, blocks) in journal.parts.items():
            if path in self.ledger.spans or not self._listed(path, cid):
                continue  # finished after all, or not where a verified directory puts it
            good = self._check_part(path, cid, size, blocks)
            if good:
                self.ledger.entries[path] = ("file", cid, size)
                self.ledger.spans[path] = good
                self._parts[path] = (blocks.nodes, blocks.frames)
                self._logged[path] = (len(blocks.nodes), len(blocks.frames))  # in the journal
                kept += sum(b - a for a, b in good)
        self._sweep()
        return kept

    def _listed(self, path: str, cid: CID) -> bool:
        """A verified directory lists the entity ``cid`` at ``path``."""
        parent, _, name = path.rpartition("/")
        return (name, cid) in self.ledger.links.get(parent, []) and is_safe_name(name)

    def _check_part(self, path: str, cid: CID, size: int, blocks: KeptFile
                    ) -> list[tuple[int, int]]:
        """The ranges of a half-written file that a journal vouches for AND whose leaves
        re-hash to the CIDs the DAG gives (:func:`recheck`)."""
        try:
            fd = self._tree.open_file(path, os.O_RDONLY)
        except (OSError, UnsafePathError):
            return []
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return []
            good: list[tuple[int, int]] = []
            recheck(fd, cid, 0, size, blocks.nodes, blocks.frames, merge_ranges(blocks.done),
                    good, self.on_block)
            return merge_ranges(good)
        finally:
            os.close(fd)

    def _sweep(self) -> None:
        """Delete what the partial tree holds beyond the re-verified directories and
        files, whole or in part (symlinks, anything else): it is fetched again."""
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
                elif is_dir or kind != "file" or path not in self.ledger.spans:
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
                recheck(fd, cid, 0, size, nodes, frames, [(0, size)], good, self.on_block)
                ok = not gaps(merge_ranges(good), 0, size)
        finally:
            os.close(fd)
        if not ok:
            self._tree.remove(path)
        return ok

    def remaining(self, path: str, cid: CID) -> list[Missing]:
        """What is still missing under ``path`` (see :meth:`TreeLedger.remaining`)."""
        return self.ledger.remaining(path, cid)

    def in_place(self, path: str, cid: CID) -> frozenset[tuple[str, CID]]:
        """What under ``path`` is wholly in place (see :meth:`TreeLedger.in_place`)."""
        return self.ledger.in_place(path, cid)

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
        """Stop. ``keep`` (interrupted, resumable) leaves the partial
        tree and its journal for the next run (with what of each half-written file is in
        place); otherwise both are removed, however deep the tree."""
        self._close_files()
        if keep:
            self._switch_to("")  # "" is never a file's path: sets the current one aside
            for path, (nodes, frames) in self._parts.items():
                self._journal_part(path, nodes, frames)
        self._close_journal()
        self._tree.close()
        if keep:
            return
        self._remove_partial()


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
