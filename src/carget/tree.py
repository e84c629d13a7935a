"""Adding paths: files, stdin, symlinks and directory trees (-r, -w), as ``ipfs add``.

``add_paths`` is what ``carget add`` runs. It reports ``report(cid, name, digest)`` in
kubo's order (kubo ``core/coreunix/add.go``):

* each file and symlink as it is added, in walk order (directory entries sorted by name
  bytes, as Go's ``os.ReadDir``), named ``arg/sub/file``;
* then, after the whole argument, every directory children-first (kubo's ``outputDirs``:
  post-order over ``ListNames``, which is name order, or HAMT walk order for a sharded
  directory), the argument itself last;
* each argument is a separate add, unless ``-w`` puts them all in one wrapper directory,
  which is reported last with an empty name.

Filesystem rules, as kubo's CLI (go-ipfs-cmds ``cli/parse.go``, boxo ``files``): arguments
are cleaned (``filepath.Clean``) and named by their base name, "." by the working
directory's real name; arguments are ``lstat``-ed, so a symlink given as an argument is
stored as a symlink, never followed, unless ``--dereference-symlinks`` (every symlink is
added as its target: a directory loop it makes is an error) or ``--dereference-args``
(the arguments only); dot-files inside directories are skipped unless ``hidden``, then
what ``--ignore`` rules exclude (an argument itself is never skipped);
repeating a base name from the same directory adds it once, from another directory is an
error. Under --preserve-mode/--preserve-mtime every node gets its own lstat mode (the 12
permission bits) and mtime; symlinks get the mtime only; a ``-w`` wrapper gets neither.

Memory: a directory holds (name, CID, Tsize) per entry until it is finished, then only its
CID; blocks go to ``emit`` as they are made (children before parents, root last); what is
kept until an argument ends is one (CID, path) line per directory, for kubo's output order.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from .add import BATCH_BYTES, Emit, Readable, add_file, import_stream
from .cid import CID, Block
from .digest import ALGORITHMS, digest_bytes
from .errors import InputError, UsageError
from .unixfs.data import UnixTime
from .unixfs.file import FileImporter, LeafEncoder, LeafHook, tell_leaf
from .unixfs.options import ImportOptions, top_directory_options

if TYPE_CHECKING:  # imported where used: adding one file needs no directory code
    from .unixfs.directory import DirectoryBuilder, DirResult

__all__ = ["Report", "TreeLeafHook", "add_paths"]

Report = Callable[[str, str, "str | None"], None]

#: files up to this size are read whole and imported in this thread: add_file's batch
#: buffers and thread pools would cost more than hashing a small file (~60 µs a file)
SMALL_FILE = 1024 * 1024

#: (CID text, output path) of a directory, reported when its argument is finished
_DirLine = tuple[str, str]


def _shown(path: str) -> str:
    """A path for messages: bytes that are not UTF-8 shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _display(parent: str, name: str) -> str:
    """An entry's output name: ``parent/name``, or the name alone under -w's wrapper."""
    return f"{parent}/{name}" if parent else name


def _lstat(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"{_shown(path)}: no such file or directory (vanished?)") from None
    except OSError as exc:
        raise InputError(f"{_shown(path)}: {exc.strerror or exc}") from None


#: how a small file is opened: never through a symlink swapped in after the listing, never
#: blocking on a FIFO swapped in (an empty read is then checked with fstat)
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: the first read of a small file: most files of a tree end inside it, so one read says
#: both what the file holds and that it ended (a regular file reads short only at its end)
_FIRST_READ = 64 * 1024

# what a directory entry is, from the listing (d_type): no stat per file
_DIR, _FILE, _OTHER = 0, 1, 2


def _kind(entry: os.DirEntry[str]) -> int:
    try:
        if entry.is_dir(follow_symlinks=False):
            return _DIR
        if entry.is_file(follow_symlinks=False):
            return _FILE
    except OSError:  # d_type unknown and the entry gone: its lstat will say so
        pass
    return _OTHER


