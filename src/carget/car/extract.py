"""Safe extraction of a UnixFS DAG to disk (behind ``carget car extract``; reusable by
``carget get``).

Rules, because a DAG comes from strangers (the path_gateway_tar fixtures carry ``../foo``):

* every entry name passes :func:`~carget.unixfs.exporter.check_entry_name` (no ``/``,
  ``\\``, NUL, ``.``, ``..``, empty) and appears once per directory;
* nothing is written through a symlink: symlinks from the DAG are created last, after
  every file and directory, and a symlink already on disk in the way is refused;
* a symlink target must be relative and stay inside the output directory, lexically when
  created and physically (``realpath``) once all exist; otherwise it is removed and
  :class:`UnsafePathError` raised;
* files appear only complete: written to a temporary file beside the target, renamed.
"""

from __future__ import annotations

import os

from ..atomic import atomic_file
from ..cid import CID
from ..errors import InputError, UnsafePathError
from ..unixfs.exporter import Exporter, check_entry_name
from ..unixfs.node import Node

__all__ = ["extract_node"]

#: only permission bits are restored from UnixFS mode (never setuid/setgid/sticky)
_MODE_BITS = 0o777


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


class _Extractor:
    def __init__(self, exporter: Exporter, root: str) -> None:
        self.ex = exporter
        self.root = root
        self.symlinks: list[tuple[str, str]] = []
        self.count = 0

    def _guard(self, path: str) -> None:
        if os.path.islink(path):
            raise UnsafePathError(f"refusing to write through existing symlink {path}")

    def _meta(self, path: str, node: Node) -> None:
        fs = node.unixfs
        if fs is None:
            return
        if fs.mode is not None:
            os.chmod(path, fs.mode & _MODE_BITS)
        if fs.mtime is not None:
            ns = fs.mtime.seconds * 1_000_000_000 + (fs.mtime.nanos or 0)
            os.utime(path, ns=(ns, ns))

    def file(self, cid: CID, node: Node, path: str) -> None:
        self._guard(path)
        with atomic_file(path, before_rename=lambda tmp: self._meta(tmp, node)) as (f, _):
            for chunk in self.ex.read_file(cid, node=node):
                f.write(chunk)
        self.count += 1

    def directory(self, cid: CID, node: Node, path: str) -> None:
        stack = [(cid, node, path)]
        while stack:
            dcid, dnode, dpath = stack.pop()
            self._guard(dpath)
            if os.path.lexists(dpath) and not os.path.isdir(dpath):
                raise InputError(f"{dpath} exists and is not a directory")
            os.makedirs(dpath, exist_ok=True)
            self.count += 1
            names: set[str] = set()
            for entry in self.ex.list_dir(dcid, dnode):
                name = check_entry_name(entry.name)
                if name in names:
                    raise UnsafePathError(f"directory {dcid} holds {name!r} twice")
                names.add(name)
                child_path = os.path.join(dpath, name)
                child = self.ex.node(entry.cid)
                if child.kind in ("directory", "hamt"):
                    stack.append((entry.cid, child, child_path))
                elif child.kind == "symlink":
                    self.symlinks.append((child_path, self.ex.readlink(entry.cid, child)))
                else:
                    self.file(entry.cid, child, child_path)

    def finish_symlinks(self) -> None:
        for path, target in self.symlinks:
            if not target or os.path.isabs(target) or "\x00" in target:
                raise UnsafePathError(f"symlink {path} -> {target!r} is not a safe "
                                      f"relative target")
            lexical = os.path.normpath(os.path.join(os.path.dirname(path), target))
            if not _inside(self.root, lexical):
                raise UnsafePathError(f"symlink {path} -> {target!r} points outside "
                                      f"{self.root}")
            self._guard(path)
            if os.path.lexists(path):
                raise UnsafePathError(f"{path} already exists; refusing to replace it "
                                      f"with a symlink")
            os.symlink(target, path)
            self.count += 1
        for path, target in self.symlinks:  # physically, now that every link exists
            if not _inside(self.root, os.path.realpath(path)):
                os.unlink(path)
                raise UnsafePathError(f"symlink {path} -> {target!r} resolves outside "
                                      f"{self.root}")


def extract_node(exporter: Exporter, cid: CID, node: Node, out_dir: str, name: str) -> int:
    """Write the DAG at ``cid`` under ``out_dir``: a directory's contents go into
    ``out_dir``; a file or symlink becomes ``out_dir/name``. Returns the entries written.

    Raises :class:`UnsafePathError` for unsafe names or symlinks, the exporter's errors
    for bad or missing blocks, :class:`InputError` when a path on disk is in the way.
    """
    root = os.path.realpath(out_dir)
    ext = _Extractor(exporter, root)
    if node.kind in ("directory", "hamt"):
        ext.directory(cid, node, root)
        ext.count -= 1  # the output directory itself is not an extracted entry
    elif node.kind == "symlink":
        ext.symlinks.append((os.path.join(root, check_entry_name(name)),
                             exporter.readlink(cid, node)))
    else:
        ext.file(cid, node, os.path.join(root, check_entry_name(name)))
    ext.finish_symlinks()
    return ext.count
