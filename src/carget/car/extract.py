"""Safe extraction of a UnixFS DAG to disk (behind ``carget car extract``).

A DAG comes from strangers (the path_gateway_tar fixtures carry ``../foo``), so:

* every entry name and path passes :mod:`carget.names` (no ``/``, ``\\``, NUL, ``.``,
  ``..``, empty; a path no longer than an output may hold) and appears once per
  directory (HAMT shards included);
* before anything is written, the DAG is surveyed (each distinct block once, so a DAG
  that links one directory 2^40 times is counted, not walked) and its entries and bytes
  are held against the free inodes and space of the output's filesystem: a CAR that
  declares a 1 TB file fails at once with nothing written;
* everything is built in a staging directory inside the output directory through
  :class:`~carget.safetree.SafeTree` (nothing opened or created through a symlink;
  symlinks made last and kept only if each, resolved against the staged tree *and* what
  the output directory already holds, stays inside it), then moved into place; on any
  error or interrupt the staging directory is removed whole, so nothing is left;
* an entry that exists in the output directory already may be a directory (merged) or,
  for a file, a file (replaced); anything else is refused before anything moves.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..cid import CID
from ..errors import InputError, OutputError
from ..names import DiskEntry, check_entry_name, join
from ..safetree import SafeTree, remove_tree
from ..unixfs.exporter import Exporter
from ..unixfs.node import Node

__all__ = ["extract_node"]

#: only permission bits are restored from UnixFS mode (never setuid/setgid/sticky)
_MODE_BITS: Final = 0o777
#: free inodes left over after an extraction, so that filling the disk's inode table is
#: not a way to make the rest of the system fail
_SPARE_INODES: Final = 1024
#: entries at most where the filesystem does not count inodes (btrfs, some network
#: filesystems report none): far above any real tree, far below a DAG that reuses one
#: directory to declare 2^40 entries in a few KiB
MAX_ENTRIES_UNCOUNTED: Final = 1 << 24
_DIRS: Final = ("directory", "hamt")


@dataclass(frozen=True, slots=True)
class _Survey:
    entries: int
    size: int


def _survey(ex: Exporter, cid: CID, node: Node) -> _Survey:
    """Entries and file bytes the DAG at ``cid`` declares, each distinct block read once
    (a loop, no recursion). Raises the exporter's errors for bad or missing blocks."""
    memo: dict[CID, tuple[int, int]] = {}
    kids: dict[CID, list[CID]] = {}
    nodes: dict[CID, Node] = {cid: node}
    stack: list[CID] = [cid]
    while stack:
        c = stack[-1]
        if c in memo:
            stack.pop()
            continue
        if c in kids:  # a directory whose children are all counted now
            below = kids.pop(c)
            memo[c] = (1 + sum(memo[k][0] for k in below), sum(memo[k][1] for k in below))
            stack.pop()
            continue
        n = nodes.pop(c, None) or ex.node(c)
        if n.kind in _DIRS:
            kids[c] = [e.cid for e in ex.list_dir(c, n)]
            stack.extend(k for k in kids[c] if k not in memo)
            continue
        if n.kind == "symlink":
            memo[c] = (1, 0)
        else:
            memo[c] = (1, ex.file_size(c, n))
        stack.pop()
    entries, size = memo[cid]
    return _Survey(entries, size)


def _check_room(out_dir: str, survey: _Survey) -> None:
    """Raise :class:`OutputError` when the output's filesystem cannot take what the DAG
    declares (bytes, or inodes where the filesystem counts them)."""
    try:
        st = os.statvfs(out_dir)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if survey.size > free:
        raise OutputError(f"the DAG declares {survey.size} bytes of files, but {out_dir} has "
                          f"only {free} bytes free: nothing was extracted")
    room = st.f_favail - _SPARE_INODES if st.f_files else MAX_ENTRIES_UNCOUNTED
    if survey.entries > room:
        raise OutputError(f"the DAG declares {survey.entries} entries, but {out_dir} can "
                          f"take only {max(room, 0)} more: nothing was extracted")


