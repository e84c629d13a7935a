"""Path-gateway answers, sans-IO: ``GET /ipfs/CID[/path]`` that asks for no trustless
format gets the content itself, as kubo 0.43's gateway (boxo) gives it, and as the
gateway-conformance suite's path-gateway tests check:

* a file: its bytes, ``Content-Type`` from the name, else sniffed from the first bytes
  (:mod:`._sniff`); ``ETag: "CID"`` of the file; ``Accept-Ranges: bytes``; one ``Range`` → 206,
  an unsatisfiable one → 416 with ``Content-Range: bytes */SIZE``; of several ranges the
  first (as kubo 0.43); a malformed ``Range`` gets the whole file (RFC 9110 lets a server
  ignore ``Range``);
  ``?filename=`` → ``Content-Disposition: inline`` (``attachment`` with
  ``?download=true``), both forms of the name as boxo writes them;
* a directory: a 301 to the same path with a trailing slash (query kept) when it lacks
  one; then ``index.html`` if the directory holds one (``ETag`` of the directory), else an
  HTML listing (names, sizes, CIDs) with ``ETag: "DirIndex-…_CID-CID"`` and the short
  cache lifetime kubo gives generated pages;
* a symlink: its target as the body;
* a dag-json, dag-cbor, json or cbor block: the block as it is (:mod:`._blockgw`), or for
  a browser (``Accept: text/html``) a page about it; ``format``/``Accept`` may ask for a
  single-block format (raw, or a codec's own), never a conversion (406);
* other codecs: 501, with the trustless formats named.

``X-Ipfs-Path`` is the path as requested; ``X-Ipfs-Roots`` one CID per path segment (the
logical roots, HAMT shards left out). Blocks are read through the source given; over a
:class:`~carget.server.blocks.Waiting` source a missing block raises ``NeedBlock`` so the
caller can wait for it and plan again.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from urllib.parse import quote

from ..cid import CID, DAG_CBOR, DAG_PB, RAW
from ..errors import NotFoundError, UnixFSError, UnsupportedCodec
from ..unixfs.exporter import Exporter
from ..unixfs.node import Node, block_links, decode_unixfs
from ..unixfs.walk import path_step
from ._blockgw import (
    IMMUTABLE,
    NATIVE,
    block_answer,
    disposition,
    parse_range,
    serves,
    unsatisfiable,
)
from ._car import WalkSource
from ._filebody import file_pieces
from ._sniff import SNIFF_BYTES, content_type, sniff
from .blocks import Need, NeedBlock, Want

__all__ = ["FileBody", "NotAcceptable", "PathAnswer", "plan_path"]

#: generated listings may change with the gateway's version: a week, as kubo
LISTING_CACHE = "public, max-age=604800, stale-while-revalidate=2678400"
#: entries shown in a listing: a page is built in memory, so a HAMT of millions of
#: entries must not become a page of hundreds of MiB
MAX_LISTING = 10_000
#: changes when the listing's HTML does, so ETags of listings change with it
LISTING_VERSION = "carget-1"

@dataclass(frozen=True, slots=True)
class FileBody:
    """A file answer's body: bytes ``first..last`` (inclusive) of the file ``cid``."""

    cid: CID
    size: int
    first: int
    last: int
    want: Want


@dataclass
class PathAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    file: FileBody | None = None
    #: ETags an ``If-None-Match`` may name for a 304 (strong form; weak ones compare equal)
    etags: tuple[str, ...] = ()


def _logical_walk(src: WalkSource, root: CID, segs: list[str]) -> tuple[list[CID], CID]:
    """Resolve ``segs`` from ``root``: (one CID per segment, root first; terminal).
    Raises :class:`NotFoundError` (also for a path into a non-UnixFS block)."""
    roots = [root]
    cur, seg, depth = root, 0, 0
    while seg < len(segs):
        data = src.get(cur)
        if data is None:
            raise NotFoundError(f"block {cur} on the path is not available")
        step = path_step(cur, data, segs, seg, depth)
        if step.cid is None:
            raise UnsupportedCodec(f"{cur} is {cur.codec_name}: a path inside it is "
                                   "served only as ?format=car")
        cur, seg, depth = step.cid, step.seg, step.hamt_depth
        if not depth:
            roots.append(cur)
    return roots, cur


