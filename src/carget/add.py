"""Importing files: the blocking driver around the sans-IO importer.

Reads a file in large batches into reused buffers, hashes the leaves of each batch on
worker threads (hashlib releases the GIL, so two cores hash two batches at once), and
feeds the finished leaf links to :class:`~carget.unixfs.file.FileImporter` strictly in file
order. Memory stays at ``jobs × 2 + 1`` batch buffers (or mapped windows) whatever the
file size.

Who reads: with two or more jobs a regular file is not read at all but mapped (``mmap``),
a batch-sized window at a time, and hashed straight out of the page cache by ``jobs``
workers each mapping their own batches (b3sum does the same; the ``read`` copy is a third
of the work of reading and hashing); where it cannot be mapped, each worker reads its own
batch with ``pread``. On a single CPU this thread maps and hashes in turn. With one job on
a machine with more CPUs, from a pipe, or when a whole-file digest must see the bytes in
order, this thread reads ahead while the workers hash (reading overlaps hashing).

Directory trees are :mod:`carget.tree`'s job; this module does single files and streams.
"""

from __future__ import annotations

import io
import mmap
import os
import stat
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .cid import CID, Block
from .cpus import usable_cpus
from .digest import ALGORITHMS, new_hasher
from .errors import InputError, UsageError
from .unixfs.file import FileImporter, FileLink, LeafEncoder, LeafHook
from .unixfs.options import DEFAULT, ImportOptions

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = [
    "usable_cpus",
    "AddResult",
    "Readable",
    "add_bytes",
    "add_file",
    "import_stream",
    "open_regular_file",
]

#: bytes read and hashed per task: large enough that per-task Python overhead vanishes,
#: small enough that jobs × 2 buffers stay far under the 64 MiB RSS budget
BATCH_BYTES = 4 * 1024 * 1024

#: madvise hint for a mapped batch (Linux, BSD; None elsewhere)
_WILLNEED: int | None = getattr(mmap, "MADV_WILLNEED", None)

Emit = Callable[[Block], None]


class Readable(Protocol):
    """Anything with ``readinto`` (files, sockets' makefile, pipes, BytesIO)."""

    def readinto(self, buffer: bytearray | memoryview, /) -> int | None: ...


@dataclass(frozen=True, slots=True)
class AddResult:
    """The outcome of importing one file."""

    cid: CID
    size: int  # file bytes
    tsize: int  # bytes of the whole DAG (what a parent link's Tsize would say)
    digest: str | None = None  # "sha256:HEX" when asked for


def _read_full(f: Readable, buf: memoryview) -> int:
    """Fill ``buf`` unless the stream ends; return the byte count (pipes return short)."""
    got = 0
    size = len(buf)
    while got < size:
        n = f.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def _pread_full(fd: int, buf: bytearray, offset: int) -> int:
    """Fill ``buf`` from ``offset`` of ``fd`` unless the file ends there; the byte count."""
    view = memoryview(buf)
    got = 0
    size = len(buf)
    while got < size:
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    return got


def _encode_batch(
    enc: LeafEncoder, view: memoryview, chunk: int, want: bool
) -> list[tuple[FileLink, Block | None]]:
    return [enc.encode(view[i : i + chunk], want) for i in range(0, len(view), chunk)]


def _read_encode_batch(
    fd: int, offset: int, buf: bytearray, enc: LeafEncoder, chunk: int, want: bool
) -> tuple[int, list[tuple[FileLink, Block | None]]]:
    n = _pread_full(fd, buf, offset)
    return n, _encode_batch(enc, memoryview(buf)[:n], chunk, want)


Take = Callable[[list[tuple[FileLink, "Block | None"]], int], None]


