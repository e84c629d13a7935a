"""The one place for entry names and symlink rules (sans-IO).

A DAG comes from strangers, so every name in it and every symlink target is checked here
before anything reaches a disk, and every caller uses these functions: ``carget get``
(the verifier and the tree output), ``car extract`` and the exporter, the gateway server
(request path segments) and the directory builder (``carget add``): :func:`is_valid_name`
says what a directory may hold at all, :func:`is_safe_name` what may be written to disk.

Names. An entry name is one path component: not empty, not ``.`` or ``..``, at most
:data:`MAX_NAME_BYTES` bytes, and free of ``/``, ``\\`` (a separator on Windows) and
NUL; the gateway-conformance ``path_gateway_tar`` fixtures carry ``../foo`` to test
exactly this. A directory (or a HAMT shard, across all
its sub-shards) that lists one name twice is refused: the second entry would be written
over, or *through*, the first (issue: a symlink ``x`` followed by a directory ``x``).

Depth. A relative path inside an output may hold at most :data:`MAX_PATH_BYTES` bytes
(Linux's ``PATH_MAX``), so every tool can still name every file it holds; since each
level costs at least two bytes (``d/``), this also bounds the depth of any tree carget
writes, and nothing else needs a depth rule.

Symlinks. A target must be relative text without NUL, and it must resolve inside the
output *as the disk will hold it*: :func:`resolve_inside` walks the target component by
component through a ``lookup`` of what is (or will be) there, following symlinks the way
the kernel does, and refuses the link as soon as a ``..`` would climb above the output's
root, at any step, not only at the end. Normalising the text alone is not enough:
``x -> d/l/..`` climbs out when ``d/l`` is itself a link to ``..``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .errors import DuplicateName, UnsafePathError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "MAX_SYMLINK_HOPS",
    "DiskEntry",
    "NameSet",
    "check_entry_name",
    "check_link_text",
    "is_safe_name",
    "is_valid_name",
    "join",
    "resolve_inside",
]

#: bytes of a relative path inside an output: Linux's PATH_MAX (4096 with the NUL), so
#: any program can name every file carget writes relative to the output
MAX_PATH_BYTES: Final = 4095
#: bytes of one name: NAME_MAX on Linux and most filesystems; a longer name cannot be
#: written, so it is the DAG's fault (exit 4), not the disk's
MAX_NAME_BYTES: Final = 255
#: symlinks followed while resolving one target: Linux's MAXSYMLINKS (40), past which
#: the kernel itself answers ELOOP; a longer chain is refused as a loop
MAX_SYMLINK_HOPS: Final = 40

#: what a lookup answers for a relative path: ("dir" | "file" | "link", link target or
#: None), or None when nothing is there
DiskEntry = tuple[str, str | None] | None

_FORBIDDEN: Final = ("/", "\\", "\x00")


def is_safe_name(name: str | None) -> bool:
    """True when ``name`` is safe as one path component on disk (see the module doc)."""
    if not name or name in (".", ".."):
        return False
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return False
    return not any(c in name for c in _FORBIDDEN)


def is_valid_name(name: str) -> bool:
    """True for a name a UnixFS directory may hold at all, and so for a segment of a
    request path (``/ipfs/CID/a/b``): not empty, ``.`` or ``..``, no ``/`` or NUL. A
    backslash is an ordinary character here (kubo adds such files), so names that are
    only looked up or imported may hold one; :func:`is_safe_name` is the stricter rule
    for names written to disk."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\x00" not in name


def check_entry_name(name: str | None, where: object = None) -> str:
    """Return ``name`` if :func:`is_safe_name`; raise :class:`UnsafePathError` (naming
    ``where``, e.g. the directory's CID) otherwise."""
    if not is_safe_name(name):
        at = f" in {where}" if where is not None else ""
        raise UnsafePathError(f"refusing unsafe entry name {name!r}{at}")
    assert name is not None
    return name


def join(parent: str, name: str | None, where: object = None) -> str:
    """``parent/name`` (``name`` alone at the top), the name checked, and the whole
    path held to :data:`MAX_PATH_BYTES`. Raises :class:`UnsafePathError`."""
    name = check_entry_name(name, where)
    path = f"{parent}/{name}" if parent else name
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise UnsafePathError(f"a path inside the DAG is longer than {MAX_PATH_BYTES} bytes "
                              f"({path.count('/') + 1} levels deep, at {name!r}): "
                              f"refusing to write it")
    return path


class NameSet:
    """The names one directory has listed so far (a HAMT's shards add to one set)."""

    __slots__ = ("_names", "where")

    def __init__(self, where: object) -> None:
        self.where = where
        self._names: set[str] = set()

    def add(self, name: str) -> None:
        """Record ``name``; raise :class:`DuplicateName` if the directory listed it
        before."""
        if name in self._names:
            raise DuplicateName(f"directory {self.where} lists {name!r} twice")
        self._names.add(name)


def check_link_text(link: str, target: str) -> None:
    """The textual rules for a symlink at ``link`` (relative to the output): a target
    that is relative, not empty, free of NUL and not longer than a path may be.
    Raises :class:`UnsafePathError`."""
    if len(target.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise UnsafePathError(f"symlink {link!r} has a target longer than {MAX_PATH_BYTES} "
                              f"bytes")
    if not target or target.startswith("/") or "\x00" in target:
        raise UnsafePathError(f"symlink {link!r} has an unsafe target {target!r} "
                              f"(it must be a relative path)")


def resolve_inside(link: str, target: str, lookup: Callable[[str], DiskEntry]) -> str:
    """Resolve the symlink at ``link`` (a relative path inside the output) whose text is
    ``target`` as the kernel would, asking ``lookup(relative path)`` what each component
    is; return the relative path it leads to ("" is the output's root).

    Raises :class:`UnsafePathError` when any step climbs above the output's root, when
    a target on the way is absolute or otherwise unsafe, or when more than
    :data:`MAX_SYMLINK_HOPS` links are followed (a loop). Components that do not exist
    are taken as they stand (lexically), which is the strict reading: a ``..`` after a
    missing directory still may not leave the root.
    """
    check_link_text(link, target)
    cur = link.split("/")[:-1]  # the directory holding the link
    todo = _components(target)
    todo.reverse()  # a stack: the next component on top
    hops = 0
    while todo:
        comp = todo.pop()
        if comp == "..":
            if not cur:
                raise UnsafePathError(f"symlink {link!r} -> {target!r} leads outside the "
                                      f"output")
            cur.pop()
            continue
        here = "/".join([*cur, comp])
        entry = lookup(here)
        if entry is not None and entry[0] == "link":
            hops += 1
            inner = entry[1] or ""
            if hops > MAX_SYMLINK_HOPS:
                raise UnsafePathError(f"symlink {link!r} -> {target!r}: more than "
                                      f"{MAX_SYMLINK_HOPS} links in a chain (a loop?)")
            check_link_text(here, inner)
            todo.extend(reversed(_components(inner)))  # resolved from the link's directory
            continue
        cur.append(comp)
    return "/".join(cur)


def _components(target: str) -> list[str]:
    return [c for c in target.split("/") if c and c != "."]
