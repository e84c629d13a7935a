"""The resume journals: what an interrupted ``get`` leaves beside its output so the next
run can take back the verified part (blocking file I/O, no trio).

A file's journal (``OUT.carget-journal``) is one JSON document, rewritten atomically as
the file fills in: the byte ranges written, the verified DAG nodes (so the next run can
re-derive every leaf CID from the root) and the frames of dag-pb leaves. A tree's
journal is a log of JSON lines, appended as the tree fills in: a header, then one line
per verified directory, per finished file and, now and then, per file being written
(the ranges written so far: the last such line of a file counts), each with the blocks
needed to check it again. Neither is trusted: :mod:`~carget.fetcher.outputs.recheck`
re-hashes what it vouches for.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from ...cid import CID
from ...errors import CargetError
from ...safetree import open_beside

__all__ = [
    "JOURNAL_EVERY",
    "JOURNAL_SECONDS",
    "JOURNAL_SUFFIX",
    "JOURNAL_VERSION",
    "PARTIAL_SUFFIX",
    "KeptFile",
    "KeptTree",
    "TreeJournal",
    "encode_blocks",
    "encode_frame",
    "encode_node",
    "read_file_journal",
    "read_tree_journal",
    "remove_journal",
    "write_file_journal",
]

PARTIAL_SUFFIX: Final = ".carget-partial"
JOURNAL_SUFFIX: Final = ".carget-journal"
#: the journal is rewritten after this many newly written bytes (and at the end): a
#: SIGKILL loses at most this much progress, and the rewrite cost stays negligible
JOURNAL_EVERY: Final = 16 << 20
#: ... or after this many seconds, so a slow download killed hard loses little too
JOURNAL_SECONDS: Final = 1.0
JOURNAL_VERSION: Final = 1


@dataclass
class KeptFile:
    """What a journal says of one file: its inner DAG ``nodes`` and the ``frames`` around
    its dag-pb leaves' data (by CID text), and the byte ranges it claims are ``done``."""

    nodes: dict[str, bytes]
    frames: dict[str, tuple[bytes, bytes]]
    done: list[tuple[int, int]]


def encode_node(data: bytes | memoryview) -> str:
    """A DAG node as a journal holds it."""
    return base64.b64encode(data).decode()


def encode_frame(frame: tuple[bytes, bytes]) -> list[str]:
    """A leaf's frame (the bytes around its data) as a journal holds it."""
    return [frame[0].hex(), frame[1].hex()]


def encode_blocks(nodes: dict[str, bytes], frames: dict[str, tuple[bytes, bytes]]
                  ) -> dict[str, Any]:
    """The ``nodes`` / ``frames`` fields of a journal entry."""
    return {"nodes": {k: encode_node(v) for k, v in nodes.items()},
            "frames": {k: encode_frame(v) for k, v in frames.items()}}


def _decode(doc: dict[str, Any]) -> KeptFile:
    """Raises KeyError, TypeError, ValueError or AttributeError on a malformed entry."""
    nodes = {str(k): base64.b64decode(v) for k, v in doc["nodes"].items()}
    frames = {str(k): (bytes.fromhex(a), bytes.fromhex(b))
              for k, (a, b) in doc["frames"].items()}
    done = [(int(a), int(b)) for a, b in doc.get("done", [])]
    return KeptFile(nodes, frames, done)