def _preading(
    fd: int,
    enc: LeafEncoder,
    chunk: int,
    batch: int,
    jobs: int,
    want: bool,
    free: list[bytearray],
    take: Take,
) -> int:
    """Have ``jobs`` worker threads each ``pread`` a batch of the regular file ``fd`` and
    hash its leaves, at most ``2 * jobs`` batches in flight; hand the results to ``take``
    strictly in file order. Starts at the file's position and leaves it after the last
    byte read; the file ends at the first short read (as a sequential read would see it).
    Returns the bytes read."""
    from concurrent.futures import ThreadPoolExecutor  # only multi-core runs pay for it

    start = os.lseek(fd, 0, os.SEEK_CUR)
    offset = start
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="carget-hash")
    pending: deque[
        tuple[Future[tuple[int, list[tuple[FileLink, Block | None]]]], bytearray]
    ] = deque()
    ended = False
    try:
        while not ended:
            buf = free.pop() if free else bytearray(batch)
            pending.append(
                (pool.submit(_read_encode_batch, fd, offset, buf, enc, chunk, want), buf)
            )
            offset += batch
            while pending and (ended or len(pending) > 2 * jobs):
                fut, buf = pending.popleft()
                n, links = fut.result()
                if ended or not n:  # at or past the end: nothing there for this file
                    free.append(buf)
                    if not ended:
                        ended = True
                        offset -= (len(pending) + 1) * batch
                    continue
                take(links, n)
                free.append(buf)
                if n < batch:
                    ended = True
                    offset = offset - (len(pending) + 1) * batch + n
    finally:
        for fut, _ in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    os.lseek(fd, offset, os.SEEK_SET)
    return offset - start


def _threaded(
    f: Readable,
    enc: LeafEncoder,
    chunk: int,
    batch: int,
    jobs: int,
    want: bool,
    whole: Any,
    free: list[bytearray],
    take: Take,
) -> None:
    """Read batches in this thread, hash their leaves on ``jobs`` worker threads, and hand
    the results to ``take`` strictly in file order, with at most ``2 * jobs`` in flight."""
    from concurrent.futures import ThreadPoolExecutor  # only multi-core runs pay for it

    pool = ThreadPoolExecutor(jobs, thread_name_prefix="carget-hash")
    # one more thread keeps the whole-file digest sequential without blocking the reader
    dpool = ThreadPoolExecutor(1, thread_name_prefix="carget-digest") if whole else None
    pending: deque[
        tuple[Future[list[tuple[FileLink, Block | None]]], Future[None] | None, bytearray, int]
    ] = deque()

    def drain_one() -> None:
        fut, dfut, buf, n = pending.popleft()
        links = fut.result()
        if dfut is not None:
            dfut.result()
        take(links, n)
        free.append(buf)

    try:
        while n := _read_full(f, memoryview(buf := free.pop() if free else bytearray(batch))):
            part = memoryview(buf)[:n]
            fut = pool.submit(_encode_batch, enc, part, chunk, want)
            dfut = dpool.submit(whole.update, part) if dpool is not None else None
            pending.append((fut, dfut, buf, n))
            while len(pending) > 2 * jobs:
                drain_one()
            if n < batch:
                break
        while pending:
            drain_one()
    finally:
        for fut, dfut, _, _ in pending:
            fut.cancel()
            if dfut is not None:
                dfut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        if dpool is not None:
            dpool.shutdown(wait=True, cancel_futures=True)


def _map_batch(fd: int, offset: int, batch: int) -> tuple[mmap.mmap | None, memoryview, int]:
    """Map up to ``batch`` bytes of ``fd`` from ``offset``, never past the file's size now
    (touching a page past the end would be SIGBUS); (mapping, view of the bytes, count)."""
    n = min(batch, os.fstat(fd).st_size - offset)
    if n <= 0:
        return None, memoryview(b""), 0
    base = offset - offset % mmap.ALLOCATIONGRANULARITY
    m = mmap.mmap(fd, n + offset - base, offset=base, access=mmap.ACCESS_READ)
    if _WILLNEED is not None:
        m.madvise(_WILLNEED)  # one read-ahead for the whole window, not a fault per page
    return m, memoryview(m)[offset - base : offset - base + n], n


def _unmap(m: mmap.mmap | None, view: memoryview) -> None:
    view.release()
    if m is not None:
        try:
            m.close()
        except BufferError:  # an emitted block still holds a view: unmapped when freed
            pass


