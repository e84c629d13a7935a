"""The tree strategy (trio): a whole entity (a directory tree, a symlink, any DAG) with
``dag-scope=all``, from one gateway at a time.

When an answer fails, what it completed stays in place: the next request (this gateway
after its back-off, or the next one) asks only for the subtrees still missing, entry by
entry under the directories already verified, and for a file left half-written only its
missing byte ranges (``entity-bytes``), as :class:`TreeTarget`'s ``remaining`` says.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import trio

from ..cid import CID
from ..errors import CargetError, NotFoundError
from .outputs import EventOutput
from .outputs.tree import Missing
from .race import Resolved
from .request import car_url, request_car
from .run import FATAL_ERRORS, Gateway, Run
from .verifier import DagVerifier, Scope

__all__ = ["TreeTarget", "fetch_tree"]


class TreeTarget(Protocol):
    """Where the tree strategy puts a whole entity (:class:`TreeOutput`, or a block sink's
    output)."""

    def remaining(self, path: str, cid: CID) -> list[Missing]:
        """What is still missing under ``path``: subtrees, or byte ranges of a file."""
        ...

    def under(self, prefix: str) -> EventOutput: ...

    def in_place(self, path: str, cid: CID) -> frozenset[tuple[str, CID]]:
        """The entities under ``path`` wholly in place (outermost only)."""
        ...

    def file_bytes(self) -> int:
        """Bytes of the files announced so far."""
        ...


_Out = TypeVar("_Out", bound=TreeTarget)


async def fetch_tree(run: Run, res: Resolved, out: _Out) -> _Out:
    """Fetch what ``out`` still lacks of a whole entity (a tree, ``dag-scope=all``) from
    one gateway at a time; ``out`` may hold what an earlier run left (the caller took it
    back) and what the race's kept answer brought.

    When an answer fails, what it completed stays in place: the next request (this
    gateway after its back-off, or the next one) asks only for the subtrees still
    missing, entry by entry under the directories already verified (a sharded directory
    is asked for again whole), and only the missing byte ranges of a file partly
    written. A gateway that sent the whole DAG for a narrower question and then has no
    answer (404) for a subtree is a static server of ready-made CARs, keyed by the
    target: it is asked for the whole target again, and what is in place is skipped as
    it streams past. What a failed run leaves is the caller's to keep or throw away."""
    first = [g for g in (res.gateway,) if g] + [g for g in run.usable() if g is not res.gateway]
    pending = out.remaining("", res.cid)
    target = run.target
    whole_only: set[Gateway] = set()  # gateways that answer only for the target itself
    for gw in first:
        if not pending:
            break
        while pending and not gw.dropped and not gw.not_found:
            wait = gw.ready_at - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            path, cid, part = pending[0]
            if gw in whole_only:
                # the whole target again; what is in place is skipped as it streams past
                v = DagVerifier(target.cid, target.path, scope=Scope.ALL,
                                have=out.in_place("", res.cid))
                url = car_url(gw.url, target.cid, target.path, Scope.ALL, None)
                path, cid, skipping = "", res.cid, out.file_bytes()
            else:
                # a subtree whole, or a byte range of a file partly in place
                scope = Scope.ALL if part is None else Scope.ENTITY
                v = DagVerifier(cid, scope=scope, byte_range=part)
                url = car_url(gw.url, cid, (), scope, part)
                skipping = 0
            try:
                await request_car(run, gw, v, out.under(path), url, skipping=skipping)
                # done: an answer for the whole target ("") leaves nothing (the output's
                # ledger cannot tell a sharded directory complete: the answer can)
                pending = [] if path == "" else pending[1:]
            except FATAL_ERRORS:
                raise
            except NotFoundError as exc:
                if gw.whole and gw not in whole_only and path != "":
                    # it sent the whole DAG for the target, yet has no answer for a part
                    # of it: a static server of ready-made CARs, keyed by the target
                    whole_only.add(gw)
                    run.detail(f"{gw.url}: has no answer for {path}; asking for the whole "
                               f"of {target} again")
                    continue
                run.failed(gw, exc)
            except CargetError as exc:
                # what this answer left of its item (a file's other ranges may be
                # queued already: each is asked for once)
                pending = out.remaining("", res.cid) if path == "" else list(
                    dict.fromkeys(out.remaining(path, cid) + pending[1:]))
                if pending:
                    run.log(f"continuing with {len(pending)} missing subtree(s)")
                run.failed(gw, exc)
    if not pending:
        return out
    raise run.final_error(str(run.target))
