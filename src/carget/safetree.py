"""Writing a tree from a DAG onto disk without ever going through a symlink.

:class:`SafeTree` holds a directory file descriptor for the output's root and reaches
every path below it one component at a time with ``openat(O_NOFOLLOW | O_DIRECTORY)``,
so a symlink (planted by the DAG, or raced in by someone else) in the middle of a path
is an error, never a way out; files are created with ``O_NOFOLLOW`` too. Symlinks are
only ever made by :meth:`SafeTree.finish_links`, last, after every file and directory,
and kept only if :func:`carget.names.resolve_inside` finds that each one, resolved
against what is actually on disk, stays inside the root; otherwise every link it made is
removed again and :class:`UnsafePathError` raised.

:func:`remove_tree` deletes a tree of any depth with one directory descriptor at a time
and no recursion, without following symlinks: a failed run's cleanup always finishes.

Paths given to these methods are relative, "/"-separated and already checked by
:mod:`carget.names` (the verifier and the exporter do that as they walk).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from .errors import InputError, UnsafePathError
from .names import DiskEntry, check_link_text, resolve_inside

__all__ = ["SafeTree", "is_real_dir", "open_beside", "remove_tree"]

#: directory descriptors kept open for paths recently written into: a DFS walk writes
#: mostly into the last few directories, and a tree of any depth must stay far below
#: the open-files limit (256 on macOS, often 1024 on Linux)
DIR_FD_CACHE: Final = 16

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _not_through_link(rel: str, exc: OSError) -> UnsafePathError:
    return UnsafePathError(f"refusing to write through a symlink or non-directory at "
                           f"{rel!r} ({exc.strerror or exc})")


class SafeTree:
    """The tree below ``root`` (an existing directory; the path to it may hold symlinks,
    nothing below it is followed); see the module doc.

    Raises :class:`InputError` if ``root`` cannot be opened as a directory.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        try:  # the root is the caller's choice and may be reached through a symlink
            self._root_fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        except OSError as exc:
            raise InputError(f"{root}: cannot open as a directory: "
                             f"{exc.strerror or exc}") from None
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._links: dict[str, str] = {}

    # --- directories ------------------------------------------------------------------

    def dir_fd(self, rel: str, *, create: bool = False) -> int:
        """A descriptor for the directory ``rel`` ("" is the root), reached without
        following symlinks; ``create`` makes missing directories on the way. The
        descriptor belongs to the tree (do not close it). Raises
        :class:`UnsafePathError` when a component is a symlink or not a directory,
        ``FileNotFoundError`` when one is missing and ``create`` is false."""
        if not rel:
            return self._root_fd
        fd = self._fds.get(rel)
        if fd is not None:
            self._fds.move_to_end(rel)
            return fd
        parent, _, name = rel.rpartition("/")
        # walk up to the nearest cached ancestor with a loop, not recursion: depth is
        # bounded by names.MAX_PATH_BYTES, but a Python stack frame per level is not needed
        missing = [name]
        while parent and parent not in self._fds:
            parent, _, name = parent.rpartition("/")
            missing.append(name)
        at = self._fds[parent] if parent else self._root_fd
        if parent:
            self._fds.move_to_end(parent)
        opened: list[int] = []
        path = parent
        try:
            for comp in reversed(missing):
                path = f"{path}/{comp}" if path else comp
                if create:
                    try:
                        os.mkdir(comp, 0o755, dir_fd=at)
                    except FileExistsError:
                        pass
                try:
                    at = os.open(comp, _DIR_FLAGS, dir_fd=at)
                except FileNotFoundError:
                    raise
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _not_through_link(path, exc) from None
                    raise
                opened.append(at)
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        fd = opened[-1]
        for extra in opened[:-1]:
            os.close(extra)
        self._fds[rel] = fd
        while len(self._fds) > DIR_FD_CACHE:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def makedirs(self, rel: str) -> None:
        """Make the directory ``rel`` and its parents (existing ones are fine)."""
        self.dir_fd(rel, create=True)

    # --- files ------------------------------------------------------------------------

    def open_file(self, rel: str, flags: int, mode: int = 0o644) -> int:
        """``openat`` the file ``rel`` with ``flags`` plus ``O_NOFOLLOW``; its directory
        must exist. The caller closes the descriptor. Raises :class:`UnsafePathError`
        if ``rel`` or a directory on the way is a symlink, and OSError otherwise."""
        parent, _, name = rel.rpartition("/")
        at = self.dir_fd(parent)
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=at)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _not_through_link(rel, exc) from None
            raise

    def lookup(self, rel: str) -> DiskEntry:
        """What is at ``rel`` on disk, without following a symlink there: ("dir", None),
        ("file", None) (anything else that is not a directory), ("link", target), or
        None if nothing (or a path that cannot be walked) is there."""
        parent, _, name = rel.rpartition("/")
        try:
            at = self.dir_fd(parent)
            st = os.lstat(name, dir_fd=at)
            if stat.S_ISLNK(st.st_mode):
                return ("link", os.readlink(name, dir_fd=at))
        except (OSError, UnsafePathError):
            return None
        return ("dir", None) if stat.S_ISDIR(st.st_mode) else ("file", None)

    def remove(self, rel: str) -> None:
        """Remove the file, symlink or whole directory at ``rel`` (absent is fine)."""
        parent, _, name = rel.rpartition("/")
        try:
            at = self.dir_fd(parent)
            st = os.lstat(name, dir_fd=at)
        except (OSError, UnsafePathError):
            return
        self._forget(rel)
        if stat.S_ISDIR(st.st_mode):
            _remove_below(at, name)
        else:
            os.unlink(name, dir_fd=at)

    def _forget(self, rel: str) -> None:
        for key in [k for k in self._fds if k == rel or k.startswith(rel + "/")]:
            os.close(self._fds.pop(key))

    # --- symlinks, last -----------------------------------------------------------------

    def add_link(self, rel: str, target: str) -> None:
        """Note a symlink to make at :meth:`finish_links` (nothing is created now); noting
        the same path again replaces its target. Raises :class:`UnsafePathError` at once
        for a target that breaks the textual rules (empty, absolute, NUL, too long)."""
        check_link_text(rel, target)
        self._links[rel] = target

    def finish_links(self, lookup: Callable[[str], DiskEntry] | None = None) -> int:
        """Create every noted symlink, then resolve each against the disk as it now is
        (or through ``lookup``, for a tree that will join others); if any leads outside
        the root, remove every link made here and raise :class:`UnsafePathError`.
        Something already at a link's path is an error too (InputError). Returns the
        links made."""
        made: list[str] = []
        try:
            for rel, target in self._links.items():
                parent, _, name = rel.rpartition("/")
                at = self.dir_fd(parent)
                try:
                    os.symlink(target, name, dir_fd=at)
                except FileExistsError:
                    raise InputError(f"{rel} already exists; refusing to replace it with "
                                     f"a symlink") from None
                made.append(rel)
            for rel, target in self._links.items():  # every link exists now: resolve on disk
                resolve_inside(rel, target, lookup or self.lookup)
        except BaseException:
            for rel in made:
                parent, _, name = rel.rpartition("/")
                try:
                    os.unlink(name, dir_fd=self.dir_fd(parent))
                except (OSError, UnsafePathError):
                    pass
            raise
        return len(made)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1


