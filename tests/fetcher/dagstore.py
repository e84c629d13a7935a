"""Test helper: a block store that answers trustless-gateway CAR requests the honest way.

Blocks come from ``carget.add`` (emit) or from CAR fixtures; ``select`` walks the DAG as a
gateway would (path, dag-scope, entity-bytes, dups) and returns the blocks in DFS order.
This is the fault-injecting gateway's source of truth (it then corrupts what it sends).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from carget.add import import_stream
from carget.car.decoder import decode_car
from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID, DAG_CBOR, DAG_PB, RAW, Block
from carget.unixfs.node import block_links, decode_unixfs
from carget.unixfs.options import resolve_options


class NotHere(Exception):
    """The store cannot answer (missing block or path)."""


class DagStore:
    def __init__(self) -> None:
        self.blocks: dict[CID, bytes] = {}

    def add_bytes(self, data: bytes, **opts: object) -> CID:
        def emit(b: Block) -> None:
            self.blocks[b.cid] = bytes(b.data)

        res = import_stream(io.BytesIO(data), resolve_options(**opts), jobs=1, emit=emit)  # type: ignore[arg-type]
        return res.cid

    def add_car(self, path: str | Path) -> CID:
        header, blocks = decode_car(Path(path).read_bytes())
        for b in blocks:
            self.blocks[b.cid] = bytes(b.data)
        return header.roots[0]

    def get(self, cid: CID) -> bytes:
        try:
            return self.blocks[cid]
        except KeyError:
            raise NotHere(str(cid)) from None

    # --- gateway semantics ---------------------------------------------------------------

    def resolve(self, root: CID, path: list[str]) -> tuple[list[CID], CID]:
        """(blocks on the path, terminal CID)."""
        trail: list[CID] = []
        cid = root
        segs = list(path)
        depth = 0
        while segs:
            data = self.get(cid)
            trail.append(cid)
            if cid.codec == DAG_CBOR:
                import dag_cbor
                from multiformats import CID as MF

                v = dag_cbor.decode(data)
                while segs:
                    v = v[segs.pop(0)]
                    if isinstance(v, MF):
                        break
                cid = CID.from_bytes(bytes(v))
                continue
            node = decode_unixfs(cid, data)
            name = segs[0]
            if node.kind == "hamt":
                found = node.hamt_lookup(name, depth)
                if found is None:
                    raise NotHere(name)
                what, link = found
                cid = link.cid
                if what == "shard":
                    depth += 1
                    continue
                depth = 0
                segs.pop(0)
                continue
            for link in node.links:
                if link.name == name:
                    cid = link.cid
                    segs.pop(0)
                    break
            else:
                raise NotHere(name)
        return trail, cid

    def walk(self, cid: CID, scope: str, rng: tuple[int, int | None] | None = None
             ) -> Iterator[CID]:
        """DFS of the terminal entity, as a gateway emits it (dups included)."""
        yield cid
        if scope == "block" or cid.codec == RAW or cid.is_identity:
            return
        data = self.get(cid)
        if cid.codec != DAG_PB:
            if scope == "all":
                for c in block_links(cid, data):
                    yield from self.walk(c, "all")
            return
        node = decode_unixfs(cid, data)
        if node.kind == "file":
            size = node.filesize
            lo, hi = 0, size - 1
            if rng is not None:
                lo = rng[0] if rng[0] >= 0 else max(0, size + rng[0])
                hi = size - 1 if rng[1] is None else (rng[1] if rng[1] >= 0 else size + rng[1])
            yield from self._file(node, 0, lo, hi)
        elif node.kind == "directory":
            if scope == "all":
                for link in node.links:
                    yield from self.walk(link.cid, "all")
        elif node.kind == "hamt":
            for name, link in node.hamt_links():
                if name is None:
                    yield from self.walk(link.cid, "entity" if scope == "entity" else "all")
                elif scope == "all":
                    yield from self.walk(link.cid, "all")

    def _file(self, node, base: int, lo: int, hi: int) -> Iterator[CID]:  # type: ignore[no-untyped-def]
        for link, a, b in node.file_children():
            a, b = base + a, base + b
            if b - 1 < lo or a > hi:
                if not (a == b and a == lo):
                    continue
            yield link.cid
            if link.cid.codec == DAG_PB and not link.cid.is_identity:
                child = decode_unixfs(link.cid, self.get(link.cid))
                if child.links:
                    yield from self._file(child, a, lo, hi)

    def select(self, root: CID, path: list[str], scope: str = "all",
               rng: tuple[int, int | None] | None = None, dups: bool = False) -> list[Block]:
        trail, term = self.resolve(root, path)
        out: list[Block] = []
        seen: set[CID] = set()
        for cid in [*trail, *self.walk(term, scope, rng)]:
            if cid.is_identity:
                continue
            if cid in seen and not dups:
                continue
            seen.add(cid)
            out.append(Block(cid, self.get(cid)))
        return out


def car_bytes(blocks: list[Block], roots: list[CID] | None = None) -> bytes:
    parts = [encode_header(roots or [blocks[0].cid] if blocks else [])]
    for b in blocks:
        parts.append(section_prefix(b.cid, len(b.data)))
        parts.append(bytes(b.data))
    return b"".join(parts)
