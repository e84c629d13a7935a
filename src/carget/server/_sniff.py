"""The type of a file's bytes, sans-IO: from its name (Go's table for the extensions kubo
serves most, Python's built-in one otherwise, never the machine's), else from its first
bytes as kubo 0.43's gateway sniffs them (HTML, common binary signatures, JSON objects and
arrays, text, else ``application/octet-stream``)."""

from __future__ import annotations

import json
import mimetypes
import re

__all__ = ["SNIFF_BYTES", "content_type", "json_start", "sniff"]

#: bytes looked at to sniff a type: as kubo 0.43.1 (measured: a control byte at offset
#: 4095 makes a file application/octet-stream, one at 4096 leaves it text/plain)
SNIFF_BYTES = 4096
#: Go's mime table (mime.TypeByExtension's built-ins) for what kubo serves most; others
#: come from Python's built-in table, read without the machine's mime.types
_GO_TYPES = {
    ".avif": "image/avif", ".css": "text/css; charset=utf-8", ".gif": "image/gif",
    ".htm": "text/html", ".html": "text/html",
    ".jpeg": "image/jpeg", ".jpg": "image/jpeg", ".js": "text/javascript; charset=utf-8",
    ".json": "application/json", ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf", ".png": "image/png", ".svg": "image/svg+xml",
    ".wasm": "application/wasm", ".webp": "image/webp", ".xml": "text/xml; charset=utf-8",
    ".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8",
}
_PY_TYPES = mimetypes.MimeTypes()
#: (prefix, type) signatures, as Go's sniffer knows them (a small part of it)
_MAGIC = (
    (b"%PDF-", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
    (b"\x1f\x8b\x08", "application/x-gzip"), (b"PK\x03\x04", "application/zip"),
    (b"\x00asm", "application/wasm"), (b"QFI\xfb", "application/octet-stream"),
    (b"ustar", "application/x-tar"),
)
_HTML_TAGS = (b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1",
              b"<div", b"<font", b"<table", b"<a", b"<style", b"<title", b"<b", b"<body",
              b"<br", b"<p", b"<!--")


def content_type(name: str | None) -> str | None:
    """The type a file name implies, or None (then the bytes decide)."""
    if not name or "." not in name:
        return None
    ext = name[name.rfind("."):].lower()
    if ext in _GO_TYPES:
        return _GO_TYPES[ext]
    guessed = _PY_TYPES.types_map[True].get(ext)
    if guessed is None:
        return None
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def sniff(head: bytes, whole: bool = False) -> str:
    """A type from a file's first bytes (HTML, common binary formats, a JSON object or
    array, text, else ``application/octet-stream``); ``whole`` when ``head`` is the whole
    file (else it was cut at the window's end)."""
    for magic, mtype in _MAGIC:
        if head.startswith(magic):
            return mtype
    lead = head.lstrip(b"\t\n\x0c\r ").lower()
    for tag in _HTML_TAGS:
        if lead.startswith(tag) and lead[len(tag):len(tag) + 1] in (b" ", b">"):
            return "text/html"  # as kubo 0.43 labels sniffed HTML
    if lead.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end is still text
        if exc.start < len(head) - 3:
            return "application/octet-stream"
        text = head[: exc.start].decode("utf-8")
    if any(ord(c) < 0x20 and c not in "\t\n\r\x0c\x1b" for c in text):
        return "application/octet-stream"
    if _is_json_document(head, whole):
        return "application/json"  # as kubo 0.43 names it
    return "text/plain; charset=utf-8"


#: one JSON token: a string, a number, a literal, or a structural character
_TOKEN = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
                    r"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?"
                    r"|true|false|null|[{}\[\]:,]")
#: the start of a string, number or literal cut by the end of the window
_CUT = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{0,4})*\\?\Z'
                  r"|-?[0-9]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?\Z"
                  r"|t(?:r(?:ue?)?)?\Z|f(?:a(?:l(?:se?)?)?)?\Z|n(?:u(?:ll?)?)?\Z")
#: what the grammar takes next: a value, an object's key, its ':', a ',' or a closer
_VALUE, _KEY, _COLON, _NEXT = range(4)


def json_start(text: str) -> bool:
    """Whether ``text`` (a window cut at its end) begins a JSON object or array that is
    well-formed up to the cut: what kubo 0.43's sniffer calls ``application/json`` for a
    file longer than the window. Scans token by token; the last may be cut short."""
    stack: list[str] = []
    state, i, n = _VALUE, 0, len(text)
    after_opener = False
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i == n:
            return bool(stack)
        m = _TOKEN.match(text, i)
        if m is None:
            cut = _CUT.match(text, i)
            return bool(stack) and cut is not None and (
                state == _VALUE or (state == _KEY and text[i] == '"'))
        tok, i = m.group(), m.end()
        if tok[-1] in ".eE+-" and i < n:
            return False  # a number missing its digits, not cut by the window
        opened, after_opener = after_opener, tok in ("{", "[")
        if tok in ("{", "["):
            if state != _VALUE:
                return False
            stack.append(tok)
            state = _KEY if tok == "{" else _VALUE
        elif tok in ("}", "]"):
            # a closer follows a value, or its opener at once ({} and [])
            if not stack or stack.pop() != ("{" if tok == "}" else "[") or \
                    (state != _NEXT and not opened):
                return False
            state = _NEXT
            if not stack:
                return text[i:].strip(" \t\r\n") == ""
        elif not stack:
            return False  # a scalar at the top is not what the sniffer calls JSON
        elif tok == ":":
            if state != _COLON:
                return False
            state = _VALUE
        elif tok == ",":
            if state != _NEXT:
                return False
            state = _KEY if stack[-1] == "{" else _VALUE
        elif state == _KEY and tok.startswith('"'):
            state = _COLON
        elif state == _VALUE:
            state = _NEXT
        else:
            return False


def _is_json_document(head: bytes, whole: bool) -> bool:
    body = head.strip(b" \t\r\n")
    if body[:1] not in (b"{", b"["):
        return False
    if whole:
        try:
            return isinstance(json.loads(body), dict | list)
        except (ValueError, RecursionError):
            return False
    return json_start(head.decode("utf-8", "ignore"))
