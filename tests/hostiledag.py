"""Test helper: build hostile UnixFS DAGs by hand with carget's own codecs (directories
that list a name twice, unsorted links, symlink chains, very deep trees), in DFS order,
as CAR bytes a gateway or ``car extract`` can be given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID, DAG_PB, RAW
from carget.unixfs.dagpb import PBLink, decode_node, encode_node
from carget.unixfs.data import DataType, UnixFSData, encode_data
from loopback import http_answer, one_answer


@dataclass
class Dag:
    blocks: dict[CID, bytes] = field(default_factory=dict)

    def put(self, data: bytes, codec: int = DAG_PB) -> CID:
        cid = CID.of(data, codec)
        self.blocks[cid] = data
        return cid

    def file(self, data: bytes) -> CID:
        return self.put(data, RAW)

    def symlink(self, target: str) -> CID:
        return self.put(encode_node((), encode_data(UnixFSData(DataType.SYMLINK,
                                                               data=target.encode()))))

    def directory(self, entries: list[tuple[str, CID]]) -> CID:
        """A directory listing ``entries`` exactly as given (order, duplicates)."""
        links = [PBLink(cid, name, len(self.blocks[cid])) for name, cid in entries]
        return self.put(encode_node(links, encode_data(UnixFSData(DataType.DIRECTORY))))

    def tree(self, spec: object) -> CID:
        """A directory from a nested spec: bytes = a file, str = a symlink target, dict =
        a directory; a list of (name, spec) pairs keeps duplicates and order."""
        return self._node(spec)

    def _node(self, spec: object) -> CID:
        if isinstance(spec, bytes):
            return self.file(spec)
        if isinstance(spec, str):
            return self.symlink(spec)
        items = list(spec.items()) if isinstance(spec, dict) else list(spec)  # type: ignore[call-overload]
        return self.directory([(name, self._node(sub)) for name, sub in items])

    def chain(self, names: list[str], leaf: list[tuple[str, CID]]) -> CID:
        """Directories nested along ``names`` (outermost first); the innermost lists
        ``leaf``. Returns the outermost directory's CID (built without recursion)."""
        cid = self.directory(leaf)
        for name in reversed(names[1:]):
            cid = self.directory([(name, cid)])
        return cid

    def dfs(self, root: CID) -> list[CID]:
        """The blocks under ``root`` in DFS link order, each once (a loop)."""
        out: list[CID] = []
        seen: set[CID] = set()
        stack = [root]
        while stack:
            cid = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            out.append(cid)
            if cid.codec == DAG_PB:
                node = decode_node(self.blocks[cid])
                stack.extend(reversed([lk.cid for lk in node.links]))
        return out

    def car(self, root: CID, omit: frozenset[CID] = frozenset()) -> bytes:
        """A CARv1 of the DAG in DFS order, without the blocks in ``omit``."""
        parts = [encode_header([root])]
        for cid in self.dfs(root):
            if cid in omit:
                continue
            data = self.blocks[cid]
            parts += [section_prefix(cid, len(data)), data]
        return b"".join(parts)

    def write_car(self, root: CID, path: Path) -> Path:
        path.write_bytes(self.car(root))
        return path


def snapshot(base: Path, skip: Path) -> dict[str, tuple[str, bytes | str | None]]:
    """Everything below ``base`` except ``skip`` (and below it): kind and content."""
    out: dict[str, tuple[str, bytes | str | None]] = {}
    stack = [base]
    while stack:
        d = stack.pop()
        for p in d.iterdir():
            if p == skip:
                continue
            rel = str(p.relative_to(base))
            if p.is_symlink():
                out[rel] = ("link", str(p.readlink()))
            elif p.is_dir():
                out[rel] = ("dir", None)
                stack.append(p)
            else:
                out[rel] = ("file", p.read_bytes())
    return out


@asynccontextmanager
async def car_gateway(car: bytes) -> AsyncIterator[str]:
    """A loopback gateway that answers every request with the same CAR (a gateway that
    ignores paths and scopes, which the trustless spec allows): the client must judge."""
    ctype = "application/vnd.ipld.car; version=1; order=dfs; dups=y"
    async with one_answer(http_answer("200 OK", {"Content-Type": ctype}, car)) as url:
        yield url