def _listing(src: WalkSource, dir_cid: CID, node: Node, cid_text: str, segs: list[str],
             request_path: str) -> bytes:
    crumbs = [f'<a href="/ipfs/{html.escape(quote(cid_text, safe=""))}">'
              f"{html.escape(cid_text)}</a>"]
    for i, seg in enumerate(segs):
        href = "/ipfs/" + "/".join(quote(s, safe="") for s in [cid_text, *segs[: i + 1]])
        crumbs.append(f'<a href="{html.escape(href)}">{html.escape(seg)}</a>')
    base = "/ipfs/" + "/".join(quote(s, safe="") for s in [cid_text, *segs])
    rows = []
    if segs:
        rows.append(f'<tr><td></td><td><a href="{html.escape(base)}/..">..</a></td>'
                    "<td></td><td></td></tr>")
    shown = 0
    for entry in Exporter(src).list_dir(dir_cid, node):
        if shown == MAX_LISTING:
            rows.append(f"<tr><td colspan=4>(only the first {MAX_LISTING} entries are "
                        "listed)</td></tr>")
            break
        shown += 1
        href = f"{base}/{quote(entry.name, safe='')}"
        cid = str(entry.cid)
        hash_href = f"/ipfs/{cid}?filename={quote(quote(entry.name, safe=''), safe='')}"
        size = "" if entry.tsize is None else str(entry.tsize)
        rows.append(
            f'<tr><td></td><td><a href="{html.escape(href)}">{html.escape(entry.name)}</a>'
            f'</td><td><a class="ipfs-hash" translate="no" href="{html.escape(hash_href)}">'
            f"{html.escape(cid)}</a></td><td>{size}</td></tr>")
    page = (
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\">"
        f"<title>{html.escape(request_path)}</title></head>\n<body>\n"
        f"<h1>Index of /ipfs/{'/'.join(crumbs)}</h1>\n"
        f"<p>{html.escape(str(dir_cid))}</p>\n<table>\n"
        "<tr><th></th><th>Name</th><th>CID</th><th>Size</th></tr>\n"
        + "\n".join(rows) + "\n</table>\n</body>\n</html>\n")
    return page.encode("utf-8")


def _first_bytes(src: WalkSource, cid: CID, size: int) -> bytes:
    """Up to :data:`SNIFF_BYTES` of the file's first bytes: those before a block this
    gateway lacks will do, so a range elsewhere can still be answered, as kubo does; with
    no byte at all, a :class:`NotFoundError`. A waiting source's ``NeedBlock`` goes to
    the caller, which waits for the block: a type must not depend on how far a fetch
    had come."""
    out = bytearray()
    try:
        for piece in file_pieces(_Plain(src), cid, size, 0, min(size, SNIFF_BYTES) - 1, {}):
            if isinstance(piece, Need):
                raise NotFoundError(f"block {piece.cid} is not available")
            assert isinstance(piece, memoryview)  # _Plain has no spans
            out += piece
    except NotFoundError:
        if not out:
            raise
    return bytes(out)


class _Plain:
    """A walk source as a served one with no spans: what sniffing reads through."""

    def __init__(self, src: WalkSource) -> None:
        self.src = src

    def get(self, cid: CID, /) -> bytes | None:
        return self.src.get(cid)

    def is_leaf(self, cid: CID, /) -> bool:
        return False

    def size(self, cid: CID, /) -> int | None:
        return None

    def read_into(self, cid: CID, buf: memoryview, /) -> int:
        raise KeyError(cid)

    def open_span(self, cid: CID, fds: dict[str, int], /) -> None:
        return None

    def data_span(self, cid: CID, fds: dict[str, int], /) -> None:
        return None

    def in_memory(self, cid: CID, /) -> bytes | None:
        return None


def _block(src: WalkSource, t: CID, fmt: str, query: dict[str, str],
           headers: dict[str, str], common: list[tuple[str, str]]) -> PathAnswer:
    data = src.get(t)
    if data is None:
        raise NotFoundError(f"block {t} is not available")
    ans = block_answer(t, bytes(data), fmt, query, headers, common)
    return PathAnswer(ans.status, ans.headers, ans.body, etags=ans.etags)


