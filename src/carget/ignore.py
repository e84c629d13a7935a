"""``--ignore`` / ``--ignore-rules-path``: which directory entries an import leaves out,
by kubo 0.43.1's rule.

kubo builds its filter (boxo ``files.Filter``) from gitignore-style lines: those of the
``--ignore-rules-path`` file first, then each ``--ignore``. It is **not** git's matcher:
each line becomes a regular expression (the ``crackcomm/go-gitignore`` translation), and
the expressions are tried against the entry's own name, never its path. What follows
from that, all checked against kubo 0.43.1 (tests/interop/test_go_kubo_add.py):

* a pattern with a slash in the middle (``sub/x.txt``) or at the end (``build/``) never
  matches anything, since a name holds no slash; ``build`` leaves out both a file and a
  directory of that name;
* ``*`` is any run of characters, ``**/`` and ``/**`` as in git; ``?`` stands for itself
  (a literal question mark), not for one character;
* a leading ``!`` negates: it puts back a name an earlier line left out (a later line can
  leave it out again); ``#`` starts a comment, blank lines are skipped, spaces around a
  line are trimmed;
* other regular-expression syntax passes through (``[a-z]``, ``+``, ``(a|b)``); a line
  whose expression does not compile is skipped (Go's RE2 and Python's ``re`` read a few
  exotic forms differently, such as ``a++`` or a backslash before a letter that is no
  escape: such lines may differ; the gitignore forms above do not);
* the arguments themselves are never filtered, only the entries inside directories, and
  ``-H``'s dot-file rule comes first: no ``!`` line brings back a dot-file.

Sans-IO: the caller reads the rules file (see :func:`split_rules_file`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["IgnoreRules", "split_rules_file", "translate"]

#: stands for an escaped or double star while the single stars are rewritten (kubo's
#: marker: it cannot come out of any earlier step)
_MARK = "#$~"
#: "a slash after a character, then a star and a dot": such a line is anchored at the
#: start of the (name) path, as if it began with "/"
_ANCHOR = re.compile(r"([^/+])/.*\*\.")


def translate(line: str) -> tuple[str, bool] | None:
    """The regular expression (Python syntax) for one rules line, and whether it negates;
    None for a comment or a blank line. The steps are go-gitignore's, in its order."""
    line = line.rstrip("\r")
    if line.startswith("#"):
        return None
    line = line.strip(" ")
    if not line:
        return None
    negate = line[0] == "!"
    if negate:
        line = line[1:]
    if line[:1] in ("#", "!"):  # an escaped "#" or a second "!" is dropped, not kept
        line = line[1:]
    if _ANCHOR.search(line) and line[:1] != "/":
        line = "/" + line
    line = line.replace(".", r"\.")
    if line.startswith("/**/"):
        line = line[1:]
    line = line.replace("/**/", "(/|/.+/)")
    line = line.replace("**/", f"(|.{_MARK}/)")
    line = line.replace("/**", f"(|/.{_MARK})")
    line = line.replace(r"\*", "\\" + _MARK)
    line = line.replace("*", "([^/]*)")
    line = line.replace("?", r"\?")
    line = line.replace(_MARK, "*")
    # \Z, not $: Go's $ (without the m flag) is the end of the text only, Python's would
    # also match before a final newline
    expr = line + ("(|.*)" if line.endswith("/") else "(|/.*)") + r"\Z"
    expr = "^(|/)" + expr[1:] if expr.startswith("/") else "^(|.*/)" + expr
    return expr, negate


class IgnoreRules:
    """Compiled ``--ignore`` lines; :meth:`excludes` says whether a name is left out."""

    __slots__ = ("_rules",)

    def __init__(self, lines: Iterable[str]) -> None:
        rules: list[tuple[re.Pattern[str], bool]] = []
        for line in lines:
            found = translate(line)
            if found is None:
                continue
            try:
                # ASCII: Go's \b, \w, \d and \s know ASCII only
                rules.append((re.compile(found[0], re.ASCII), found[1]))
            except re.error:
                continue  # kubo skips a line whose expression does not compile
        self._rules = tuple(rules)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def excludes(self, name: str) -> bool:
        """True if the entry called ``name`` is left out: the last line that matches it
        decides, except that a ``!`` line only puts back what an earlier line left out."""
        out = False
        for pattern, negate in self._rules:
            if pattern.search(name):
                if not negate:
                    out = True
                elif out:
                    out = False
        return out


def split_rules_file(text: str) -> list[str]:
    """The lines of an ``--ignore-rules-path`` file as kubo reads them: split on
    newlines only (a ``\\r`` before one is trimmed by :func:`translate`)."""
    return text.split("\n")
