"""Importing files: the blocking driver around the sans-IO importer.

Reads a file in large batches into reused buffers, hashes the leaves of each batch on
worker threads (hashlib releases the GIL, so two cores hash two batches at once), and
feeds the finished leaf links to :class:`~carget.unixfs.file.FileImporter` strictly in file
order. Memory stays at ``jobs × 2 + 1`` batch buffers whatever the file size.

Directory trees are :mod:`carget.tree`'s job; this module does single files and streams.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from .cid import CID, Block
from .errors import InputError, UsageError
from .unixfs.file import FileImporter, FileLink, LeafEncoder
from .unixfs.options import DEFAULT, ImportOptions

__all__ = ["AddResult", "Readable", "add_bytes", "add_file", "import_stream", "open_regular_file"]

#: bytes read and hashed per task: large enough that per-task Python overhead vanishes,
#: small enough that jobs × 2 buffers stay far under the 64 MiB RSS budget
BATCH_BYTES = 4 * 1024 * 1024

#: digests accepted for the whole-file digest (the OCI / go-digest algorithms lima uses)
DIGEST_ALGORITHMS = ("sha256", "sha512")

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


def _encode_batch(
    enc: LeafEncoder, view: memoryview, chunk: int, want: bool
) -> list[tuple[FileLink, Block | None]]:
    return [enc.encode(view[i : i + chunk], want) for i in range(0, len(view), chunk)]


def import_stream(
    f: Readable,
    opts: ImportOptions = DEFAULT,
    *,
    jobs: int | None = None,
    emit: Emit | None = None,
    digest: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> AddResult:
    """Import everything ``f`` yields as one UnixFS file.

    ``emit`` receives every block in DAG-writing order (children before parents, root
    last); a leaf's ``data`` may be a memoryview into a reused buffer, valid only during the
    call. ``digest`` ("sha256" or "sha512") also computes the whole stream's digest in the
    same pass. ``progress`` is called with the byte count of each finished batch.
    Raises :class:`UsageError` for an unknown digest, :class:`OSError` from reads.
    """
    if digest is not None and digest not in DIGEST_ALGORITHMS:
        raise UsageError(f"unsupported digest {digest!r} (use {' or '.join(DIGEST_ALGORITHMS)})")
    jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    importer = FileImporter(opts, emit)
    enc = importer.leaves
    chunk = opts.chunk_size
    batch = max(1, BATCH_BYTES // chunk) * chunk
    whole = hashlib.new(digest) if digest else None
    want = emit is not None

    pool = ThreadPoolExecutor(jobs, thread_name_prefix="carget-hash") if jobs > 1 else None
    # one more thread keeps the whole-file digest sequential without blocking the reader
    dpool = ThreadPoolExecutor(1, thread_name_prefix="carget-digest") if whole and pool else None
    pending: deque[
        tuple[Future[list[tuple[FileLink, Block | None]]], Future[None] | None, bytearray, int]
    ] = deque()
    free: list[bytearray] = []
    depth = 2 * jobs

    def drain_one() -> None:
        fut, dfut, buf, n = pending.popleft()
        for link, block in fut.result():
            if block is not None and emit is not None:
                emit(block)
            importer.add_leaf(link)
        if dfut is not None:
            dfut.result()
        free.append(buf)
        if progress is not None:
            progress(n)

    try:
        while True:
            buf = free.pop() if free else bytearray(batch)
            view = memoryview(buf)
            n = _read_full(f, view)
            if n == 0:
                break
            part = view[:n]
            if pool is None:
                done: Future[list[tuple[FileLink, Block | None]]] = Future()
                done.set_result(_encode_batch(enc, part, chunk, want))
                if whole is not None:
                    whole.update(part)
                pending.append((done, None, buf, n))
            else:
                fut = pool.submit(_encode_batch, enc, part, chunk, want)
                dfut = dpool.submit(whole.update, part) if dpool and whole else None
                pending.append((fut, dfut, buf, n))
            while len(pending) > (depth if pool else 0):
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
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if dpool is not None:
            dpool.shutdown(wait=True, cancel_futures=True)
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
) -> AddResult:
    """Compute a file's UnixFS root CID exactly as ``ipfs add --only-hash`` would.

    >>> from carget import add_file, resolve_options
    >>> add_file("ubuntu.img", resolve_options(cid_version=1), digest="sha256").cid

    Raises :class:`InputError` for a missing, unreadable or non-regular path.
    """
    with open_regular_file(path) as f:
        try:
            return import_stream(f, opts, jobs=jobs, emit=emit, digest=digest, progress=progress)
        except OSError as exc:
            raise InputError(f"{os.fspath(path)}: {exc.strerror or exc}") from None


def add_bytes(data: bytes, opts: ImportOptions = DEFAULT, *, emit: Emit | None = None) -> AddResult:
    """Import an in-memory byte string (small inputs, tests)."""
    return import_stream(io.BytesIO(data), opts, jobs=1, emit=emit)