def _wants_html(accept: str | None) -> bool:
    """Whether ``Accept`` names ``text/html`` (what a browser's navigation sends)."""
    for item in (accept or "").split(","):
        mtype, *params = item.split(";")
        if mtype.strip().lower() == "text/html":
            q = [p.strip()[2:] for p in params if p.strip().lower().startswith("q=")]
            return not q or q[0].strip("0.") != ""
    return False


def _preview(src: WalkSource, t: CID, common: list[tuple[str, str]]) -> PathAnswer:
    """A page about a dag-json/dag-cbor/json/cbor block for a browser (the spec's HTML
    rendering, not a codec conversion): its CID, codec, size, links out of it, and the
    formats it can be downloaded in."""
    data = src.get(t)
    if data is None:
        raise NotFoundError(f"block {t} is not available")
    links = block_links(t, data) if t.codec == DAG_CBOR else []
    base = f"/ipfs/{t}"
    fmts = [NATIVE[t.codec], "raw", "car"]
    rows = "\n".join(f'<li><a href="/ipfs/{c}/">{c}</a></li>' for c in links[:MAX_LISTING])
    page = (
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\">"
        f"<title>{t}</title></head>\n<body>\n<h1>{t}</h1>\n"
        f"<p>{html.escape(t.codec_name)} block, {len(data)} bytes. Download: "
        + ", ".join(f'<a href="{base}?format={f}">{f}</a>' for f in fmts)
        + f"</p>\n<h2>Links ({len(links)})</h2>\n<ul>\n{rows}\n</ul>\n</body>\n</html>\n")
    body = page.encode("utf-8")
    etag = f'"DagIndex-{LISTING_VERSION}_CID-{t}"'
    return PathAnswer(200, [("Content-Type", "text/html; charset=utf-8"),
                            ("Content-Length", str(len(body))), ("Etag", etag),
                            ("Cache-Control", LISTING_CACHE), *common, ("Vary", "Accept")],
                      body, etags=(etag,))


class NotAcceptable(Exception):
    """The format asked for cannot send the block the path ends at (406)."""


