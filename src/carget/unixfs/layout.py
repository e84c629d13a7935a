"""File DAG layouts: how leaves are grouped under parents. They never hash.

A layout is pushed leaf links in file order and calls ``reduce(children) -> parent`` when a
parent node is complete; what a "link" is and how a parent is built is the reducer's
business, so tests can check shapes with a stub reducer (as js-ipfs-unixfs does).

Balanced (boxo ``importer/balanced``): leaves fill a parent of ``max_links``; full parents
fill a grandparent, and so on. For 3 links per node and 7 leaves::

                  root
             /     |     \\
           P1      P2     P3
          /|\\    /|\\     |
          L L L  L L L    L

Only a file of a single leaf is that leaf; a last group of one leaf still gets a parent.

Trickle (boxo ``importer/trickle``): a node first takes up to ``max_links`` leaves
directly, then for depth 1, 2, 3, … appends ``DEPTH_REPEAT`` (4) subtrees of that depth
(a depth-d subtree being itself a trickle node limited to depth d), until the data ends.
The root is always a parent, even over a single leaf; an empty file is a root with no links.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Generic, TypeVar

__all__ = ["DEPTH_REPEAT", "BalancedLayout", "Layout", "TrickleLayout", "new_layout"]

L = TypeVar("L")
Reducer = Callable[[list[L]], L]

#: boxo trickle's depthRepeat: subtrees of each depth before the depth grows
DEPTH_REPEAT = 4


class Layout(Generic[L]):
    """Push leaf links in order with :meth:`push`; :meth:`finish` returns the root link.

    ``finish`` returns None when no leaf was ever pushed and the layout has no root of its
    own (balanced); the caller then builds the empty file.
    """

    def push(self, leaf: L) -> None:
        raise NotImplementedError

    def finish(self) -> L | None:
        raise NotImplementedError


class BalancedLayout(Layout[L]):
    def __init__(self, max_links: int, reduce: Reducer[L]) -> None:
        if max_links < 2:
            raise ValueError("max_links must be at least 2")
        self._max = max_links
        self._reduce = reduce
        self._levels: list[list[L]] = [[]]

    def push(self, leaf: L) -> None:
        self._add(0, leaf)

    def _add(self, level: int, link: L) -> None:
        levels = self._levels
        if level == len(levels):
            levels.append([])
        group = levels[level]
        group.append(link)
        if len(group) == self._max:
            # a full group always becomes a parent: either more data follows, or this
            # parent is the root (a root over a full group is still a parent)
            levels[level] = []
            self._add(level + 1, self._reduce(group))

    def finish(self) -> L | None:
        levels = self._levels
        level = 0
        while level < len(levels):
            group = levels[level]
            top = level == len(levels) - 1
            if top and len(group) <= 1:
                return group[0] if group else None
            if group:
                levels[level] = []
                parent = self._reduce(group)
                if level + 1 == len(levels):
                    levels.append([])
                levels[level + 1].append(parent)
            level += 1
        return None


_END = None


class TrickleLayout(Layout[L]):
    """A push-driven port of the recursive trickle builder, as a generator that asks for
    the next leaf only when it is about to place one (so "is there more data?" is
    answered exactly as boxo's ``db.Done()`` answers it)."""

    def __init__(self, max_links: int, reduce: Reducer[L]) -> None:
        self._max = max_links
        self._reduce = reduce
        self._root: L | None = None
        self._ended = False
        self._gen = self._build_root()
        next(self._gen)

    def _fill(
        self, first: L | None, max_depth: int
    ) -> Generator[None, L | None, tuple[L, L | None]]:
        """Build one trickle node; return (node link, the leaf that was read ahead)."""
        children: list[L] = []
        nxt = first
        while len(children) < self._max:
            if nxt is None:
                nxt = yield from self._next()
                if nxt is None:
                    return self._reduce(children), None
            children.append(nxt)
            nxt = None
        depth = 1
        while max_depth == -1 or depth < max_depth:
            for _ in range(DEPTH_REPEAT):
                if nxt is None:
                    nxt = yield from self._next()
                    if nxt is None:
                        return self._reduce(children), None
                child, nxt = yield from self._fill(nxt, depth)
                children.append(child)
            depth += 1
        return self._reduce(children), nxt

    def _next(self) -> Generator[None, L | None, L | None]:
        """The next leaf, or None once the data has ended (then never asks again)."""
        if self._ended:
            return None
        leaf = yield
        if leaf is None:
            self._ended = True
        return leaf

    def _build_root(self) -> Generator[None, L | None, None]:
        root, _ = yield from self._fill(None, -1)
        self._root = root
        yield

    def push(self, leaf: L) -> None:
        self._gen.send(leaf)

    def finish(self) -> L | None:
        self._gen.send(_END)
        return self._root


def new_layout(kind: str, max_links: int, reduce: Reducer[L]) -> Layout[L]:
    if kind == "balanced":
        return BalancedLayout(max_links, reduce)
    if kind == "trickle":
        return TrickleLayout(max_links, reduce)
    raise ValueError(f"unknown layout {kind!r}")