def remove_journal(journal_path: str) -> None:
    """Remove a journal and its temporary, if there."""
    for p in (journal_path, journal_path + ".tmp"):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def read_file_journal(journal_path: str, cid: CID, size: int) -> KeptFile | None:
    """The journal of the file ``cid`` of ``size`` bytes, or None when there is none or it
    is unusable (another file's, another version's, malformed)."""
    try:
        with open(journal_path, encoding="utf-8") as f:
            doc = json.load(f)
        if (doc.get("version") != JOURNAL_VERSION or doc.get("cid") != str(cid)
                or doc.get("size") != size):
            return None
        return _decode(doc)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_file_journal(journal_path: str, target: str, cid: CID, size: int,
                       done: list[tuple[int, int]], blocks: dict[str, Any]) -> None:
    """Replace the file's journal atomically (``blocks``: :func:`encode_blocks`'s form)."""
    doc = {"version": JOURNAL_VERSION, "target": target, "cid": str(cid), "size": size,
           "done": done, **blocks}
    tmp = journal_path + ".tmp"
    fd = open_beside(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with open(fd, "w", encoding="utf-8") as f:
        # dumps, not dump: json.dump encodes in pure Python (only the one-shot dumps uses
        # the C encoder), which cost ~3x the CPU on a journal of 2,000 leaf frames
        f.write(json.dumps(doc))
    os.replace(tmp, journal_path)


class TreeJournal:
    """A tree's journal, opened for appending (its header written if it is new)."""

    def __init__(self, journal_path: str, cid: CID, target: str) -> None:
        self._f: Any = open(open_beside(journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT),
                            "a", encoding="utf-8")
        if self._f.tell() == 0:
            self.log({"version": JOURNAL_VERSION, "target": target, "cid": str(cid),
                      "kind": "tree"})

    @staticmethod
    def matches(journal_path: str, cid: CID) -> bool:
        """The journal there is a tree journal of ``cid`` (a link planted at the name, or
        anything else, is not)."""
        if os.path.islink(journal_path):
            return False
        try:
            with open(journal_path, encoding="utf-8") as f:
                head = json.loads(f.readline())
        except (OSError, ValueError):
            return False
        return (isinstance(head, dict) and head.get("version") == JOURNAL_VERSION
                and head.get("kind") == "tree" and head.get("cid") == str(cid))

    def log(self, doc: dict[str, Any]) -> None:
        self._f.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self._f.flush()

    def directory(self, path: str, cid: CID, node: bytes) -> None:
        """A verified directory, with its node."""
        self.log({"dir": path, "cid": str(cid), "node": encode_node(node)})

    def file(self, path: str, cid: CID, size: int, nodes: dict[str, bytes],
             frames: dict[str, tuple[bytes, bytes]]) -> None:
        """A finished file, with its inner nodes and leaf frames."""
        self.log({"file": path, "cid": str(cid), "size": size, **encode_blocks(nodes, frames)})

    def part(self, path: str, cid: CID, size: int, done: list[tuple[int, int]],
             nodes: dict[str, bytes], frames: dict[str, tuple[bytes, bytes]]) -> None:
        """A file being written: the byte ranges of it in place so far, with the blocks
        to check them."""
        self.log({"part": path, "cid": str(cid), "size": size, "done": done,
                  **encode_blocks(nodes, frames)})

    def close(self) -> None:
        self._f.close()


#: a tree journal's file: CID, size, and its blocks (with the ranges done, for a part)
KeptTreeFile = tuple[CID, int, KeptFile]


@dataclass
class KeptTree:
    """What a tree journal lists: verified directories (CID and node), finished files
    and files partly written (the last line of each), by path."""

    dirs: dict[str, tuple[CID, bytes]]
    files: dict[str, KeptTreeFile]
    parts: dict[str, KeptTreeFile]


def read_tree_journal(journal_path: str) -> KeptTree:
    """What the tree journal at ``journal_path`` lists; lines cut short or malformed are
    skipped. Raises OSError when it cannot be read."""
    kept = KeptTree({}, {}, {})
    for doc in _lines(journal_path):
        try:
            if "dir" in doc:
                kept.dirs[str(doc["dir"])] = (CID.parse(doc["cid"]),
                                              base64.b64decode(doc["node"]))
            elif "file" in doc:
                kept.files[str(doc["file"])] = (CID.parse(doc["cid"]), int(doc["size"]),
                                                _decode(doc))
            elif "part" in doc:
                kept.parts[str(doc["part"])] = (CID.parse(doc["cid"]), int(doc["size"]),
                                                _decode(doc))
        except (KeyError, TypeError, ValueError, AttributeError, CargetError):
            continue  # a malformed line (a bad CID too) vouches for nothing
    return kept


def _lines(journal_path: str) -> Iterator[dict[str, Any]]:
    with open(journal_path, encoding="utf-8") as f:
        f.readline()  # the header (checked by TreeJournal.matches)
        for line in f:
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a line cut short by the interruption
            if isinstance(doc, dict):
                yield doc
