"""Answers that are one block as it is, sans-IO: ``format=raw`` (a block of any codec,
also at the end of a path, as kubo 0.43 gives it), and the codecs a path gateway gives
as they are — dag-json, dag-cbor, plain json and cbor — each with its own type.

Rules (ipfs/specs path-gateway and trustless-gateway; IPIP-524):

* no conversion between codecs: a format another codec's block cannot be sent as is a
  406 (:func:`serves`); ``json``/``cbor`` also take the ``dag-`` variant's block, whose
  bytes are valid plain JSON/CBOR, under the plain type;
* ``Content-Disposition``: ``attachment`` for binary formats, ``inline`` for JSON, named
  ``{cid}.{ext}`` unless ``?filename=`` names it; ``?download=true`` makes it an
  attachment;
* ``ETag: "{cid}.{format}"``; the block is immutable; ``Accept-Ranges: bytes`` and one
  ``Range`` gives a 206 of the block's bytes (the first of several ranges, as kubo 0.43).

Also home to the two rules every content answer shares: :func:`parse_range` and
:func:`disposition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from ..cid import CID, DAG_CBOR, DAG_JSON

__all__ = ["BLOCK_FORMATS", "CBOR", "JSON", "NATIVE", "BlockAnswer", "BlockFormat",
           "IMMUTABLE", "block_answer", "disposition", "parse_range", "serves",
           "unsatisfiable"]

#: the plain codecs (multicodec table): a block that is JSON or CBOR, with no IPLD links
JSON = 0x0200
CBOR = 0x51
#: what /ipfs/ content may be cached for: one year, as the spec's examples and the
#: conformance suite expect
IMMUTABLE = "public, max-age=29030400, immutable"


@dataclass(frozen=True, slots=True)
class BlockFormat:
    """How one format is sent: its type, the codecs whose blocks it sends as they are
    (empty: every codec), the disposition and the extension of its default file name."""

    content_type: str
    codecs: frozenset[int]
    inline: bool
    ext: str


BLOCK_FORMATS: dict[str, BlockFormat] = {
    "raw": BlockFormat("application/vnd.ipld.raw", frozenset(), False, "bin"),
    "dag-json": BlockFormat("application/vnd.ipld.dag-json", frozenset({DAG_JSON}),
                            True, "json"),
    "dag-cbor": BlockFormat("application/vnd.ipld.dag-cbor", frozenset({DAG_CBOR}),
                            False, "cbor"),
    "json": BlockFormat("application/json", frozenset({DAG_JSON, JSON}), True, "json"),
    "cbor": BlockFormat("application/cbor", frozenset({DAG_CBOR, CBOR}), False, "cbor"),
}
#: the format a path answer gives a block of these codecs in, when none is asked for
NATIVE: dict[int, str] = {DAG_JSON: "dag-json", DAG_CBOR: "dag-cbor", JSON: "json",
                          CBOR: "cbor"}


@dataclass
class BlockAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: ETags an ``If-None-Match`` may name for a 304
    etags: tuple[str, ...]


def serves(fmt: str, codec: int) -> bool:
    """Whether format ``fmt`` sends a block of ``codec`` as it is."""
    codecs = BLOCK_FORMATS[fmt].codecs
    return not codecs or codec in codecs


def disposition(name: str, download: bool, *, inline: bool = True) -> str:
    """``Content-Disposition`` for ``name``: both forms of the name, as boxo writes them
    (an ASCII one with the rest replaced, and the RFC 8187 UTF-8 one)."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() else "_" for c in name)
    kind = "inline" if inline and not download else "attachment"
    return (f"{kind}; filename=\"{quote(ascii_name, safe='')}\"; "
            f"filename*=UTF-8''{quote(name, safe='')}")


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The first ``bytes=`` range of ``header`` resolved against ``size``: (first, last);
    None to send the whole content (no or a malformed ``Range``); "416" when
    unsatisfiable. Of several ranges only the first is answered, as kubo 0.43 does (RFC
    9110 14.2 lets a server answer fewer; one part needs no multipart body)."""
    if not header:
        return None
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    a, dash, b = spec.split(",", 1)[0].strip().partition("-")
    if not dash or not (a.isdigit() or a == "") or not (b.isdigit() or b == "") \
            or (a == b == "") or len(a) > 19 or len(b) > 19:
        return None
    if a == "":  # the last b bytes
        n = int(b)
        if n == 0 or size == 0:
            return "416"
        return max(0, size - n), size - 1
    first = int(a)
    last = size - 1 if b == "" else min(int(b), size - 1)
    if b != "" and int(b) < first:
        return None  # invalid: ignored (RFC 9110 14.1.1)
    if first >= size:
        return "416"
    return first, last


def unsatisfiable(what: str, size: int, etag: str, common: list[tuple[str, str]]
                  ) -> tuple[list[tuple[str, str]], bytes]:
    """The headers and page of a 416 answer (no part of the range lies in the ``size``
    bytes of ``what``: "block", "file")."""
    page = f"invalid range: none of it lies in the {what}'s {size} bytes\n".encode()
    return [("Content-Range", f"bytes */{size}"),
            ("Content-Type", "text/plain; charset=utf-8"), ("Etag", etag),
            ("Cache-Control", IMMUTABLE), ("Content-Length", str(len(page))), *common], page


def block_answer(cid: CID, data: bytes, fmt: str, query: dict[str, str],
                 headers: dict[str, str], common: list[tuple[str, str]]) -> BlockAnswer:
    """The answer that sends block ``cid`` (its verified bytes ``data``) as format
    ``fmt`` (a key of :data:`BLOCK_FORMATS` that :func:`serves` its codec); ``common``
    are the path headers (``X-Ipfs-Path``, ``X-Ipfs-Roots``…)."""
    spec = BLOCK_FORMATS[fmt]
    etag = f'"{cid}.{fmt}"'
    name = query.get("filename") or f"{cid}.{spec.ext}"
    hdrs = [
        ("Content-Type", spec.content_type),
        ("Content-Disposition", disposition(name, query.get("download") == "true",
                                            inline=spec.inline)),
        ("Etag", etag),
        ("Cache-Control", IMMUTABLE),
        ("Accept-Ranges", "bytes"),
        ("X-Content-Type-Options", "nosniff"),
        *common,
        ("Vary", "Accept"),
    ]
    size = len(data)
    rng = parse_range(headers.get("range"), size)
    if rng == "416":
        return BlockAnswer(416, *unsatisfiable("block", size, etag, common), (etag,))
    if isinstance(rng, tuple):
        first, last = rng
        hdrs += [("Content-Range", f"bytes {first}-{last}/{size}"),
                 ("Content-Length", str(last - first + 1))]
        return BlockAnswer(206, hdrs, data[first:last + 1], (etag,))
    hdrs.append(("Content-Length", str(size)))
    return BlockAnswer(200, hdrs, data, (etag,))
