"""``carget.ignore``: kubo 0.43.1's ignore rules (boxo files.Filter over go-gitignore),
matched against an entry's name. Each row's answer is what kubo's matcher gives (checked
with go-gitignore itself and, through ``ipfs add -r --ignore``, in
tests/interop/test_go_kubo_add.py); where git would answer otherwise, the row says so."""

from __future__ import annotations

import pytest

from carget.ignore import IgnoreRules, split_rules_file, translate

CASES = [
    (["*.log"], "run.log", True),
    (["*.log"], "run.log.gz", False),
    (["build"], "build", True),
    (["build/"], "build", False),  # git: the directory; kubo: nothing (a name has no /)
    (["sub/a.txt"], "a.txt", False),  # git: that path; kubo: nothing
    (["**/a.txt"], "a.txt", True),
    (["q?"], "q?", True),  # ? is a literal question mark
    (["q?"], "qx", False),  # git: any one character
    (["[ab].txt"], "b.txt", True),
    (["*.log", "!keep.log"], "keep.log", False),
    (["*.log", "!keep.log", "k*"], "keep.log", True),
    (["!keep.log"], "keep.log", False),  # a negation alone excludes nothing
    (["#a.txt"], "#a.txt", False),  # a comment
    (["\\#b.txt"], "#b.txt", True),
    (["  c.tmp  "], "c.tmp", True),
    (["!!x"], "x", False),  # the second ! is dropped: a negation of "x"
    (["x\r"], "x", True),
    (["a.b"], "aXb", False),  # the dot is literal
    (["*"], "anything", True),
    (["\\*"], "*", True),
    (["\\*"], "x", False),
    (["(unclosed"], "(unclosed", False),  # does not compile: skipped
    (["*\\bx"], "éx", True),  # \b is ASCII-only, as in Go: é is no word character
    (["*\\bx"], "ax", False),
]


@pytest.mark.parametrize(("rules", "name", "excluded"), CASES)
def test_kubo_matcher(rules: list[str], name: str, excluded: bool) -> None:
    assert IgnoreRules(rules).excludes(name) is excluded


def test_blank_and_comment_lines_are_no_rules() -> None:
    assert translate("") is None and translate("   ") is None and translate("# x") is None
    assert not IgnoreRules(["", "# c", "  "])
    assert split_rules_file("a\r\nb\n\n") == ["a\r", "b", "", ""]
