"""Sharing one file's byte range among requests (sans-IO: no trio, no sockets).

A :class:`Unit` is the range one request is fetching; its :class:`UnitState` says how far
the request's verified bytes got. :func:`steal` lets an idle worker take over the back
half of the busiest request's range: the victim is told (``narrow_to``) to stop at the
cut, which its verifying thread applies between two pieces (:meth:`DagVerifier.narrow`).
:class:`Pace` tells a slow gateway to leave fresh work to a faster one. Used by the file
strategy (:mod:`carget.fetcher.file`) and split ``cat`` (:mod:`carget.fetcher.inorder`).
:func:`merge_ranges` and :func:`gaps` are the byte-range arithmetic the outputs share.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

from .verifier import DagVerifier, FileData, VerifierEvent

__all__ = ["SLOW_FACTOR", "SPLIT_AFTER", "SPLIT_BELOW", "Pace", "Unit", "UnitState", "gaps",
           "merge_ranges", "steal"]

#: a gateway this many times slower than another one still serving (bytes per second of
#: its last finished request) starts no fresh work while the faster one can take it
SLOW_FACTOR: Final = 4.0
#: a request slower than :data:`SPLIT_BELOW` this many seconds into a fetch is held back
#: by the link or the gateway, not by verifying (one request verifies ~1 GB/s on a core):
#: then more connections help where each one is limited. ``cat`` from one gateway reads
#: one answer straight through, the fastest way when the gateway keeps up
#: (bench_fetch.py), and splits the rest over the gateway's ``--streams`` connections
#: once it is slow; ``get`` opens a gateway's connections past the first few only then
SPLIT_AFTER = 1.0
#: bytes per second of a request below which it counts as slow
SPLIT_BELOW = 64e6


class UnitState:
    """What the request fetching a unit got done, and what it is asked to do.

    ``written_end`` is where the bytes it handed to the output stop (its leaves arrive in
    file order), the point a failover continues from, and ``leaf_len`` the length of its
    last leaf (a guess at where leaf boundaries fall ahead); ``written`` / ``reported``
    count bytes for progress (written on the request's thread, reported from trio).
    ``narrow_to``, set from trio, asks the request to stop at that offset because another
    took over the rest; the verifying thread applies it between two pieces. ``answered``:
    the gateway's head is in (200, a CAR), its body is being read."""

    __slots__ = ("answered", "leaf_len", "narrow_to", "reported", "written", "written_end")

    def __init__(self, start: int = 0) -> None:
        self.written_end = start
        self.leaf_len = 0
        self.written = 0
        self.reported = 0
        self.narrow_to: int | None = None
        self.answered = False

    def note(self, events: list[VerifierEvent]) -> None:
        """Record where the file bytes among ``events`` (just written) end."""
        for ev in reversed(events):
            if isinstance(ev, FileData):
                self.written_end = ev.offset + len(ev.data)
                if ev.data:
                    self.leaf_len = len(ev.data)
                break

    def apply(self, verifier: DagVerifier) -> None:
        if self.narrow_to is not None:
            verifier.narrow(self.narrow_to)


class Unit:
    """A byte range ``[lo, hi)`` of the file being fetched by one request; ``hi`` drops
    when another takes over the rest (:func:`steal`)."""

    __slots__ = ("hi", "lo", "state")

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi
        self.state = UnitState(lo)

    def left(self) -> tuple[int, int]:
        """(first byte not yet written, bytes still to come)."""
        pos = max(self.lo, self.state.written_end)
        return pos, self.hi - pos


def steal(inflight: list[Unit], min_bytes: int) -> tuple[Unit, int, int] | None:
    """Take the back half of the busiest unit's range, if it has at least twice
    ``min_bytes`` left: returns (victim, cut, old hi). The range is cut at a guessed
    leaf boundary (the victim's last leaf length ahead of where it is), and the victim is
    told to stop there. If the guess is off, the leaf that straddles the cut is fetched by
    both: wasted bytes, never wrong ones (both write the same verified bytes)."""
    victim = max(inflight, key=lambda u: u.left()[1], default=None)
    if victim is None:
        return None
    pos, left = victim.left()
    if left < 2 * min_bytes:
        return None
    half = left // 2
    step = victim.state.leaf_len
    if step:
        half -= half % step
    if half < min_bytes:  # leaves too big to cut the rest in useful halves
        return None
    cut = pos + half
    hi = victim.hi
    victim.hi = cut
    victim.state.narrow_to = cut
    return victim, cut, hi


class Pace:
    """How fast each gateway served its last finished request, and which gateways still
    have live workers: a gateway far slower than a live one (:data:`SLOW_FACTOR`) should
    leave fresh work (new ranges, take-overs) to it."""

    def __init__(self) -> None:
        self._rates: dict[Hashable, float] = {}
        self._alive: dict[Hashable, int] = {}

    def started(self, gw: Hashable) -> None:
        self._alive[gw] = self._alive.get(gw, 0) + 1

    def stopped(self, gw: Hashable) -> None:
        self._alive[gw] -= 1

    def record(self, gw: Hashable, nbytes: int, seconds: float) -> None:
        self._rates[gw] = nbytes / max(seconds, 1e-6)

    def failed(self, gw: Hashable) -> None:
        """A failed request (the gateway may now back off or be dropped): its speed no
        longer holds anyone back until it finishes a request again."""
        self._rates.pop(gw, None)

    def outpaced(self, gw: Hashable) -> bool:
        mine = self._rates.get(gw)
        if mine is None:
            return False
        return any(r > mine * SLOW_FACTOR and self._alive.get(g, 0) > 0
                   for g, r in self._rates.items() if g is not gw)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, with overlapping and touching ``[lo, hi)`` ranges joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def gaps(done: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of ``[lo, hi)`` that the merged ranges ``done`` do not cover."""
    out: list[tuple[int, int]] = []
    pos = lo
    for a, b in done:
        if b <= pos:
            continue
        if a >= hi:
            break
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < hi:
        out.append((pos, hi))
    return out
