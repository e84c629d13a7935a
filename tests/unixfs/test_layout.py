"""Layout shapes with a stub reducer (no hashing), 3 links per node, as boxo draws them."""

from __future__ import annotations

import pytest

from carget.unixfs.layout import BalancedLayout, TrickleLayout


def shape(layout_cls: type, n: int, width: int = 3) -> str | None:
    layout = layout_cls(width, lambda ch: "(" + " ".join(ch) + ")")
    for i in range(n):
        layout.push(str(i))
    return layout.finish()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, None),
        (1, "0"),
        (3, "(0 1 2)"),
        (4, "((0 1 2) (3))"),
        (9, "((0 1 2) (3 4 5) (6 7 8))"),
        (10, "(((0 1 2) (3 4 5) (6 7 8)) ((9)))"),
    ],
)
def test_balanced(n: int, expected: str | None) -> None:
    assert shape(BalancedLayout, n) == expected


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, "()"),
        (1, "(0)"),
        (4, "(0 1 2 (3))"),
        (16, "(0 1 2 (3 4 5) (6 7 8) (9 10 11) (12 13 14) (15))"),
        (20, "(0 1 2 (3 4 5) (6 7 8) (9 10 11) (12 13 14) (15 16 17 (18 19)))"),
    ],
)
def test_trickle(n: int, expected: str) -> None:
    assert shape(TrickleLayout, n) == expected
