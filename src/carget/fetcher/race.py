"""The race for a path's terminal block (trio): every gateway is asked for it
(``dag-scope=block``), the first verified answer wins and the other requests are
cancelled (trio's happy-eyeballs pattern: attempts in one nursery, the winner cancels
the others). A loser whose answer has begun (its head is in) is not cut at once but given
:data:`LOSER_GRACE` to end by itself: its next block arrives right behind the one asked
for, and shows whether the gateway ignores ``dag-scope``, which decides how it is asked
for the file.

A winning answer that goes on with the file's own blocks (a gateway that ignores
``dag-scope`` and ``entity-bytes``: a static server in front of ready-made CARs) is kept
as the file's request when the caller says where it goes (``adopt``), so such a gateway
sends the CAR once; afterwards it gets one request at a time only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..car.encoder import encode_header
from ..cid import CID
from ..errors import CargetError, NotFoundError, PathNotFound
from .request import Continuation, car_url, request_car
from .run import FATAL_ERRORS, Gateway, Run, open_nursery
from .split import UnitState
from .verifier import DagVerifier, EntityStart, InnerNode, Scope, VerifierEvent

__all__ = ["LOSER_GRACE", "Adopt", "Resolved", "identity_events", "resolve"]

#: seconds a losing answer that has begun may go on, to show what follows its
#: block (a static server's answer goes on with the file: it is then asked accordingly,
#: not sent its CAR again for the file's first request)
LOSER_GRACE = 0.25


@dataclass
class Resolved:
    cid: CID
    kind: str
    size: int | None
    block: bytes
    events: list[VerifierEvent]
    gateway: Gateway | None  # None: resolved locally from an identity CID


def identity_events(cid: CID, scope: str) -> list[VerifierEvent]:
    """Verify an identity CID's DAG with no gateway: its block is inside the CID, so a CAR
    of just a header completes it (the verifier resolves identity CIDs itself)."""
    v = DagVerifier(cid, (), scope=scope)
    return v.feed(memoryview(encode_header([cid]))) + v.feed_eof()


#: (on trio) given the race's winner, where its answer goes on when that answer carries
#: the rest of the file (a gateway that ignores dag-scope), or None to end it
Adopt = Callable[["Resolved"], Awaitable[Continuation | None]]


async def resolve(run: Run, adopt: Adopt | None = None) -> Resolved:
    """Race the gateways for the path's terminal block; the first verified answer wins.

    A winning answer that goes on past the block with the file's own blocks (a gateway
    that ignores ``dag-scope``, such as a static server in front of ready-made CARs) is
    kept when ``adopt`` says where it goes: the same answer then carries the file (the
    gateway sends each byte once), and this returns once it has ended; what it did not
    bring is left to the caller."""
    target = run.target
    winner: list[Resolved] = []
    scopes: dict[Gateway, trio.CancelScope] = {}
    answers: dict[Gateway, tuple[DagVerifier, UnitState]] = {}  # each gateway's latest

    def resolved(collect: list[VerifierEvent], gw: Gateway) -> bool:
        """Take this answer as the winner, unless there is one: cancel the others."""
        if winner:
            return False
        start = next(e for e in collect if isinstance(e, EntityStart) and e.path == "")
        block = next((bytes(e.data) for e in collect
                      if isinstance(e, InnerNode) and e.cid == start.cid), b"")
        winner.append(Resolved(start.cid, start.kind, start.size, block, collect, gw))
        for other, scope in scopes.items():
            if other is gw:
                continue
            answer = answers.get(other)
            if answer is not None and answer[1].answered:  # begun: see LOSER_GRACE
                scope.deadline = min(scope.deadline, trio.current_time() + LOSER_GRACE)
            else:
                scope.cancel()
        return True

    async def attempt(gw: Gateway) -> None:
        with scopes[gw]:
            while not gw.dropped and not gw.not_found and not winner:
                wait = gw.ready_at - trio.current_time()
                if wait > 0:
                    await trio.sleep(wait)
                v = DagVerifier(target.cid, target.path, scope=Scope.BLOCK)
                state = UnitState()
                answers[gw] = v, state
                collect: list[VerifierEvent] = []
                url = car_url(gw.url, target.cid, target.path, Scope.BLOCK, None)
                kept = False

                async def follow(_: DagVerifier, collect: list[VerifierEvent] = collect
                                 ) -> Continuation | None:
                    nonlocal kept
                    gw.whole = True
                    if adopt is None or not resolved(collect, gw):
                        return None
                    run.event("whole-answer", gateway=gw.url)
                    cont = await adopt(winner[0])
                    kept = cont is not None
                    return cont

                try:
                    await request_car(run, gw, v, None, url, collect, state, follow)
                except FATAL_ERRORS:
                    if winner and not kept:
                        return  # a loser's answer, read on past the race: not needed
                    # the content itself is bad or absent (every gateway would agree), or
                    # the output failed under the kept answer
                    raise
                except CargetError as exc:
                    run.failed(gw, exc)
                    if isinstance(exc, NotFoundError) or kept or winner:
                        return  # a kept answer that broke: the caller fetches the rest
                    continue
                resolved(collect, gw)
                return
        # cancelled: another gateway won. If this answer was going on with the file's
        # blocks, this gateway sends whole DAGs (and has just sent one): see
        # fetch_ranges
        answer = answers.get(gw)
        if answer is not None and answer[0].beyond():
            gw.whole = True

    if target.cid.is_identity and not target.path:
        # the CID holds its block (bafkqaaa, --inline): no gateway is asked or trusted
        local = identity_events(target.cid, Scope.BLOCK)
        start = next(e for e in local if isinstance(e, EntityStart))
        block = next((bytes(e.data) for e in local if isinstance(e, InnerNode)), b"")
        return Resolved(start.cid, start.kind, start.size, block, local, None)
    async with open_nursery() as nursery:
        for gw in run.usable():
            scopes[gw] = trio.CancelScope()
            nursery.start_soon(attempt, gw)
    if not winner:
        if target.path and run.errors and all(isinstance(e, NotFoundError) for e in run.errors):
            await _prove_missing(run)
        raise run.final_error(str(target))
    return winner[0]


async def _prove_missing(run: Run) -> None:
    """Every gateway answered 404 for a path, which does not say which segment is
    missing: ask each such gateway for the path's blocks up to ever shorter prefixes
    (``dag-scope=block``, longest first) and walk them with a verifier of the whole path.
    Raises :class:`PathNotFound` (naming the missing segment and where) once a verified
    block proves a name absent; returns when no answer proves it (the root itself is
    absent, or a block below the prefix is)."""
    target = run.target
    for gw in [g for g in run.gateways if g.not_found and not g.dropped]:
        for k in range(len(target.path) - 1, -1, -1):
            v = DagVerifier(target.cid, target.path, scope=Scope.BLOCK)
            url = car_url(gw.url, target.cid, target.path[:k], Scope.BLOCK, None)
            try:
                await request_car(run, gw, v, None, url)
            except PathNotFound:
                raise
            except NotFoundError:
                if v.placed_bytes:
                    break  # the prefix resolved: the next block is absent, not a name
                continue  # this prefix is missing too: a shorter one
            except CargetError:
                break
            break