def is_real_dir(path: str) -> bool:
    """``path`` is a directory itself, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def open_beside(path: str, flags: int, mode: int = 0o644) -> int:
    """Open one of carget's own files beside an output (``OUT.carget-partial``, a journal)
    with ``O_NOFOLLOW``: a symlink someone planted at that name is removed, never written
    through (these names are carget's, so nothing of the user's is lost). Raises
    OSError as ``os.open`` does."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    os.unlink(path)
    return os.open(path, flags, mode)


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything below it, never following a symlink, at any depth
    (one directory descriptor open at a time, no recursion). Absent is fine; errors on
    single entries are skipped so that the rest is still removed."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    parent, name = os.path.split(os.path.abspath(path))
    try:
        at = os.open(parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
    except OSError:
        return
    try:
        _remove_below(at, name)
    finally:
        os.close(at)


def _enter(parent_fd: int, name: str) -> int | None:
    """Open the directory ``name`` under ``parent_fd`` without following a symlink; if
    it cannot be opened as one, unlink it instead and return None."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        try:
            os.unlink(name, dir_fd=parent_fd)
        except OSError:
            pass
        return None


def _remove_below(parent_fd: int, name: str) -> None:
    """Remove the directory ``name`` under ``parent_fd`` with everything in it: down one
    directory at a time, back up through "..", so one descriptor is open at any depth."""
    cur = _enter(parent_fd, name)
    if cur is None:
        return
    names: list[str] = [name]  # the directory names from parent_fd down to cur
    subdirs: list[list[str]] = [_clear_files(cur)]
    while True:
        if subdirs[-1]:
            sub = subdirs[-1].pop()
            nxt = _enter(cur, sub)
            if nxt is not None:
                os.close(cur)
                cur = nxt
                names.append(sub)
                subdirs.append(_clear_files(cur))
            continue
        # cur is empty now: step up, then remove it by name
        done = names.pop()
        subdirs.pop()
        if not names:
            os.close(cur)
            _rmdir(parent_fd, done)
            return
        try:
            up = os.open("..", _DIR_FLAGS, dir_fd=cur)
        except OSError:
            os.close(cur)
            return
        os.close(cur)
        cur = up
        _rmdir(cur, done)


def _rmdir(parent_fd: int, name: str) -> None:
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except OSError:
        pass  # the rest is still removed; what stays is reported by its owner


def _clear_files(fd: int) -> list[str]:
    """Unlink everything in the directory ``fd`` that is not a directory (symlinks to
    directories included); return the names of its subdirectories."""
    dirs: list[str] = []
    try:
        with os.scandir(fd) as it:
            entries = list(it)
    except OSError:
        return dirs
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                dirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
        except OSError:
            pass
    return dirs
