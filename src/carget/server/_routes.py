"""Request → response plan, sans-IO: parse the target, query and ``Accept``, pick the format,
resolve the path, and decide status, headers and what the body is.

Rules (ipfs/specs http-gateways/trustless-gateway; IPIP-402, IPIP-412, IPIP-523):

* ``format`` beats ``Accept`` (IPIP-523); ``car-version``/``car-order``/``car-dups`` beat the
  matching ``Accept`` parameters; ``Accept`` entries are tried by q-value, best first.
* No ``format`` and no trustless ``Accept`` type: a path-gateway answer, the content itself
  (:mod:`._pathgw`); ``Accept`` that names only types we cannot give
  (``application/x-tar``, an IPNS record, a CAR of another version…): 406.
* A raw block (``format=raw``) of the CID or of the path's last block, as kubo 0.43 gives
  it (the trustless spec asks no path of a client; a path gateway answers one), and the
  single-block formats of :mod:`._blockgw` (dag-json, dag-cbor, json, cbor) through
  :mod:`._pathgw`; CAR-only parameters on those are a 400 (the spec makes them "only
  available for CAR requests"). ``?filename=`` names every answer's download.
* Missing root block: 404 (412 with ``Cache-Control: only-if-cached``); missing name on the
  path: 404 (decided before the status line, so there is no partial body to guess about).
* Unknown query parameter names are ignored (as kubo does; caches add their own), but bad
  values of known parameters are a 400.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

from ..car.encoder import encode_header
from ..cid import CID, DAG_CBOR, DAG_PB, RAW
from ..errors import (
    CargetError,
    DecodeError,
    IncompleteDAG,
    NotFoundError,
    UnsafePathError,
    UsageError,
)
from ..names import is_valid_name
from ..unixfs.node import decode_dag_cbor, decode_unixfs
from ._blockgw import BLOCK_FORMATS, IMMUTABLE, disposition
from ._car import (
    TRAVERSABLE,
    ByteRange,
    Resolved,
    UnsupportedCodec,
    WalkSource,
    resolve_path,
    resolve_range,
)
from ._pathgw import FileBody, NotAcceptable, plan_path
from .blocks import Waiting

__all__ = ["CarPlan", "Plan", "error_plan", "not_modified", "plan_request", "split_target"]

RAW_TYPE = "application/vnd.ipld.raw"
CAR_TYPE = "application/vnd.ipld.car"
#: longest request target accepted: a CID plus a deep path, not a megabyte of junk
MAX_TARGET = 8192
#: formats other gateways know that this gateway cannot give (406, not 400)
KNOWN_FORMATS = {"tar", "ipns-record"}
#: ``Accept`` types that ask for one of those formats: naming only these (or trustless
#: types with parameters we cannot meet) is a 406; any other type gets the content
KNOWN_TYPES = {"application/json", "application/cbor", "application/x-tar",
               "application/vnd.ipld.dag-json", "application/vnd.ipld.dag-cbor",
               "application/vnd.ipfs.ipns-record", RAW_TYPE, CAR_TYPE}
CAR_PARAMS = ("dag-scope", "entity-bytes", "car-version", "car-order", "car-dups")
#: ``Accept`` types of the formats that send one block as it is
_TYPE_FORMATS = {f.content_type: name for name, f in BLOCK_FORMATS.items()}
#: characters a path segment keeps as they are in ``X-Ipfs-Path`` (RFC 3986 ``pchar``:
#: unreserved, sub-delims, ``:`` and ``@``); every other byte of its UTF-8 is %XX, so an
#: entry name holding CR, LF, spaces or non-ASCII can never break the header
_PCHAR_SAFE = "!$&'()*+,;=:@"


def content_path(cid_text: str, segments: list[str]) -> str:
    """``/ipfs/{cid}/{path}`` for the ``X-Ipfs-Path`` header, each segment percent-encoded
    (the spec: "the original, requested content path", and a request path is
    percent-encoded). Header-safe for any segment."""
    return "/".join(["/ipfs", quote(cid_text, safe=_PCHAR_SAFE),
                     *(quote(s, safe=_PCHAR_SAFE) for s in segments)])


@dataclass(frozen=True, slots=True)
class CarPlan:
    header: bytes
    resolved: Resolved
    scope: str
    byte_range: ByteRange | None
    dups: bool


@dataclass
class Plan:
    """What to answer: status, headers, and the body (bytes, a CAR plan, or nothing)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    car: CarPlan | None = None
    file: FileBody | None = None
    #: ETags (strong form) that make an ``If-None-Match`` a 304
    etags: tuple[str, ...] = ()


