"""``carget get`` (trio): the race, then the file strategy into a :class:`FileOutput` or
the tree strategy into a :class:`TreeOutput`, resumed from what an earlier run's journal
vouches for; ``--car`` beside it; the plain mirror when IPFS fails.

The tree strategy, ``--car`` and the mirror are imported when a run needs them: a plain
file ``get`` (what lima runs once per image) starts without them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..cid import RAW
from ..digest import check_digest, parse_digest
from ..errors import CargetError, NetworkError, UsageError
from ..unixfs.node import decode_unixfs
from .file import fetch_ranges
from .outputs.file import FileOutput
from .race import Resolved, resolve
from .request import Continuation
from .run import Run, bounded, prepare
from .split import UnitState
from .types import FetchOptions, FetchResult
from .verifier import DagVerifier, InnerNode, Scope

if TYPE_CHECKING:
    from .outputs.tree import TreeOutput

__all__ = ["run_get"]


async def _ipfs_get(run: Run, out_path: str) -> FetchResult:
    opts = run.opts
    car = None
    if opts.car_out:
        from .outputs.car import CarSink

        car = CarSink(opts.car_out)
    opened: list[FileOutput] = []
    trees: list[TreeOutput] = []
    whole: list[Continuation] = []  # the race's answer kept for the whole tree

    def announce(res: Resolved) -> None:
        run.event("resolved", cid=str(res.cid), kind=res.kind, size=res.size,
                  gateway=res.gateway.url if res.gateway else None)
        if car is not None:
            car.set_root(res.cid)
            for e in res.events:
                if isinstance(e, InnerNode):
                    car(e.cid, e.data)

    async def open_file(res: Resolved) -> FileOutput:
        """The file's output, made once (by the race's kept answer or after the race),
        with what a journal of an earlier run vouches for already in place."""
        if opened:
            return opened[0]
        assert res.size is not None
        announce(res)
        run.total = res.size
        fout = FileOutput(out_path, res.cid, res.size, target=str(run.target))
        opened.append(fout)
        fout.on_block = car
        if opts.digest is not None:
            fout.start_digest(parse_digest(opts.digest)[0])
        done = await trio.to_thread.run_sync(fout.resume)
        if done:
            kept = sum(b - a for a, b in done)
            run.detail(f"resuming: {kept} verified bytes kept")
            run.event("resume", bytes=kept)
            run.bytes_done = kept
        return fout

    async def open_tree(res: Resolved) -> TreeOutput:
        """The tree's output, made once (by the race's kept answer or after the race),
        with what an earlier run left taken back."""
        if trees:
            return trees[0]
        announce(res)
        from .outputs.tree import TreeOutput

        tree = TreeOutput(out_path, res.cid, target=str(run.target))
        tree.on_block = car
        try:
            kept = await trio.to_thread.run_sync(tree.resume)
        except BaseException as exc:
            tree.abandon(keep=_keep(exc))
            raise
        trees.append(tree)
        if kept:
            run.detail(f"resuming: {kept} verified bytes kept")
            run.event("resume", bytes=kept)
        return tree

    async def adopt(res: Resolved) -> Continuation | None:
        # the race's answer carries the whole file: it goes on into the output, from
        # the first byte still missing to the end of that gap; or the whole tree, when
        # none of it is in place yet (an earlier run's part is asked for piece by piece)
        if res.kind == "directory" and opts.digest is None:
            tree = await open_tree(res)
            if tree.remaining("", res.cid) != [("", res.cid, None)]:
                return None
            whole.append(Continuation(tree.under(""), 0, 0, UnitState(), Scope.ALL))
            return whole[0]
        if res.kind != "file" or res.size is None:
            return None
        fout = await open_file(res)
        missing = fout.missing()
        if not missing:
            return None
        lo, hi = missing[0]
        return Continuation(fout, lo, hi, UnitState(lo))

    ok = False
    try:
        try:
            res = await resolve(run, adopt)
        except BaseException as exc:
            # the kept answer was cut off: as below
            if opened:
                opened[0].abandon(keep=_keep(exc) and opened[0].written > 0)
            if trees:
                trees[0].abandon(keep=_keep(exc))
            raise
        if res.kind == "file":
            assert res.size is not None
            fout = await open_file(res)
            try:
                if res.cid.codec == RAW or not decode_unixfs(res.cid, res.block).links:
                    v = DagVerifier(res.cid, scope=Scope.ENTITY)
                    from ..car.encoder import encode_header, section_prefix

                    blob = (encode_header([res.cid]) + section_prefix(res.cid, len(res.block))
                            + res.block)
                    n = fout.handle(v.feed(blob) + v.feed_eof())
                    run.progressed(n)
                else:
                    missing = fout.missing()
                    if missing:
                        await fetch_ranges(run, res, fout, missing)
                digest = None
                if opts.digest is not None:
                    digest = check_digest(await trio.to_thread.run_sync(fout.finish_digest),
                                           opts.digest)
                if car is not None:
                    car.close(True)  # the CAR complete before the file appears
                fout.commit()
            except BaseException as exc:
                fout.abandon(keep=_keep(exc) and (fout.written > 0 or run.bytes_done > 0))
                raise
            size = res.size
        elif res.kind in ("directory", "symlink"):
            if opts.digest is not None:
                announce(res)
                raise UsageError("--digest applies to files, and this is a " + res.kind)
            from .tree import fetch_tree

            tree = await open_tree(res)
            try:
                if not (whole and whole[0].complete):  # the answer's end says it is whole
                    await fetch_tree(run, res, tree)  # what the kept answer left, if any
                if car is not None:
                    car.close(True)  # the CAR complete before the tree appears
            except BaseException as exc:
                tree.abandon(keep=_keep(exc))
                raise
            tree.commit()
            size = tree.file_bytes()
            digest = None
        else:
            announce(res)
            raise UsageError(f"{res.cid} is {res.cid.codec_name}, not a UnixFS file or "
                             f"directory")
        ok = True
    finally:
        if car is not None:
            car.close(ok)
    return FetchResult(str(res.cid), size, digest, "ipfs")


def _keep(exc: BaseException) -> bool:
    """Whether what is verified stays for a rerun after ``exc``: kept when interrupted,
    timed out or cut off; a verification, digest or output failure leaves nothing
    behind."""
    return not isinstance(exc, CargetError) or isinstance(exc, NetworkError)


async def run_get(target_text: str, out_path: str, opts: FetchOptions) -> FetchResult:
    """``carget get``: see the module docstring. Raises carget errors (exit codes)."""
    deadline = trio.current_time() + opts.timeout if opts.timeout is not None else None
    run = await prepare(target_text, opts)
    if not out_path:
        out_path = run.target.default_name
    try:
        result: FetchResult = await bounded(opts.timeout, lambda: _ipfs_get(run, out_path), run)
    except CargetError as exc:
        if opts.fallback_url is None or isinstance(exc, UsageError):
            raise
        run.log(f"IPFS: {exc}")
        left = None if deadline is None else max(0.0, deadline - trio.current_time())
        from .fallback import fallback

        result = await bounded(left, lambda: fallback(run, out_path), run)
    finally:
        run.close()
    run.event("done", cid=result.cid, size=result.size, digest=result.digest,
              source=result.source, path=out_path)
    return result
