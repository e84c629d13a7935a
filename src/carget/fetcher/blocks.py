"""``fetch_blocks``: verified blocks of a path's entity, handed to a callback (trio).

For a caller that keeps blocks, not files (a caching gateway in front of others): the
same race, split across streams and gateways, failover and ``Retry-After`` as
``carget get``, but every verified block goes to ``sink`` and nothing is written to
disk. For a file only the blocks that the asked byte range needs are fetched; what is
in place is tracked in memory as byte ranges, never as the bytes themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..cid import CID, DAG_PB
from ..errors import UnixFSError, UsageError
from ..unixfs.node import decode_unixfs
from .engine import Resolved, bounded, fetch_file_units, resolve, start_run, whole_entity
from .output import TreeLedger, Under, leaf_block
from .split import StreamState
from .stream import Continuation, FetchOptions
from .target import Target
from .verifier import EntityStart, FileData, InnerNode, SymlinkEntry, VerifierEvent

__all__ = ["BlockSink", "BlocksResult", "fetch_blocks"]

#: called with every verified block (path blocks, inner nodes, leaves), possibly from
#: worker threads and possibly more than once per CID, so it must be thread-safe; an
#: exception it raises aborts the fetch and is raised by :func:`fetch_blocks`. Identity
#: CIDs (their block is the CID) are not passed on.
BlockSink = Callable[[CID, bytes | memoryview], None]


@dataclass(frozen=True, slots=True)
class BlocksResult:
    """The entity at the end of the path: its CID, its kind as the race found it
    ("file", "directory", "symlink" or "other" for a non-UnixFS block) and, for a file,
    its size in bytes (else None)."""

    cid: CID
    kind: str
    size: int | None


class _SinkFailed(Exception):
    """Carries the sink's own exception past the fetcher's failover (which would take a
    carget error for a gateway's fault) up to :func:`fetch_blocks`."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _give(sink: BlockSink, cid: CID, data: bytes | memoryview) -> None:
    if cid.is_identity:
        return
    try:
        sink(cid, data)
    except Exception as exc:
        raise _SinkFailed(exc) from exc


def _give_events(sink: BlockSink, events: list[VerifierEvent]) -> None:
    for ev in events:
        if isinstance(ev, FileData):
            _give(sink, ev.cid, leaf_block(ev))
        elif isinstance(ev, InnerNode):
            _give(sink, ev.cid, ev.data)


class BlockFileOutput:
    """The bytes ``[lo, hi)`` of a file of ``size`` bytes, as blocks into a sink: the file
    strategy's output (:class:`~carget.fetcher.engine.RangedOutput`) with no file. Only
    the verified ranges are kept, merged, so memory stays flat however big the file."""

    def __init__(self, sink: BlockSink, size: int, lo: int, hi: int) -> None:
        self.sink = sink
        self.size = size
        self.lo = lo
        self.hi = hi
        self.written = 0
        self.digesting = False
        self._done: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def handle(self, events: list[VerifierEvent]) -> int:
        placed = 0
        got: list[tuple[int, int]] = []
        for ev in events:
            if isinstance(ev, FileData):
                end = ev.offset + len(ev.data)
                if end > self.size:
                    raise UnixFSError(f"leaf {ev.cid} ends at {end}, past the file's {self.size}")
                _give(self.sink, ev.cid, leaf_block(ev))
                a, b = max(ev.offset, self.lo), min(end, self.hi)
                if a < b:
                    got.append((a, b))
                placed += len(ev.data)
            elif isinstance(ev, InnerNode):
                _give(self.sink, ev.cid, ev.data)
        with self._lock:
            self.written += placed
            if got:
                self._done = _merge(self._done + got)
        return placed

    def missing(self) -> list[tuple[int, int]]:
        with self._lock:
            out: list[tuple[int, int]] = []
            pos = self.lo
            for a, b in self._done:
                if a > pos:
                    out.append((pos, a))
                pos = max(pos, b)
            if pos < self.hi:
                out.append((pos, self.hi))
            return out

    def covered(self) -> bool:
        return not self.missing()


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class BlockTreeOutput:
    """A whole entity (a tree, a symlink, a non-UnixFS DAG) as blocks into a sink: the
    tree strategy's output with no files. Its :class:`TreeLedger` says what a failed
    answer left missing, so the next one asks only for that."""

    def __init__(self, sink: BlockSink) -> None:
        self.sink = sink
        self.ledger = TreeLedger()
        self.written = 0
        self._lock = threading.Lock()

    def handle(self, events: list[VerifierEvent]) -> int:
        placed = 0
        with self._lock:  # one answer at a time, but keep the ledger whole regardless
            for ev in events:
                if isinstance(ev, FileData):
                    self.ledger.got_bytes(ev.path, len(ev.data))
                    _give(self.sink, ev.cid, leaf_block(ev))
                    placed += len(ev.data)
                elif isinstance(ev, EntityStart):
                    self.ledger.start(ev)
                elif isinstance(ev, SymlinkEntry):
                    self.ledger.got[ev.path] = 1
                else:
                    self.ledger.directory(ev)
                    _give(self.sink, ev.cid, ev.data)
            self.written += placed
        return placed

    def resume(self) -> int:
        return 0  # nothing kept between runs

    def remaining(self, path: str, cid: CID) -> list[tuple[str, CID]]:
        with self._lock:
            return self.ledger.remaining(path, cid)

    def under(self, prefix: str) -> Under:
        return Under(self, prefix)

    def abandon(self, keep: bool = False) -> None:
        pass  # nothing on disk


async def fetch_blocks(root: CID, path: tuple[str, ...], sink: BlockSink, opts: FetchOptions,
                       *, byte_range: tuple[int, int] | None = None) -> BlocksResult:
    """Fetch ``root/path``'s entity from ``opts.gateways``, verified, into ``sink``.

    For a file: the blocks of the bytes ``[lo, hi)`` of ``byte_range`` (clipped to the
    file; None is the whole file), fetched as ``carget get`` fetches (the race for the
    terminal block, the range split across streams and gateways with ``entity-bytes``,
    failover from the last verified leaf, ``Retry-After``), plus the path's blocks and
    the file's inner nodes down to those leaves. For a directory, a symlink or a
    non-UnixFS entity: the whole of it (``dag-scope=all``), one gateway at a time, a
    failed answer continued with what it left missing. Runs under trio; ``opts.timeout``
    bounds it. ``opts.digest``, ``fallback_url`` and ``car_out`` concern files written
    whole and are refused (UsageError). Raises carget's errors as
    :func:`~carget.fetcher.fetch_file` does (NotFoundError, VerificationError,
    NetworkError, FetchTimeout, ...), or what ``sink`` raised."""
    if opts.digest is not None or opts.fallback_url is not None or opts.car_out is not None:
        raise UsageError("fetch_blocks hands blocks to a sink: digest, fallback_url and "
                         "car_out apply to files written whole")
    if byte_range is not None and not 0 <= byte_range[0] <= byte_range[1]:
        raise UsageError(f"byte range {byte_range} must be 0 <= lo <= hi")
    run = await start_run(Target(root, tuple(path)), opts)
    made: list[BlockFileOutput] = []

    def file_output(size: int) -> BlockFileOutput:
        if not made:
            lo, hi = byte_range if byte_range is not None else (0, size)
            made.append(BlockFileOutput(sink, size, min(lo, size), min(hi, size)))
            run.total = made[0].hi - made[0].lo
        return made[0]

    announced: list[bool] = []

    def announce(events: list[VerifierEvent]) -> None:
        if not announced:
            announced.append(True)
            _give_events(sink, events)

    async def adopt(res: Resolved) -> Continuation | None:
        # the race's answer goes on with the file's own blocks (a gateway that ignores
        # dag-scope): it carries the first missing range too
        if res.kind != "file" or res.size is None:
            return None
        announce(res.events)
        out = file_output(res.size)
        missing = out.missing()
        if not missing:
            return None
        lo, hi = missing[0]
        return Continuation(out, lo, hi, StreamState(lo))

    async def go() -> BlocksResult:
        res = await resolve(run, adopt)
        announce(res.events)
        run.event("resolved", cid=str(res.cid), kind=res.kind, size=res.size,
                  gateway=res.gateway.url if res.gateway else None)
        if res.kind == "file":
            assert res.size is not None
            out = file_output(res.size)
            multi_block = res.cid.codec == DAG_PB and bool(decode_unixfs(res.cid, res.block).links)
            # a one-block file came whole with the race's answer
            missing = out.missing() if multi_block else []
            if missing:
                await fetch_file_units(run, res, out, missing)
            return BlocksResult(res.cid, res.kind, res.size)
        tree = BlockTreeOutput(sink)
        await whole_entity(run, res, lambda: tree)
        return BlocksResult(res.cid, res.kind, None)

    try:
        result: BlocksResult = await bounded(opts.timeout, go, run)
        return result
    except _SinkFailed as exc:
        raise exc.error from None
    finally:
        run.close()