def plan_path(src: WalkSource, cid: CID, cid_text: str, segs: list[str],
              query: dict[str, str], headers: dict[str, str], request_path: str,
              raw_query: str, x_ipfs_path: str, fmt: str | None = None) -> PathAnswer:
    """The answer to a path request (``request_path`` and ``raw_query`` as the client
    sent them, for the redirect); ``fmt`` a key of
    :data:`~carget.server._blockgw.BLOCK_FORMATS` when one was asked for (``format`` or
    ``Accept``). Raises :class:`NotFoundError`, :class:`UnsupportedCodec`,
    :class:`NotAcceptable`, decoders' errors, and what ``src`` raises."""
    roots, t = _logical_walk(src, cid, segs)
    # kubo 0.43 names the content path in Ipfs-Uri; the conformance suite (and older
    # clients) read X-Ipfs-Path: both are given
    common = [("X-Ipfs-Path", x_ipfs_path), ("Ipfs-Uri", "ipfs://" + x_ipfs_path[len("/ipfs/"):]),
              ("X-Ipfs-Roots", ",".join(map(str, roots)))]
    unixfs = t.codec in (RAW, DAG_PB)
    if fmt is not None and not (unixfs and fmt in ("json", "cbor")):
        # json/cbor of a UnixFS file is the file itself (kubo 0.43: its own type)
        if not serves(fmt, t.codec):
            raise NotAcceptable(f"{t} is {t.codec_name}: it cannot be sent as {fmt} "
                                "(no conversion between codecs, IPIP-524)")
        return _block(src, t, fmt, query, headers, common)
    if not unixfs:
        if t.codec not in NATIVE:
            raise UnsupportedCodec(f"{t} is {t.codec_name}, not UnixFS: ask for "
                                   "?format=raw or ?format=car")
        if fmt is None and _wants_html(headers.get("accept")):
            return _preview(src, t, common)
        return _block(src, t, NATIVE[t.codec], query, headers, common)
    data = src.get(t)
    if data is None:
        raise NotFoundError(f"block {t} is not available")
    node = decode_unixfs(t, data)
    if node.kind in ("directory", "hamt"):
        if not request_path.endswith("/"):
            loc = request_path + "/" + (f"?{raw_query}" if raw_query else "")
            # a short page as Go's http.Redirect writes one, for clients that show it
            page = f'<a href="{html.escape(loc)}">Moved Permanently</a>.\n\n'.encode()
            return PathAnswer(301, [("Location", loc),
                                    ("Content-Type", "text/html; charset=utf-8"),
                                    ("Content-Length", str(len(page))), *common], page)
        try:
            step = path_step(t, data, ["index.html"], 0, 0, node)
            index = step.cid
            depth = step.hamt_depth
            while index is not None and depth:  # through HAMT sub-shards
                sub = src.get(index)
                if sub is None:
                    raise NotFoundError(f"block {index} is not available")
                step = path_step(index, sub, ["index.html"], 0, depth)
                index, depth = step.cid, step.hamt_depth
        except NotFoundError:
            index = None
        if index is not None:
            try:
                return _file(src, index, "index.html", query, headers, common, etag_cid=t)
            except NeedBlock as need:
                # its blocks lie under the directory, outside the directory's own
                # (what the request path brings): ask for the index page itself
                raise NeedBlock(need.cid, Want(cid, (*segs, "index.html"),
                                               (0, SNIFF_BYTES - 1))) from None
        etag = f'"DirIndex-{LISTING_VERSION}_CID-{t}"'
        body = _listing(src, t, node, cid_text, segs, request_path)
        return PathAnswer(200, [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Etag", etag), ("Cache-Control", LISTING_CACHE), *common,
        ], body, etags=(etag, f'"{t}"'))
    if node.kind == "symlink":
        body = bytes(node.data)
        return PathAnswer(200, [
            ("Content-Type", "inode/symlink"), ("Content-Length", str(len(body))),
            ("Etag", f'"{t}"'), ("Cache-Control", IMMUTABLE), *common,
        ], body, etags=(f'"{t}"',))
    if node.kind not in ("file", "raw"):
        raise UnixFSError(f"{t} is a UnixFS {node.kind}")
    return _file(src, t, segs[-1] if segs else None, query, headers, common, node=node)


def _file(src: WalkSource, t: CID, name: str | None, query: dict[str, str],
          headers: dict[str, str], common: list[tuple[str, str]], *,
          node: Node | None = None, etag_cid: CID | None = None) -> PathAnswer:
    if node is None:
        data = src.get(t)
        if data is None:
            raise NotFoundError(f"block {t} is not available")
        node = decode_unixfs(t, data)
        if node.kind not in ("file", "raw"):
            raise UnixFSError(f"index.html in {etag_cid} is a {node.kind}")
    size = node.filesize
    filename = query.get("filename") or None
    ctype = content_type(filename or name)
    if ctype is None:
        head = _first_bytes(src, t, size) if size else b""
        ctype = sniff(head, len(head) == size) if size else "text/plain; charset=utf-8"
    etag = f'"{etag_cid or t}"'
    hdrs = [("Content-Type", ctype), ("Etag", etag), ("Cache-Control", IMMUTABLE),
            ("Accept-Ranges", "bytes"), *common]
    if filename:
        hdrs.append(("Content-Disposition",
                     disposition(filename, query.get("download") == "true")))
    rng = parse_range(headers.get("range"), size)
    if rng == "416":
        return PathAnswer(416, *unsatisfiable("file", size, etag, common), etags=(etag,))
    want = Want(t)
    if isinstance(rng, tuple):
        first, last = rng
        hdrs += [("Content-Range", f"bytes {first}-{last}/{size}"),
                 ("Content-Length", str(last - first + 1))]
        return PathAnswer(206, hdrs, file=FileBody(t, size, first, last,
                                                   Want(t, (), (first, last))),
                          etags=(etag,))
    hdrs.append(("Content-Length", str(size)))
    return PathAnswer(200, hdrs, file=FileBody(t, size, 0, size - 1, want), etags=(etag,))