class _Extractor:
    def __init__(self, exporter: Exporter, tree: SafeTree) -> None:
        self.ex = exporter
        self.tree = tree
        self.count = 0

    def _meta(self, fd: int, node: Node) -> None:
        fs = node.unixfs
        if fs is None:
            return
        if fs.mode is not None:
            os.fchmod(fd, fs.mode & _MODE_BITS)
        if fs.mtime is not None:
            ns = fs.mtime.seconds * 1_000_000_000 + (fs.mtime.nanos or 0)
            os.utime(fd, ns=(ns, ns))

    def file(self, cid: CID, node: Node, rel: str) -> None:
        fd = self.tree.open_file(rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            with open(fd, "wb", closefd=False) as f:
                for chunk in self.ex.read_file(cid, node=node):
                    f.write(chunk)
            self._meta(fd, node)
        finally:
            os.close(fd)
        self.count += 1

    def entity(self, cid: CID, node: Node, rel: str) -> None:
        """Write the entity at ``rel`` (a loop over directories, no recursion)."""
        stack = [(cid, node, rel)]
        while stack:
            c, n, path = stack.pop()
            if n.kind == "symlink":
                self.tree.add_link(path, self.ex.readlink(c, n))
                continue
            if n.kind not in _DIRS:
                self.file(c, n, path)
                continue
            self.tree.makedirs(path)
            self.count += 1
            children = [(e.cid, self.ex.node(e.cid), join(path, e.name, c))
                        for e in self.ex.list_dir(c, n)]
            stack.extend(reversed(children))


def _moves(stage: SafeTree, out: SafeTree) -> list[str]:
    """The staged paths to rename into the output, merging into directories that exist
    there. Raises :class:`InputError` for an entry in the way, before anything moves."""
    moves: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(stage.dir_fd(rel)) as it:
            names = sorted(e.name for e in it)
        for name in names:
            path = f"{rel}/{name}" if rel else name
            have = out.lookup(path)
            mine = stage.lookup(path)
            if have is None:
                moves.append(path)
            elif have[0] == "dir" and mine is not None and mine[0] == "dir":
                stack.append(path)
            elif have[0] == "file" and mine is not None and mine[0] == "file":
                moves.append(path)  # a file replaces a file, as before
            else:
                raise InputError(f"{os.path.join(out.root, path)} already exists and cannot "
                                 f"be replaced by what the DAG holds there: nothing was "
                                 f"extracted")
    return moves


def _move(stage: SafeTree, out: SafeTree, rel: str) -> None:
    parent, _, name = rel.rpartition("/")
    os.rename(name, name, src_dir_fd=stage.dir_fd(parent), dst_dir_fd=out.dir_fd(parent))


def extract_node(exporter: Exporter, cid: CID, node: Node, out_dir: str, name: str) -> int:
    """Write the DAG at ``cid`` under ``out_dir`` (an existing directory): a directory's
    contents go into ``out_dir``; a file or symlink becomes ``out_dir/name``. Returns
    the entries written.

    Raises :class:`~carget.errors.UnsafePathError` for unsafe names, duplicate names,
    paths too deep, and symlinks leading outside; the exporter's errors for bad or
    missing blocks; :class:`OutputError` when the declared contents do not fit;
    :class:`InputError` when an entry on disk is in the way. On any error or interrupt
    nothing is left behind.
    """
    if node.kind not in _DIRS:
        check_entry_name(name)
    _check_room(out_dir, _survey(exporter, cid, node))
    try:
        stage_dir = tempfile.mkdtemp(prefix=".carget-extract-", dir=out_dir)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot write there: {exc.strerror or exc}") from None
    stage = out = None
    try:
        stage = SafeTree(stage_dir)
        out = SafeTree(out_dir)
        ext = _Extractor(exporter, stage)
        if node.kind in _DIRS:
            ext.entity(cid, node, "")
            ext.count -= 1  # the output directory itself is not an extracted entry
        else:
            ext.entity(cid, node, name)
        union = _union(stage, out, os.path.basename(stage_dir))
        ext.count += stage.finish_links(union)
        for rel in _moves(stage, out):
            _move(stage, out, rel)
        return ext.count
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OutputError(f"cannot write under {out_dir}: {exc.strerror}: nothing was "
                              f"extracted") from None
        raise
    finally:
        for t in (stage, out):
            if t is not None:
                t.close()
        remove_tree(stage_dir)


def _union(stage: SafeTree, out: SafeTree, stage_name: str) -> Callable[[str], DiskEntry]:
    """What a path will be once the staged tree is moved into the output: the staged
    entry if there is one, else what the output holds (never the staging directory)."""

    def lookup(rel: str) -> DiskEntry:
        mine = stage.lookup(rel)
        if mine is not None:
            return mine
        if rel == stage_name or rel.startswith(stage_name + "/"):
            return None
        return out.lookup(rel)

    return lookup
