"""What to fetch: parse ``ipfs://CID/path``, ``/ipfs/CID/path``, ``CID/path`` and gateway
URLs into a root CID and clean path segments (sans-IO).

A gateway URL (``https://host/ipfs/CID/path``) names content, not trust: its host is kept
only as a *hint* the caller may add to the gateways, and every byte from it is verified
like any other gateway's.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from ..cid import CID
from ..errors import CIDParseError, UsageError
from ..names import is_valid_name

__all__ = ["Target", "parse_target", "quote_segment"]

#: RFC 3986 unreserved characters: everything else in a segment is percent-encoded
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target: ``cid`` (the root), ``path`` (decoded segments), ``gateway_hint``
    (scheme://host[:port] of a gateway URL, else None)."""

    cid: CID
    path: tuple[str, ...]
    gateway_hint: str | None = None

    @property
    def default_name(self) -> str:
        """Output name when ``-o`` is not given: the last path segment, else the CID."""
        return self.path[-1] if self.path else str(self.cid)

    def url_path(self) -> str:
        """``/ipfs/CID/seg/seg`` with each segment percent-encoded again."""
        return "/ipfs/" + "/".join([str(self.cid), *(quote_segment(s) for s in self.path)])

    def __str__(self) -> str:
        return "/".join(["ipfs:/", str(self.cid), *self.path])


def quote_segment(segment: str) -> str:
    """Percent-encode one path segment (UTF-8, everything but unreserved characters)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in segment.encode("utf-8"))


def _segments(raw: str) -> tuple[str, ...]:
    """Split and percent-decode a path; refuse ``..``, ``.``, empty and NUL segments.

    A trailing slash is allowed (``CID/dir/``); a doubled slash inside is not.
    """
    if raw.endswith("/"):
        raw = raw[:-1]
    if not raw:
        return ()
    out: list[str] = []
    for part in raw.split("/"):
        try:
            seg = unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"path segment {part!r} is not UTF-8 once decoded") from None
        if not is_valid_name(seg):
            raise UsageError(f"path segment {part!r} is not allowed (empty, '.', '..', or "
                             f"holding NUL or '/')")
        out.append(seg)
    return tuple(out)


def _cid(text: str) -> CID:
    try:
        return CID.parse(text)
    except (CIDParseError, ValueError, KeyError) as exc:
        raise CIDParseError(f"not a CID: {text!r} ({exc})") from None


def parse_target(text: str) -> Target:
    """Parse a fetch target.

    Accepted: ``ipfs://CID[/path]``, ``/ipfs/CID[/path]``, ``CID[/path]`` and
    ``http(s)://host/ipfs/CID[/path]`` (CIDv0 or CIDv1 in any multibase). Query strings
    and fragments of gateway URLs are ignored. Raises :class:`UsageError` (or its
    subclass :class:`CIDParseError`) for anything else.
    """
    text = text.strip()
    if not text:
        raise UsageError("empty target")
    hint: str | None = None
    if text.startswith("ipfs://"):
        rest = text[len("ipfs://"):]
    elif text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        if not parts.path.startswith("/ipfs/"):
            raise UsageError(f"gateway URL {text!r} has no /ipfs/CID path")
        rest = parts.path[len("/ipfs/"):]
        hint = f"{parts.scheme}://{parts.netloc}"
    elif text.startswith("/ipfs/"):
        rest = text[len("/ipfs/"):]
    elif text.startswith(("ipns://", "/ipns/")):
        raise UsageError("IPNS names are not supported (give an immutable /ipfs/ CID)")
    else:
        rest = text
    cid_text, _, path = rest.partition("/")
    if not cid_text:
        raise UsageError(f"no CID in {text!r}")
    return Target(_cid(cid_text), _segments(path), hint)