def _read_small(path: str) -> bytes | None:
    """The bytes of the regular file at ``path``, or None when it holds more than
    :data:`SMALL_FILE` bytes. Open, read, close: no stat, no file object (three system
    calls, each a few µs on these machines). Raises :class:`InputError` as
    :func:`carget.add.open_regular_file` does."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise InputError(f"{_shown(path)}: no such file or directory (vanished?)") from None
    except OSError as exc:
        raise InputError(f"{_shown(path)}: {exc.strerror or exc}") from None
    try:
        data = os.read(fd, _FIRST_READ + 1)
        if len(data) > _FIRST_READ:  # the rest at once, sized by fstat, then EOF
            size = os.fstat(fd).st_size
            if size > SMALL_FILE:
                return None
            parts = [data]
            total = len(data)
            while total <= SMALL_FILE and (
                    part := os.read(fd, max(size + 1 - total, _FIRST_READ))):
                parts.append(part)
                total += len(part)
            if total > SMALL_FILE:
                return None
            data = b"".join(parts)
        elif not data and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{_shown(path)} is not a regular file (FIFO, device or socket)")
    except OSError as exc:
        raise InputError(f"{_shown(path)}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return data


class _Frame:
    """A directory being walked. (A plain class: a dataclass costs ~0.5 ms of start-up.)"""

    __slots__ = ("builder", "display", "ident", "name", "path", "pending", "prefix", "sub")

    def __init__(self, path: str, prefix: str, display: str, name: str,
                 ident: tuple[int, int], pending: list[tuple[str, int]],
                 builder: DirectoryBuilder) -> None:
        self.path = path
        self.prefix = prefix  # the path and a "/": an entry's path is prefix + name
        self.display = display
        self.name = name
        self.ident = ident
        self.pending = pending  # (name, kind) still to add, last one next
        self.builder = builder
        self.sub: dict[str, list[_DirLine]] = {}


#: :data:`~carget.unixfs.file.LeafHook` with the file's path first: where each leaf's bytes
#: lie in which file (may be called from worker threads)
TreeLeafHook = Callable[[str, CID, int, int, bytes, bytes], None]


class _TreeAdder:
    def __init__(self, opts: ImportOptions, jobs: int | None, emit: Emit | None,
                 digest: str | None, report: Report | None,
                 on_leaf: TreeLeafHook | None = None) -> None:
        self.on_leaf = on_leaf
        self.opts = opts
        self.jobs = jobs
        self.emit = emit
        self.digest = digest
        self.report = report
        self.meta = bool(opts.preserve_mode or opts.preserve_mtime or opts.mode or opts.mtime)
        self._leaves = LeafEncoder(opts)
        self._one_leaf = opts.layout == "balanced"
        self._chunk = opts.chunk_size
        #: small files go the short way (add_file checks other digests' names)
        self.small_ok = digest is None or digest in ALGORITHMS
        #: files named by the listing are read without a stat unless metadata is kept
        self.listed = self.small_ok and not self.meta
        #: a file of at most one chunk is its leaf, and no digest is asked for
        self._bare_leaf = self._one_leaf and digest is None
        self.excluded = _entry_filter(opts)

    # --- metadata (UnixFS 1.5) ---------------------------------------------------------

    def _mode(self, st: os.stat_result) -> int | None:
        if self.opts.mode is not None:
            return self.opts.mode  # kubo --mode: the same for every entry
        # boxo ModePermsToUnixPerms: permission bits + setuid/setgid/sticky, no file type
        return (stat.S_IMODE(st.st_mode) or None) if self.opts.preserve_mode else None

    def _mtime(self, st: os.stat_result) -> UnixTime | None:
        if self.opts.mtime is not None:
            return UnixTime(self.opts.mtime[0], self.opts.mtime[1] or None)  # kubo --mtime
        if not self.opts.preserve_mtime:
            return None
        seconds, nanos = divmod(st.st_mtime_ns, 1_000_000_000)  # Go: Unix(), Nanosecond()
        return UnixTime(seconds, nanos or None)

    def _tell(self, cid: CID, name: str, digest: str | None = None) -> None:
        if self.report is not None:
            self.report(str(cid), name, digest)

    # --- leaves: files and symlinks ----------------------------------------------------

    def _hook(self, path: str) -> LeafHook | None:
        hook = self.on_leaf
        if hook is None:
            return None

        def told(cid: CID, offset: int, length: int, head: bytes, tail: bytes) -> None:
            hook(path, cid, offset, length, head, tail)

        return told

    def _encode_small(self, data: bytes, emit: Emit | None,
                      path: str) -> tuple[CID, int, str | None]:
        """Import a small file's bytes (the same DAG add_file makes, less overhead). Safe
        on worker threads: it touches nothing but its arguments, ``emit`` and the leaf
        hook."""
        chunk = self.opts.chunk_size
        if self._one_leaf and len(data) <= chunk:
            # balanced layout: a file of at most one chunk is its leaf (the empty file too,
            # as FileImporter.finish makes it), so no importer or layout is needed
            link, block = self._leaves.encode(data, emit is not None)
            hook = self._hook(path)
            if hook is not None:
                tell_leaf(hook, self._leaves, link, 0)
            if block is not None and emit is not None:
                emit(block)
            cid, tsize = link.cid, link.tsize
        else:
            importer = FileImporter(self.opts, emit, self._hook(path))
            view = memoryview(data)
            for i in range(0, len(data), chunk):
                importer.add_chunk(view[i : i + chunk])
            root = importer.finish()
            cid, tsize = root.cid, root.tsize
        digest = None
        if self.digest is not None:
            digest = digest_bytes(self.digest, data)
        return cid, tsize, digest

    def _listed_file(self, path: str, parent: str, name: str) -> tuple[CID, int]:
        """Add the file ``name`` of the directory shown as ``parent``, when the listing
        says it is regular and no metadata is kept: read without a stat, or by
        :meth:`_leaf` (which stats it) when it is large."""
        data = _read_small(path)
        if data is None:  # large: add_file's batches and threads
            return self._leaf(path, _display(parent, name), _lstat(path))
        if self._bare_leaf and len(data) <= self._chunk:
            # _encode_small's first case written out: this is most files of a tree
            emit = self.emit
            link, block = self._leaves.encode(data, emit is not None)
            hook = self._hook(path)
            if hook is not None:
                tell_leaf(hook, self._leaves, link, 0)
            if block is not None and emit is not None:
                emit(block)
            if self.report is not None:
                self.report(str(link.cid), _display(parent, name), None)
            return link.cid, link.tsize
        cid, tsize, digest = self._encode_small(data, self.emit, path)
        self._tell(cid, _display(parent, name), digest)
        return cid, tsize

    def _import(self, path: str, st: os.stat_result,
                emit: Emit | None) -> tuple[CID, int, str | None]:
        if st.st_size <= SMALL_FILE and self.small_ok:
            data = _read_small(path)
            if data is not None:
                return self._encode_small(data, emit, path)
        # one batch: a thread pool would only add start-up cost
        jobs = 1 if st.st_size <= BATCH_BYTES else self.jobs
        res = add_file(path, self.opts, jobs=jobs, emit=emit, digest=self.digest,
                       on_leaf=self._hook(path))
        return res.cid, res.tsize, res.digest

    def _file(self, path: str, st: os.stat_result) -> tuple[CID, int, str | None]:
        mode, mtime = self._mode(st), self._mtime(st)
        if not mode and mtime is None:
            return self._import(path, st, self.emit)
        return self._with_metadata(lambda emit: self._import(path, st, emit)[1:], mode, mtime)

    def _with_metadata(self, build: Callable[[Emit], tuple[int, str | None]],
                       mode: int | None, mtime: UnixTime | None) -> tuple[CID, int, str | None]:
        """Import with ``build(emit) -> (tsize, digest)``, then give the root mode/mtime."""
        # the root gets mode/mtime after the layout (boxo SetFileAttributes): hold back the
        # last block seen, which at the end is the root, and re-encode it
        held: list[Block] = []
        out = self.emit

        def hold(block: Block) -> None:
            if held and out is not None:
                out(held[0])
            held[:] = [Block(block.cid, bytes(block.data))]

        plain_tsize, digest = build(hold)
        from .unixfs.directory import with_metadata

        root, tsize = with_metadata(held[0], plain_tsize, self.opts, mode, mtime)
        if out is not None:
            out(root)
        return root.cid, tsize, digest

    def _symlink(self, path: str, st: os.stat_result) -> tuple[CID, int]:
        try:
            target = os.readlink(os.fsencode(path))
        except OSError as exc:
            raise InputError(f"{_shown(path)}: {exc.strerror or exc}") from None
        from .unixfs.directory import symlink_block

        block, tsize = symlink_block(target, self.opts, self._mtime(st))
        if self.emit is not None:
            self.emit(block)
        return block.cid, tsize

    def _leaf(self, path: str, display: str, st: os.stat_result) -> tuple[CID, int]:
        """Add a file or symlink and report it. Raises InputError for other types."""
        if stat.S_ISLNK(st.st_mode):
            cid, tsize = self._symlink(path, st)
            self._tell(cid, display)
        elif stat.S_ISREG(st.st_mode):
            cid, tsize, digest = self._file(path, st)
            self._tell(cid, display, digest)
        else:
            raise InputError(f"{_shown(path)} is not a regular file (FIFO, device or socket)")
        return cid, tsize

    # --- directories -------------------------------------------------------------------

    def _open(self, path: str, display: str, name: str, st: os.stat_result,
              active: set[tuple[int, int]]) -> _Frame:
        ident = (st.st_dev, st.st_ino)
        if ident in active:  # a bind mount, or a symlink followed by --dereference-symlinks
            raise InputError(f"{_shown(path)}: directory loop (already being added above)")
        try:
            with os.scandir(path) as listing:
                entries = [(e.name, _kind(e)) for e in listing]
        except FileNotFoundError:
            raise InputError(f"{_shown(path)}: no such file or directory (vanished?)") from None
        except OSError as exc:
            raise InputError(f"{_shown(path)}: {exc.strerror or exc}") from None
        keep: list[tuple[bytes, str, int]] = []
        excluded = self.excluded
        for n, kind in entries:
            if excluded(n):
                continue  # boxo files.Filter: dot-files unless --hidden, then --ignore
            try:  # a name that is not UTF-8 holds surrogate escapes, which strict refuses
                raw = n.encode("utf-8")
            except UnicodeEncodeError:
                shown = _shown(os.path.join(path, n))
                raise InputError(f"{shown}: file name is not valid UTF-8") from None
            keep.append((raw, n, kind))
        keep.sort(reverse=True)  # popped from the end: ascending name bytes
        # (the top directory gets its stat too, via kubo's new MFS root)
        from .unixfs.directory import DirectoryBuilder

        # kubo 0.43.1 gives the directory limits to every directory but the top one (the
        # argument's own, or the -w wrapper; see options.py)
        opts = self.opts if active or self.opts.wrap else top_directory_options(self.opts)
        builder = DirectoryBuilder(opts, mode=self._mode(st), mtime=self._mtime(st))
        active.add(ident)
        pending = [(n, kind) for _, n, kind in keep]
        prefix = path if path.endswith("/") else path + "/"  # os.path.join, less work
        return _Frame(path, prefix, display, name, ident, pending, builder)

    def walk(self, path: str, display: str, st: os.stat_result) -> tuple[DirResult,
                                                                           list[_DirLine]]:
        """Add the directory at ``path``; files are reported as added, directories are
        returned as lines in kubo's output order (this one last)."""
        active: set[tuple[int, int]] = set()
        stack = [self._open(path, display, "", st, active)]
        while True:
            frame = stack[-1]
            if frame.pending:
                name, kind = frame.pending.pop()
                cpath = frame.prefix + name
                if kind == _FILE and self.listed:
                    cid, tsize = self._listed_file(cpath, frame.display, name)
                    frame.builder.add(name, cid, tsize)
                    continue
                cdisplay = _display(frame.display, name)
                cst = _lstat(cpath)
                if stat.S_ISLNK(cst.st_mode) and self.opts.dereference_symlinks:
                    cpath, cst = _follow(cpath)
                if stat.S_ISDIR(cst.st_mode):
                    sub = self._open(cpath, cdisplay, name, cst, active)
                    if not sub.pending and not self.opts.empty_dirs:
                        active.discard(sub.ident)  # kubo --empty-dirs=false: left out
                        continue
                    stack.append(sub)
                    continue
                cid, tsize = self._leaf(cpath, cdisplay, cst)
                frame.builder.add(name, cid, tsize)
                continue
            stack.pop()
            active.discard(frame.ident)
            result = frame.builder.finish(self.emit)
            lines: list[_DirLine] = []
            if frame.sub:
                for n in frame.builder.names_in_link_order():
                    lines += frame.sub.pop(n, ())
            lines.append((str(result.cid), frame.display))
            if not stack:
                return result, lines
            parent = stack[-1]
            parent.builder.add(frame.name, result.cid, result.tsize)
            parent.sub[frame.name] = lines

    # --- arguments ---------------------------------------------------------------------

    def node(self, path: str, display: str) -> tuple[CID, int, list[_DirLine]]:
        """Add one argument (file, symlink or directory) under the output name ``display``."""
        st = _lstat(path)
        if stat.S_ISDIR(st.st_mode):
            result, lines = self.walk(path, display, st)
            return result.cid, result.tsize, lines
        cid, tsize = self._leaf(path, display, st)
        return cid, tsize, []

    def stdin(self) -> tuple[CID, int]:
        stream = cast(Readable, sys.stdin.buffer)  # typeshed's BinaryIO.readinto is narrower

        def build(emit: Emit | None) -> tuple[CID, int, str | None]:
            res = import_stream(stream, self.opts, jobs=self.jobs, emit=emit,
                                digest=self.digest)
            return res.cid, res.tsize, res.digest

        # kubo gives stdin --mode/--mtime too (never --preserve-*: a pipe has no stat)
        mtime = UnixTime(self.opts.mtime[0], self.opts.mtime[1] or None) \
            if self.opts.mtime else None
        if self.opts.mode or mtime is not None:
            cid, tsize, digest = self._with_metadata(lambda emit: build(emit)[1:],
                                                     self.opts.mode, mtime)
        else:
            cid, tsize, digest = build(self.emit)
        # kubo names stdin by --stdin-name, else by its CID
        self._tell(cid, self.opts.stdin_name or str(cid), digest)
        return cid, tsize


