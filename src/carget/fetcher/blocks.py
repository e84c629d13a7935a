"""``fetch_blocks``: verified blocks of a path's entity, handed to a callback (trio).

For a caller that keeps blocks, not files (a caching gateway in front of others): the
same race, split across workers and gateways, failover and ``Retry-After`` as ``carget
get``, but every verified block goes to the sink and nothing is written to disk
(:mod:`carget.fetcher.outputs.sink`). For a file only the blocks that the asked byte range
needs are fetched; what is in place is tracked in memory as byte ranges, never as the
bytes themselves.
"""

from __future__ import annotations

import trio

from ..cid import CID, DAG_PB
from ..errors import CargetError, UsageError
from ..unixfs.node import decode_unixfs
from .file import fetch_ranges
from .outputs.sink import BlockFileOutput, BlockTreeOutput, SinkFailed, give_events
from .race import Resolved, resolve
from .request import Continuation, car_url, request_car
from .run import FATAL_ERRORS, Run, bounded, start_run
from .split import UnitState
from .target import Target
from .tree import fetch_tree
from .types import BlockSink, BlocksResult, FetchOptions
from .verifier import DagVerifier, Scope, VerifierEvent

__all__ = ["fetch_blocks"]


async def fetch_blocks(root: CID, path: tuple[str, ...], sink: BlockSink, opts: FetchOptions,
                       *, byte_range: tuple[int, int] | None = None,
                       scope: str = Scope.ALL) -> BlocksResult:
    """Fetch ``root/path``'s entity from ``opts.gateways``, verified, into ``sink``.

    For a file: the blocks of the bytes ``[lo, hi)`` of ``byte_range`` (clipped to the
    file; None is the whole file), fetched as ``carget get`` fetches (the race for the
    terminal block, the range split across workers and gateways with ``entity-bytes``,
    failover from the last verified leaf, ``Retry-After``), plus the path's blocks and
    the file's inner nodes down to those leaves. For a directory, a symlink or a
    non-UnixFS entity: the whole of it (``dag-scope=all``), one gateway at a time, a
    failed answer continued with what it left missing. ``scope`` narrows that as
    ``dag-scope`` does: ``entity`` gives a directory's own blocks only (a HAMT's shards,
    what a listing or a name lookup reads; not its entries: from a gateway that ignores
    ``dag-scope``, the race's answer goes on into the shards), and a symlink or non-UnixFS
    block alone; ``block`` gives the path's blocks and the terminal block only, for files
    too. Runs under trio; ``opts.timeout``
    bounds it. ``opts.digest``, ``fallback_url`` and ``car_out`` concern files written
    whole and are refused (UsageError). Raises carget's errors as
    :func:`~carget.fetcher.fetch_file` does (NotFoundError, VerificationError,
    NetworkError, FetchTimeout, ...), or what ``sink`` raised."""
    if opts.digest is not None or opts.fallback_url is not None or opts.car_out is not None:
        raise UsageError("fetch_blocks hands blocks to a sink: digest, fallback_url and "
                         "car_out apply to files written whole")
    if scope not in (Scope.BLOCK, Scope.ENTITY, Scope.ALL):
        raise UsageError(f"dag-scope {scope!r} is not block, entity or all")
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

    tree = BlockTreeOutput(sink)
    kept: list[Continuation] = []  # the race's answer: a sharded directory's shards, a tree
    announced: list[bool] = []

    def announce(events: list[VerifierEvent]) -> None:
        if not announced:
            announced.append(True)
            give_events(sink, events)

    async def adopt(res: Resolved) -> Continuation | None:
        # the race's answer goes on with the entity's own blocks (a gateway that ignores
        # dag-scope): it carries a file's first missing range too, a sharded directory's
        # shards (dag-scope=entity), or a whole tree (dag-scope=all)
        if scope == Scope.ENTITY and _sharded(res):
            announce(res.events)
            kept.append(Continuation(tree, 0, 0, UnitState()))
            return kept[0]
        if scope == Scope.ALL and res.kind == "directory":  # the whole tree, kept
            announce(res.events)
            kept.append(Continuation(tree, 0, 0, UnitState(), Scope.ALL))
            return kept[0]
        if res.kind != "file" or res.size is None:
            return None
        announce(res.events)
        out = file_output(res.size)
        missing = out.missing()
        if not missing:
            return None
        lo, hi = missing[0]
        return Continuation(out, lo, hi, UnitState(lo))

    async def go() -> BlocksResult:
        res = await resolve(run, adopt)
        announce(res.events)
        run.event("resolved", cid=str(res.cid), kind=res.kind, size=res.size,
                  gateway=res.gateway.url if res.gateway else None)
        if scope == Scope.BLOCK:  # the race's answer carried the path and the block
            return BlocksResult(res.cid, res.kind, res.size)
        if res.kind == "file":
            assert res.size is not None
            out = file_output(res.size)
            multi_block = res.cid.codec == DAG_PB and bool(decode_unixfs(res.cid, res.block).links)
            # a one-block file came whole with the race's answer
            missing = out.missing() if multi_block else []
            if missing:
                await fetch_ranges(run, res, out, missing)
            return BlocksResult(res.cid, res.kind, res.size)
        if scope == Scope.ALL:
            if not (kept and kept[0].complete):
                await fetch_tree(run, res, tree)  # what a kept answer left, if any
        elif _sharded(res) and not (kept and kept[0].complete):
            await _shards(run, res, tree)
        # else: a basic directory, a symlink or a non-UnixFS block is its one block,
        # which the race's answer carried
        return BlocksResult(res.cid, res.kind, None)

    try:
        result: BlocksResult = await bounded(opts.timeout, go, run)
        return result
    except SinkFailed as exc:
        raise exc.error from None
    finally:
        run.close()


def _sharded(res: Resolved) -> bool:
    return res.kind == "directory" and decode_unixfs(res.cid, res.block).kind == "hamt"


async def _shards(run: Run, res: Resolved, out: BlockTreeOutput) -> None:
    """A sharded directory's own blocks (``dag-scope=entity``: every shard, no entry),
    from the race's gateway first, then the others, each after its back-off."""
    first = [g for g in (res.gateway,) if g] + [g for g in run.usable() if g is not res.gateway]
    for gw in first:
        while not gw.dropped and not gw.not_found:
            wait = gw.ready_at - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            v = DagVerifier(res.cid, scope=Scope.ENTITY)
            try:
                await request_car(run, gw, v, out,
                                  car_url(gw.url, res.cid, (), Scope.ENTITY, None))
                return
            except FATAL_ERRORS:
                raise
            except CargetError as exc:
                run.failed(gw, exc)
    raise run.final_error(str(run.target))