def _map_encode_batch(
    fd: int, offset: int, batch: int, enc: LeafEncoder, chunk: int, want: bool
) -> tuple[int, list[tuple[FileLink, Block | None]], mmap.mmap | None, memoryview]:
    m, view, n = _map_batch(fd, offset, batch)
    links = _encode_batch(enc, view, chunk, want)
    if not want:  # nothing refers to the bytes any more
        _unmap(m, view)
        m, view = None, memoryview(b"")
    return n, links, m, view


def _mapped(
    fd: int, enc: LeafEncoder, chunk: int, batch: int, jobs: int, want: bool, take: Take
) -> bool:
    """Hash a regular file's batches straight out of the page cache through ``mmap``
    windows, as b3sum does: no copy into a buffer, which is a third of the work of reading
    and hashing (the ``read`` copy costs ~0.3 s of ~0.95 s a GiB here). One batch at a
    time in this thread for one job; else ``jobs`` workers each map and hash their own
    batches, at most ``2 * jobs`` in flight, handed to ``take`` in file order. The file
    ends where its size says when a batch is mapped (a file that shrinks under a mapping
    can still raise SIGBUS, as it can for b3sum). Starts at the file position and leaves
    it after the last byte. Returns False, having done nothing, when the file cannot be
    mapped (then it is read)."""
    start = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        first = _map_encode_batch(fd, start, batch, enc, chunk, want)
    except (OSError, ValueError):  # a file system without mmap
        return False
    offset = start
    if jobs == 1 or first[0] < batch:  # one job, or a file of one batch
        result = first
        while True:
            n, links, m, view = result
            take(links, n)
            _unmap(m, view)
            offset += n
            if n < batch:
                break
            result = _map_encode_batch(fd, offset, batch, enc, chunk, want)
        os.lseek(fd, offset, os.SEEK_SET)
        return True
    from concurrent.futures import ThreadPoolExecutor  # only multi-core runs pay for it

    pool = ThreadPoolExecutor(jobs, thread_name_prefix="carget-hash")
    pending: deque[Future[tuple[int, list[tuple[FileLink, Block | None]],
                                mmap.mmap | None, memoryview]]] = deque()
    head: tuple[int, list[tuple[FileLink, Block | None]], mmap.mmap | None,
                memoryview] | None = first
    ahead = start + batch  # the next batch to hand out
    try:
        while True:
            while len(pending) < 2 * jobs:
                pending.append(pool.submit(_map_encode_batch, fd, ahead, batch, enc, chunk,
                                           want))
                ahead += batch
            if head is None:
                head = pending.popleft().result()
            n, links, m, view = head
            head = None
            take(links, n)
            _unmap(m, view)
            offset += n
            if n < batch:  # the end: what is still in flight mapped nothing or past it
                while pending:
                    fut = pending.popleft()
                    if not fut.cancel():
                        _, _, m, view = fut.result()
                        _unmap(m, view)
                break
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    os.lseek(fd, offset, os.SEEK_SET)
    return True


def _regular_fd(f: Readable) -> int | None:
    """The descriptor of ``f`` when it is an unbuffered regular file (positioned reads
    are then safe), else None (pipes, sockets, buffered or in-memory streams)."""
    if not isinstance(f, io.FileIO):
        return None
    fd = f.fileno()
    try:
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None