def _entry_filter(opts: ImportOptions) -> Callable[[str], bool]:
    """Whether a directory entry of this name is left out of the import: a dot-file
    unless ``-H``, then what ``--ignore`` rules exclude (see :mod:`carget.ignore`)."""
    hidden = opts.hidden
    if not opts.ignore:
        return lambda name: not hidden and name.startswith(".")
    from .ignore import IgnoreRules

    rules = IgnoreRules(opts.ignore)
    return lambda name: (not hidden and name.startswith(".")) or rules.excludes(name)


def _follow(path: str) -> tuple[str, os.stat_result]:
    """``--dereference-symlinks``: the path a symlink resolves to, and its stat (kubo
    stats the target; a dangling or looping link is an error)."""
    real = os.path.realpath(path)
    try:
        return real, os.stat(real)
    except OSError as exc:
        raise InputError(f"{_shown(path)}: cannot follow the symlink: "
                         f"{exc.strerror or exc}") from None


def _empty_dir(path: str, excluded: Callable[[str], bool]) -> bool:
    """Whether ``path`` is a directory (not a symlink to one) that lists nothing the
    filter keeps (what kubo's --empty-dirs=false leaves out)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        with os.scandir(path) as listing:
            return all(excluded(e.name) for e in listing)
    except OSError:
        return False  # the import itself reports it


def _arguments(sources: Sequence[str], opts: ImportOptions) -> list[tuple[str, str | None]]:
    """(path, name) per argument as kubo's CLI sees them, in kubo's order; name None for
    stdin. With ``--dereference-symlinks`` or ``--dereference-args`` an argument is its
    resolved path, named by that path's base name (kubo's ``filepath.EvalSymlinks``).

    Raises :class:`InputError` when one base name comes from two directories, or a
    symlink to follow is dangling.
    """
    seen: dict[str, str] = {}
    out: list[tuple[str, str | None]] = []
    follow = opts.dereference_symlinks or opts.dereference_args
    for src in sources:
        if src == "-":
            out.append((src, None))
            continue
        path = os.path.normpath(src)  # filepath.Clean
        if os.path.basename(path) in (".", ".."):
            path = os.path.realpath(path)  # kubo: "." is the working directory
        elif follow and os.path.islink(path):
            real, _ = _follow(path)
            # EvalSymlinks keeps a relative path relative
            path = real if os.path.isabs(path) else os.path.relpath(real)
        name = os.path.basename(path) or path
        where = os.path.dirname(path)
        if name in seen:
            if seen[name] != where:
                raise InputError(f"file name {_shown(name)} repeated under different import "
                                 f"directories: {_shown(where)} and {_shown(seen[name])}")
            continue  # kubo skips a repeated argument
        seen[name] = where
        out.append((path, name))
    # go-ipfs-cmds (cli/parse.go) sorts the file arguments by base name, bytewise, stdin's
    # name being "": kubo 0.43 adds and prints them in that order, whatever the command line
    out.sort(key=lambda arg: os.fsencode(opts.stdin_name if arg[1] is None else arg[1]))
    return out


def add_paths(
    sources: Sequence[str],
    opts: ImportOptions,
    *,
    jobs: int | None = None,
    emit: Emit | None = None,
    digest: str | None = None,
    report: Report | None = None,
    report_leaves: bool = True,
    on_leaf: TreeLeafHook | None = None,
) -> list[CID]:
    """Import each source ("-" is stdin), or all of them in one wrapper directory when
    ``opts.wrap``, and return the root CIDs in order. ``on_leaf`` is told where each
    leaf's bytes lie in which file (:data:`TreeLeafHook`; not for stdin).

    Directories are walked whole (the caller decides whether -r allows them). Raises
    :class:`InputError` naming the path for anything that cannot be read: a missing or
    vanished path, an unreadable file or directory, a name that is not UTF-8, a FIFO,
    socket or device inside a tree, a directory loop; :class:`UsageError` for a ``-w``
    entry name a directory cannot hold. ``report_leaves=False`` (kubo's ``--silent``)
    reports directories only: kubo prints its directories whatever ``--silent`` says.
    """
    adder = _TreeAdder(opts, jobs, emit, digest, report if report_leaves else None, on_leaf)
    args = _arguments(sources, opts)
    if not opts.wrap:
        roots: list[CID] = []
        for path, name in args:
            if name is None:
                roots.append(adder.stdin()[0])
                continue
            cid, _, lines = adder.node(path, name)
            for line in lines:
                if report is not None:
                    report(line[0], line[1], None)
            roots.append(cid)
        return roots
    # -w: kubo adds the arguments as the entries of one directory (no mode or mtime from
    # --preserve-*, but --mode/--mtime's)
    from .unixfs.directory import DirectoryBuilder

    # (kubo --mode/--mtime reach the wrapper too: it is the top directory they are set on)
    wrapper = DirectoryBuilder(top_directory_options(opts), mode=opts.mode,
                               mtime=UnixTime(opts.mtime[0], opts.mtime[1] or None)
                               if opts.mtime else None)
    sub: dict[str, list[_DirLine]] = {}
    for path, name in args:
        if name is None:
            if "/" in opts.stdin_name:
                # kubo makes the directories the name passes through, inside the
                # wrapper: carget does not (a difference noted in its tests)
                raise UsageError(f"--stdin-name {opts.stdin_name!r}: under -w the name "
                                 f"must be one path component")
            cid, tsize = adder.stdin()
            wrapper.add(opts.stdin_name or str(cid), cid, tsize)
            continue
        if not opts.empty_dirs and _empty_dir(path, adder.excluded):
            continue  # kubo: under -w an argument directory is not the top one, so it goes
        cid, tsize, lines = adder.node(path, name)
        try:
            wrapper.add(name, cid, tsize)
        except UsageError as exc:
            raise InputError(f"{_shown(path)}: cannot be wrapped: {exc}") from None
        if lines:
            sub[name] = lines
    result = wrapper.finish(emit)
    if report is not None:
        for n in wrapper.names_in_link_order():
            for c, p in sub.get(n, ()):
                report(c, p, None)
        report(str(result.cid), "", None)
    return [result.cid]
