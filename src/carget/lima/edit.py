"""Adding ``cid:`` (and ``digest:``) lines to a template without touching anything else.

ruamel.yaml's round-trip dumper keeps comments and key order but not every byte: it
re-indents sequences, normalises spacing after colons and can re-wrap long scalars. A
template's diff must show only the new lines, so the edit is done on the text, line by line,
guided by the line and column ruamel recorded for every key, and then checked: the new
text is parsed again and must equal the old data plus exactly the new fields. If it does
not (a layout this editor cannot handle), nothing is returned and the caller writes nothing.

Placement follows the lima IPFS proposal: ``cid:`` right after the entry's ``digest:``, at
the same indentation. An entry without ``digest:`` gets one too (see
:class:`Annotation`), placed after ``arch:`` (or ``location:``), then the ``cid:`` line.
An existing ``cid:`` whose value differs is rewritten in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ..cid import CID
from ..errors import CargetError, InputError
from .template import Entry, Template

__all__ = ["Annotation", "annotate_text"]


@dataclass(frozen=True, slots=True)
class Annotation:
    """What to write for one entry: its ``cid``, and ``digest`` when the entry has none.

    Adding the digest is deliberate: lima checks ``digest:`` on its plain HTTPS path, so an
    entry pinned by cid alone would let that path fetch bytes other than the ones the cid
    names. lima's own templates carry a digest wherever they pin content.
    """

    entry: Entry
    cid: str
    digest: str | None = None


def _newline(lines: Sequence[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


def _quote_like(line: str, col: int, value: str) -> str:
    """Quote ``value`` as the scalar starting at ``col`` of ``line`` is quoted."""
    q = line[col : col + 1]
    if q in ('"', "'"):
        return f"{q}{value}{q}"
    return value


def _scalar_end(line: str, col: int) -> int:
    """End column of the single-line scalar that starts at ``col`` (before any comment)."""
    body = line.rstrip("\r\n")
    q = body[col : col + 1]
    if q in ('"', "'"):
        close = body.find(q, col + 1)
        return len(body) if close < 0 else close + 1
    hash_at = body.find(" #", col)
    end = len(body) if hash_at < 0 else hash_at
    return len(body[:end].rstrip())


def _plain(node: Any, depth: int = 0) -> Any:
    """The data of a round-trip tree as plain dicts and lists (for comparing)."""
    if depth > 200:  # recursive aliases: give up rather than recurse forever
        raise RecursionError("YAML nesting too deep")
    if isinstance(node, CommentedMap):
        return {k: _plain(v, depth + 1) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v, depth + 1) for v in node]
    return node


def _set_in(data: Any, path: tuple[str | int, ...], field: str, value: str) -> None:
    for step in path:
        data = data[step]
    data[field] = value


def annotate_text(template: Template, notes: Sequence[Annotation]) -> str:
    """Return the template text with each annotation's lines added.

    Raises :class:`InputError` naming the entry when it is written in flow style
    (``{location: ..., digest: ...}``), and naming the template when the edited text would
    not parse back to exactly the old data plus the new fields.
    """
    lines = template.text.splitlines(keepends=True)
    nl = _newline(lines)
    after: dict[int, list[str]] = {}  # 0-based line index -> lines to insert after it
    replace: dict[int, str] = {}
    expected = _plain(template.data)
    for note in notes:
        entry = note.entry
        node = entry.node
        if node.fa.flow_style():
            raise InputError(
                f"{template.path}: {entry.where} (line {entry.line}) is a flow-style mapping; "
                "write it in block style to annotate it"
            )
        if "cid" in node:
            old = node["cid"]
            if isinstance(old, str) and old and _same_cid(old, note.cid):
                continue
            if old is None or old == "":
                # an empty placeholder ("cid:", "cid: ''", "cid: ~"): rewrite the key's line,
                # keeping a trailing comment, quoted like the digest
                row, col = node.lc.key("cid")
                text = lines[row]
                body = text.rstrip("\r\n")
                hash_at = body.find(" #", col)
                comment = body[hash_at:] if hash_at >= 0 else ""
                s_row, s_col = node.lc.value("digest" if "digest" in node else "location")
                value = _quote_like(lines[s_row], s_col, note.cid)
                replace[row] = f"{body[:col]}cid: {value}{comment}{text[len(body):]}"
            else:
                row, col = node.lc.value("cid")
                text = lines[row]
                end = _scalar_end(text, col)
                replace[row] = text[:col] + _quote_like(text, col, note.cid) + text[end:]
            _set_in(expected, entry.path, "cid", note.cid)
            continue
        new: list[str] = []
        if "digest" in node:
            anchor = "digest"
        else:
            if note.digest is None:
                raise InputError(f"{template.path}: {entry.where}: no digest to write")
            anchor = "arch" if "arch" in node else "location"
        key_row, key_col = node.lc.key(anchor)
        val_row = node.lc.value(anchor)[0]
        style_row, style_col = node.lc.value("digest" if "digest" in node else "location")
        style = lines[style_row]
        indent = " " * key_col
        if "digest" not in node and note.digest is not None:
            new.append(f"{indent}digest: {_quote_like(style, style_col, note.digest)}")
            _set_in(expected, entry.path, "digest", note.digest)
        new.append(f"{indent}cid: {_quote_like(style, style_col, note.cid)}")
        _set_in(expected, entry.path, "cid", note.cid)
        after.setdefault(max(key_row, val_row), []).extend(new)

    if not after and not replace:
        return template.text
    out: list[str] = []
    for i, line in enumerate(lines):
        line = replace.get(i, line)
        extra = after.get(i)
        if extra:
            if not line.endswith("\n"):
                # the last line had no newline: give it one, and keep "no final newline"
                out.append(line + nl)
                out.append(nl.join(extra))
                continue
            out.append(line)
            out.extend(x + nl for x in extra)
        else:
            out.append(line)
    result = "".join(out)
    _verify(template, result, expected)
    return result


def _same_cid(old: str, new: str) -> bool:
    try:
        return CID.parse(old) == CID.parse(new)
    except CargetError:
        return False


def _verify(template: Template, text: str, expected: Any) -> None:
    problem = f"{template.path}: cannot add cid lines without changing other content"
    try:
        data = YAML(typ="rt").load(text)
        same = _plain(data) == expected
    except (YAMLError, ValueError, TypeError, RecursionError):
        same = False
    if not same:
        raise InputError(f"{problem} (unusual layout); nothing written")