def not_modified(if_none_match: str | None, etags: tuple[str, ...]) -> bool:
    """True when ``If-None-Match`` names one of ``etags`` (weak comparison, RFC 9110
    13.1.2: ``W/"x"`` matches ``"x"``) or is ``*``."""
    if not if_none_match or not etags:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") in etags:
            return True
    return False


def error_plan(status: int, message: str) -> Plan:
    body = (message.rstrip() + "\n").encode("utf-8", "replace")
    return Plan(status, [("Content-Type", "text/plain; charset=utf-8"),
                         ("X-Content-Type-Options", "nosniff"),
                         ("Content-Length", str(len(body)))], body)


@dataclass(frozen=True, slots=True)
class _Want:
    kind: str  # "car" or a key of BLOCK_FORMATS
    order_explicit: bool = False
    dups: bool | None = None


def _parse_params(parts: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in parts:
        k, eq, v = p.strip().partition("=")
        if eq:
            out[k.strip().lower()] = v.strip().strip('"').lower()
    return out


def negotiate(accept: str | None) -> _Want | str | None:
    """The best format ``Accept`` asks for: a :class:`_Want` (a CAR, or a single-block
    format of :data:`BLOCK_FORMATS`); None when it names none of those but accepts
    something else (absent, wildcards, ``text/html``…: the content itself); "406" when it
    names only formats we cannot give. Raises
    :class:`UsageError` for a malformed q-value."""
    if not accept:
        return None
    options: list[tuple[float, int, _Want | None]] = []
    other = False  # a type the content itself may satisfy
    for idx, item in enumerate(accept.split(",")):
        parts = item.split(";")
        mtype = parts[0].strip().lower()
        if not mtype:
            continue
        params = _parse_params(parts[1:])
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            raise UsageError(f"bad q-value in Accept: {item.strip()!r}") from None
        if q <= 0:
            continue
        if mtype not in KNOWN_TYPES:
            other = True  # text/html, */* and the like: the content, if nothing better
            continue
        want: _Want | None = None
        if mtype in _TYPE_FORMATS:
            want = _Want(_TYPE_FORMATS[mtype])
        elif mtype == CAR_TYPE:
            order = params.get("order")
            dups = params.get("dups")
            if params.get("version", "1") == "1" and order in (None, "", "dfs", "unk") \
                    and dups in (None, "y", "n"):
                want = _Want("car", order == "dfs", None if dups is None else dups == "y")
        options.append((-q, idx, want))
    for _, _, want in sorted(options, key=lambda o: (o[0], o[1])):
        if want is not None:
            return want
    return "406" if options and not other else None


def parse_entity_bytes(text: str) -> tuple[int | None, int | None]:
    """``from:to`` with integers, negatives, or ``*`` for ``to``. Raises :class:`UsageError`."""
    frm, colon, to = text.partition(":")
    if not colon:
        raise UsageError(f"entity-bytes {text!r} is not from:to")

    def num(s: str, star_ok: bool) -> int | None:
        if star_ok and s == "*":
            return None
        body = s[1:] if s.startswith("-") else s
        if not body.isdigit() or not body.isascii() or len(body) > 19:
            raise UsageError(f"entity-bytes {text!r}: {s!r} is not a byte offset")
        return int(s)

    a = num(frm, False)
    b = num(to, True)
    assert a is not None
    # both ends counted the same way and reversed can never select anything (RFC 9110 14.1.2)
    if b is not None and ((a >= 0 and b >= 0) or (a < 0 and b < 0)) and b < a:
        raise UsageError(f"entity-bytes {text!r}: the range ends before it starts")
    return a, b


def split_target(target: str) -> tuple[list[str], dict[str, str]]:
    """Split ``/ipfs/{cid}/a/b?x=y`` into path segments (percent-decoded) and query.

    Raises :class:`UsageError` for ``.``/``..``, NUL or ``/`` inside a segment, bad
    percent-encoding or repeated query parameters, and :class:`NotFoundError` for targets
    outside ``/ipfs/``.
    """
    if len(target) > MAX_TARGET:
        raise UsageError("request target too long")
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    if not path.startswith("/ipfs/"):
        raise NotFoundError(f"no such route {path!r} (this gateway serves /ipfs/)")
    segs: list[str] = []
    raw_segs = path[len("/ipfs/"):].split("/")
    for i, raw in enumerate(raw_segs):
        if raw == "":
            if i == len(raw_segs) - 1 and i > 0:
                continue  # trailing slash
            raise UsageError("empty path segment")
        try:
            seg = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise UsageError("path segment is not valid UTF-8") from None
        if not is_valid_name(seg):
            raise UsageError(f"unsafe path segment {seg!r}")
        segs.append(seg)
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=64)
    except (ValueError, UnicodeDecodeError):
        raise UsageError("malformed query string") from None
    for k, v in pairs:
        if k in params:
            raise UsageError(f"query parameter {k!r} given twice")
        params[k] = v
    return segs, params