def import_stream(
    f: Readable,
    opts: ImportOptions = DEFAULT,
    *,
    jobs: int | None = None,
    emit: Emit | None = None,
    digest: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_leaf: LeafHook | None = None,
) -> AddResult:
    """Import everything ``f`` yields as one UnixFS file.

    ``emit`` receives every block in DAG-writing order (children before parents, root
    last); a leaf's ``data`` may be a memoryview into a reused buffer, valid only during the
    call. ``digest`` ("sha256" or "sha512") also computes the whole stream's digest in the
    same pass. ``progress`` is called with the byte count of each finished batch;
    ``on_leaf`` where each leaf's bytes lie in the stream (:data:`LeafHook`). Raises
    :class:`UsageError` for an unknown digest, :class:`OSError` from reads.
    """
    if digest is not None and digest not in ALGORITHMS:
        raise UsageError(f"unsupported digest {digest!r} (use {' or '.join(ALGORITHMS)})")
    jobs = max(1, jobs if jobs is not None else usable_cpus())
    importer = FileImporter(opts, emit, on_leaf)
    enc = importer.leaves
    chunk = opts.chunk_size
    batch = max(1, BATCH_BYTES // chunk) * chunk
    whole = new_hasher(digest) if digest else None
    want = emit is not None

    def take(links: list[tuple[FileLink, Block | None]], n: int) -> None:
        for link, block in links:
            importer.add_leaf(link, block)
        if progress is not None:
            progress(n)

    free: list[bytearray] = []
    fd = _regular_fd(f) if whole is None else None
    cpus = usable_cpus()
    # one job on a machine with a core to spare reads ahead on this thread instead: the
    # copy then runs beside the hashing, off its path (~1.1x hashlib on a quiet machine,
    # where hashing out of a mapping in one thread, page faults included, is ~0.95-1.0x)
    if fd is not None and (jobs > 1 or cpus == 1) and _mapped(fd, enc, chunk, batch, jobs,
                                                              want, take):
        pass  # hashed straight out of the page cache
    elif jobs == 1 and cpus == 1:
        # a single CPU: read, hash, assemble in turn; threads would only add switching
        while n := _read_full(f, memoryview(buf := free.pop() if free else bytearray(batch))):
            part = memoryview(buf)[:n]
            links = _encode_batch(enc, part, chunk, want)
            if whole is not None:
                whole.update(part)
            take(links, n)
            free.append(buf)
            if n < batch:
                break
    elif jobs > 1 and fd is not None:
        # every worker reads its own batches: the page-cache copy runs on every core
        _preading(fd, enc, chunk, batch, jobs, want, free, take)
    else:
        # ``jobs`` hashing threads; this thread reads ahead meanwhile (the kernel's copy
        # out of the page cache overlaps the hashing, as a reader goroutine does in kubo)
        _threaded(f, enc, chunk, batch, jobs, want, whole, free, take)
    root = importer.finish()
    text = f"{digest}:{whole.hexdigest()}" if whole is not None and digest else None
    return AddResult(root.cid, importer.size, root.tsize, text)


def open_regular_file(path: str | os.PathLike[str]) -> io.FileIO:
    """Open a regular file unbuffered for reading.

    Raises :class:`InputError` naming the path when it is missing, unreadable, a directory,
    or not a regular file (FIFO, device, socket): carget never blocks on a FIFO.
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file or directory") from None
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{name} is a directory (use -r to add directories)")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{name} is not a regular file (FIFO, device or socket)")
    try:
        return io.FileIO(name, "r")
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror or exc}") from None


def add_file(
    path: str | os.PathLike[str],
    opts: ImportOptions = DEFAULT,
    *,
    jobs: int | None = None,
    emit: Emit | None = None,
    digest: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_leaf: LeafHook | None = None,
) -> AddResult:
    """Compute a file's UnixFS root CID exactly as ``ipfs add --only-hash`` would.

    >>> from carget import add_file, resolve_options
    >>> add_file("ubuntu.img", resolve_options(cid_version=1), digest="sha256").cid

    Raises :class:`InputError` for a missing, unreadable or non-regular path.
    """
    with open_regular_file(path) as f:
        try:
            return import_stream(f, opts, jobs=jobs, emit=emit, digest=digest,
                                 progress=progress, on_leaf=on_leaf)
        except OSError as exc:
            raise InputError(f"{os.fspath(path)}: {exc.strerror or exc}") from None


def add_bytes(data: bytes, opts: ImportOptions = DEFAULT, *, emit: Emit | None = None) -> AddResult:
    """Import an in-memory byte string (small inputs, tests)."""
    return import_stream(io.BytesIO(data), opts, jobs=1, emit=emit)
