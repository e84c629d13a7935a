"""dag-pb codec: PBNode and PBLink, canonical encoding and strict decoding.

Canonical form (ipld/specs dag-pb): a PBNode is its Links (field 2) in order, then its Data
(field 1) if present; a PBLink is Hash (1), Name (2), Tsize (3), each at most once. Decoding
rejects anything else, so that decode(encode(x)) == x and every node has one byte form.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cid import CID, encode_varint
from ..errors import CIDDecodeError, DagPBError
from ._wire import LEN, VARINT, Buffer, iter_fields

__all__ = ["PBLink", "PBNode", "data_field", "decode_node", "decode_node_view", "encode_link",
           "encode_node", "link_field"]


@dataclass(frozen=True, slots=True)
class PBLink:
    """A dag-pb link. ``name`` None means absent; ``""`` is present and empty (file links)."""

    cid: CID
    name: str | None = None
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def _link_body(h: bytes, name: bytes | None, tsize: int | None) -> bytes:
    """A PBLink's bytes: Hash (1), Name (2) when present, Tsize (3) when present."""
    if name is not None and tsize is not None:  # directories and file parents: all three
        return b"".join((b"\x0a", encode_varint(len(h)), h, b"\x12", encode_varint(len(name)),
                         name, b"\x18", encode_varint(tsize)))
    parts = [b"\x0a", encode_varint(len(h)), h]
    if name is not None:
        parts += [b"\x12", encode_varint(len(name)), name]
    if tsize is not None:
        parts += [b"\x18", encode_varint(tsize)]
    return b"".join(parts)


def encode_link(link: PBLink) -> bytes:
    """A PBLink's bytes (without the PBNode field that holds it)."""
    name = None if link.name is None else link.name.encode("utf-8")
    return _link_body(link.cid.bytes, name, link.tsize)


def link_field(cid: CID, name: bytes | None, tsize: int | None) -> bytes:
    """One link as a PBNode field (tag, length, PBLink): what a link adds to a node, so
    that a node is its link fields in order, then :func:`data_field`. ``name`` is the
    name's UTF-8 bytes (None: absent)."""
    body = _link_body(cid.bytes, name, tsize)
    return b"\x12" + encode_varint(len(body)) + body


def data_field(data: bytes) -> bytes:
    """A PBNode's Data field (tag, length, bytes)."""
    return b"\x0a" + encode_varint(len(data)) + data


def encode_node(links: tuple[PBLink, ...] | list[PBLink], data: bytes | None) -> bytes:
    """Encode a PBNode in canonical form: links first, then data."""
    parts = [link_field(link.cid, None if link.name is None else link.name.encode("utf-8"),
                        link.tsize) for link in links]
    if data is not None:
        parts.append(data_field(data))
    return b"".join(parts)


def _decode_link(buf: memoryview, base: int) -> PBLink:
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    for field, wire, value, at in iter_fields(buf, 0, len(buf), DagPBError):
        if field <= last or field > 3:
            raise DagPBError(f"PBLink field {field} out of canonical order", base + at)
        last = field
        if field == 1:
            if wire != LEN:
                raise DagPBError("PBLink Hash has wrong wire type", base + at)
            assert isinstance(value, memoryview)
            try:
                cid = CID.from_bytes(bytes(value))
            except (CIDDecodeError, IndexError) as exc:
                raise DagPBError(f"PBLink Hash is not a CID: {exc}", base + at) from None
        elif field == 2:
            if wire != LEN:
                raise DagPBError("PBLink Name has wrong wire type", base + at)
            assert isinstance(value, memoryview)
            try:
                name = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise DagPBError("PBLink Name is not UTF-8", base + at) from None
        else:
            if wire != VARINT:
                raise DagPBError("PBLink Tsize has wrong wire type", base + at)
            assert isinstance(value, int)
            tsize = value
    if cid is None:
        raise DagPBError("PBLink without Hash", base)
    return PBLink(cid, name, tsize)


def decode_node(block: Buffer) -> PBNode:
    """Decode a dag-pb block strictly.

    Raises :class:`DagPBError` for truncation, unknown fields, wrong wire types, fields out
    of canonical order, duplicate Data, or a link whose Hash is not a CID.
    """
    links, data = decode_node_view(block)
    return PBNode(links, None if data is None else bytes(data))


def decode_node_view(block: Buffer) -> tuple[tuple[PBLink, ...], memoryview | None]:
    """:func:`decode_node` without copying Data: the links, and Data as a memoryview of
    ``block`` (None when absent). In canonical form Data is the last field, so it ends
    the block: it starts at ``len(block) - len(data)``. Raises what :func:`decode_node`
    raises."""
    links: list[PBLink] = []
    data: memoryview | None = None
    mv = memoryview(block)
    for field, wire, value, at in iter_fields(mv, 0, len(mv), DagPBError):
        if wire != LEN:
            raise DagPBError(f"PBNode field {field} has wrong wire type", at)
        assert isinstance(value, memoryview)
        if field == 2:
            if data is not None:
                raise DagPBError("PBNode Links after Data (not canonical)", at)
            links.append(_decode_link(value, at))
        elif field == 1:
            if data is not None:
                raise DagPBError("PBNode has Data twice", at)
            data = value
        else:
            raise DagPBError(f"PBNode has unknown field {field}", at)
    return tuple(links), data