def plan_request(method: str, target: str, headers: dict[str, str],
                 store: WalkSource) -> Plan:
    """Decide the whole response to one request (no I/O beyond ``store`` lookups)."""
    if method not in ("GET", "HEAD"):
        plan = error_plan(405, f"method {method} not allowed")
        plan.headers.append(("Allow", "GET, HEAD"))
        return plan
    try:
        return _plan(target, headers, store)
    except NotFoundError as exc:
        return error_plan(404, str(exc))
    except UsageError as exc:
        return error_plan(501 if isinstance(exc, UnsupportedCodec) else 400, str(exc))
    except DecodeError as exc:
        return error_plan(502, f"stored block is malformed: {exc}")
    except UnsafePathError as exc:  # a directory listing a name twice: the content's fault
        return error_plan(502, f"the DAG is inconsistent: {exc}")
    except IncompleteDAG as exc:  # a block the answer needs is not there
        return error_plan(502, str(exc))
    except CargetError as exc:
        return error_plan(500, str(exc))


def _plan(target: str, headers: dict[str, str], store: WalkSource) -> Plan:
    segs, q = split_target(target)
    request_path, _, raw_query = target.partition("?")
    request_path = request_path.partition("#")[0]
    if not segs:
        raise UsageError("missing CID after /ipfs/")
    cid_text, path = segs[0], segs[1:]
    try:
        cid = CID.parse(cid_text)
    except CargetError as exc:
        raise UsageError(f"invalid CID {cid_text!r}: {exc}") from None
    except (ValueError, IndexError, KeyError):
        raise UsageError(f"invalid CID {cid_text!r}") from None

    # --- format ---------------------------------------------------------------------------
    fmt = q.get("format")
    accepted = negotiate(headers.get("accept"))
    kind: str | None
    if fmt is not None:
        if fmt != "car" and fmt not in BLOCK_FORMATS:
            if fmt in KNOWN_FORMATS:
                return error_plan(406, f"format={fmt} is not served by this gateway")
            raise UsageError(f"unknown format {fmt!r}")
        kind = fmt
    elif accepted == "406":
        return error_plan(406, f"cannot give any of: {headers.get('accept')}; "
                           f"this gateway serves {', '.join(sorted(_TYPE_FORMATS))}, "
                           f"{CAR_TYPE} and the content itself")
    else:
        kind = accepted.kind if isinstance(accepted, _Want) else None
    car_accept = accepted if isinstance(accepted, _Want) and accepted.kind == "car" else None

    only_cached = "only-if-cached" in headers.get("cache-control", "").lower()
    if kind != "car":
        if kind is not None:
            bad = [p for p in CAR_PARAMS if p in q]
            if bad:  # the spec: "only available for CAR requests"
                raise UsageError(f"{', '.join(bad)} only apply to CAR responses")
        if only_cached and not _present(store, cid):
            return error_plan(412, f"block {cid} is not in this gateway's store")
        if not _present(store, cid):
            store.get(cid)  # a waiting source raises NeedBlock here
            raise NotFoundError(f"block {cid} is not in this gateway's store")
        shown = content_path(cid_text, path) + ("/" if request_path.endswith("/") else "")
        try:
            ans = plan_path(store, cid, cid_text, path, q, headers, request_path, raw_query,
                            shown, kind)
        except NotFoundError as exc:
            plan = error_plan(404, str(exc))
            plan.headers.append(("Ipfs-Uri", "ipfs://" + shown[len("/ipfs/"):]))
            return plan
        except NotAcceptable as exc:
            return error_plan(406, str(exc))
        return Plan(ans.status, ans.headers, ans.body, file=ans.file, etags=ans.etags)
    fullpath = content_path(cid_text, path)

    # --- CAR ------------------------------------------------------------------------------
    version = q.get("car-version", "1")
    if version != "1":
        if "car-version" in q and version not in ("1", "2"):
            raise UsageError(f"bad car-version {version!r}")
        return error_plan(406, "only CAR version 1 is served")
    order = q.get("car-order")
    if order is not None and order not in ("dfs", "unk"):
        raise UsageError(f"bad car-order {order!r} (dfs or unk)")
    dups_q = q.get("car-dups")
    if dups_q is not None and dups_q not in ("y", "n"):
        raise UsageError(f"bad car-dups {dups_q!r} (y or n)")
    if dups_q is not None:
        dups = dups_q == "y"
    elif car_accept is not None and car_accept.dups is not None:
        dups = car_accept.dups
    else:
        dups = False  # the spec: answer dups=n when the client does not say
    scope = q.get("dag-scope", "all")
    if scope not in ("block", "entity", "all"):
        raise UsageError(f"bad dag-scope {scope!r} (block, entity or all)")
    eb = q.get("entity-bytes")
    spec = parse_entity_bytes(eb) if eb is not None else None  # malformed: 400 in any scope
    if scope != "entity":
        # as kubo 0.43.1 (boxo gateway/backend_blocks.go): the range narrows dag-scope=entity
        # only; under dag-scope=all, also the default, the whole DAG is sent (lassie asks for
        # entity-bytes with dag-scope=all and relies on that), under block the block alone
        spec = None

    if only_cached and not _present(store, cid):
        return error_plan(412, f"block {cid} is not in this gateway's store")
    if store.get(cid) is None:
        if only_cached:
            return error_plan(412, f"block {cid} is not in this gateway's store")
        raise NotFoundError(f"block {cid} is not in this gateway's store")
    resolved = resolve_path(store, cid, path)
    t = resolved.terminal
    byte_range: ByteRange | None = None
    if scope != "block":
        if t.codec not in TRAVERSABLE and scope == "all":
            raise UnsupportedCodec(f"cannot walk {t.codec_name} block {t}")
        tdata = store.get(t)
        if tdata is None:
            raise NotFoundError(f"block {t} is not in this gateway's store")
        if t.codec == DAG_CBOR:
            # a malformed terminal block is a 502 now, not a stream cut after its 200
            decode_dag_cbor(t, tdata)
        if spec is not None and t.codec in (DAG_PB, RAW):
            node = decode_unixfs(t, tdata)
            if node.kind in ("file", "raw"):
                byte_range = resolve_range(node.filesize, spec)
                if byte_range is None:
                    scope = "block"
    header = encode_header([cid])
    tag = hashlib.sha256(f"{fullpath}|{scope}|{eb}|{dups}".encode()).hexdigest()[:16]
    roots = ",".join(str(c) for c in (*resolved.path_blocks, t))
    ctype = f"{CAR_TYPE}; version=1; order=dfs; dups={'y' if dups else 'n'}"
    hdrs = [
        ("Content-Type", ctype),
        ("Content-Disposition", disposition(q.get("filename") or f"{cid_text}.car", True)),
        ("Etag", f'"{cid_text}.car.{tag}"'),
        ("Cache-Control", IMMUTABLE),
        ("Accept-Ranges", "none"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Ipfs-Path", fullpath),
        ("X-Ipfs-Roots", roots),
        ("Vary", "Accept"),
    ]
    return Plan(200, hdrs, car=CarPlan(header, resolved, scope, byte_range, dups),
                etags=(f'"{cid_text}.car.{tag}"',))


def _present(store: WalkSource, cid: CID) -> bool:
    """Whether the source holds ``cid`` now (without waiting for it)."""
    if isinstance(store, Waiting):
        return store.has(cid)
    return cid.is_identity or store.get(cid) is not None
