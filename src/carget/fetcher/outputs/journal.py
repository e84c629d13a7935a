"""The resume journals: what an interrupted ``get`` leaves beside its output so the next
run can take back the verified part (blocking file I/O, no trio).

Both are logs of JSON lines (:class:`LineLog`), appended as the output fills in, so each
flush costs only what is new: a header, then lines. A file's journal
(``OUT.carget-journal``) is written fresh once per run with all that run knows (the
ranges kept and the blocks to check them), then gets one line per flush with the byte
ranges newly written, the verified DAG nodes not logged yet (so the next run can
re-derive every leaf CID from the root) and the frames of new dag-pb leaves; a reader
joins the lines. A tree's journal gets one line per verified directory, per finished
file (with the blocks needed to check it again) and, now and then, per file being
written (the ranges written so far: the last such line of a file counts; and the blocks
it got since its previous such line: a reader joins them). Neither is trusted:
:mod:`~carget.fetcher.outputs.recheck` re-hashes what it vouches for.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

from ...cid import CID
from ...errors import CargetError
from ...safetree import open_beside
from ..split import merge_ranges

__all__ = [
    "FILE_JOURNAL_VERSION",
    "JOURNAL_EVERY",
    "JOURNAL_SECONDS",
    "JOURNAL_SUFFIX",
    "JOURNAL_VERSION",
    "PARTIAL_SUFFIX",
    "FileJournal",
    "KeptFile",
    "KeptTree",
    "LineLog",
    "TreeJournal",
    "encode_blocks",
    "encode_frame",
    "encode_node",
    "kept_file_bytes",
    "read_file_journal",
    "read_lines",
    "read_tree_journal",
    "remove_journal",
]

PARTIAL_SUFFIX: Final = ".carget-partial"
JOURNAL_SUFFIX: Final = ".carget-journal"
#: the journal is appended to after this many newly written bytes (and at the end): a
#: SIGKILL loses at most this much progress, and the cost of a flush stays negligible
JOURNAL_EVERY: Final = 16 << 20
#: ... or after this many seconds, so a slow download killed hard loses little too
JOURNAL_SECONDS: Final = 1.0
#: a tree journal's header version
JOURNAL_VERSION: Final = 1
#: a file journal's header version: 2 is the log of lines; 1 was a single JSON document
#: rewritten whole at each flush (still read: a resumed run writes it again as a log)
FILE_JOURNAL_VERSION: Final = 2


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
    nodes = {str(k): base64.b64decode(v) for k, v in doc.get("nodes", {}).items()}
    frames = {str(k): (bytes.fromhex(a), bytes.fromhex(b))
              for k, (a, b) in doc.get("frames", {}).items()}
    done = [(int(a), int(b)) for a, b in doc.get("done", [])]
    return KeptFile(nodes, frames, done)


def remove_journal(journal_path: str) -> None:
    """Remove a journal and its temporary, if there."""
    for p in (journal_path, journal_path + ".tmp"):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


# --- the log of lines both journals are --------------------------------------------------


class LineLog:
    """An append-only log of JSON lines, opened on carget's own file beside an output
    (never through a symlink planted there). Each append is one line per document, given
    to the kernel in one ``write`` (no fsync, as the journals never had: they only save
    work, and a line lost or cut short by a crash costs its bytes being fetched again).
    A SIGKILL mid-append leaves a last line cut short: :func:`read_lines` skips it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open_append(cls, path: str, header: dict[str, Any]) -> LineLog:
        """The log at ``path`` opened for appending, with ``header`` written if it is new.
        A last line cut short is ended first, so the next line is whole."""
        fd = open_beside(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        log = cls(fd)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                log.append(header)
            elif os.pread(fd, 1, size - 1) != b"\n":
                log._write(b"\n")
        except BaseException:
            log.close()
            raise
        return log

    @classmethod
    def create(cls, path: str, docs: Iterable[dict[str, Any]]) -> LineLog:
        """A new log at ``path`` holding ``docs`` (the header first), replacing what is
        there atomically; open for appending."""
        tmp = path + ".tmp"
        log = cls(open_beside(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
        try:
            log.append(*docs)
            os.replace(tmp, path)
        except BaseException:
            log.close()
            raise
        return log

    def append(self, *docs: dict[str, Any]) -> None:
        import json  # here: a get that ends within a second writes no journal

        # dumps, not dump: json.dump encodes in pure Python (only the one-shot dumps uses
        # the C encoder), ~3x the CPU on a line of 2,000 leaf frames
        self._write("".join(json.dumps(d, separators=(",", ":")) + "\n"
                            for d in docs).encode())

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_lines(f: IO[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a log from where ``f`` stands; a line cut short (the last one,
    after a SIGKILL) or malformed is skipped."""
    for line in f:
        doc = _parse(line)
        if doc is not None:
            yield doc


def _head(f: IO[bytes]) -> dict[str, Any] | None:
    """A log's header (its first line), or None when it is not a JSON object."""
    return _parse(f.readline())


def _parse(line: bytes) -> dict[str, Any] | None:
    import json

    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


# --- a file's journal ------------------------------------------------------------------


class FileJournal:
    """A file's journal for one run: written fresh with what the run knows at its first
    flush (whatever an earlier run left is replaced, so the log never outgrows what it
    describes by more than one run's lines), then appended to with only what is new."""

    def __init__(self, journal_path: str, target: str, cid: CID, size: int,
                 done: list[tuple[int, int]], nodes: dict[str, str],
                 frames: dict[str, list[str]]) -> None:
        """``nodes`` / ``frames``: :func:`encode_blocks`'s form."""
        header = {"version": FILE_JOURNAL_VERSION, "kind": "file", "target": target,
                  "cid": str(cid), "size": size}
        self._log = LineLog.create(journal_path, [header, _entry(done, nodes, frames)])

    def add(self, done: list[tuple[int, int]], nodes: dict[str, str],
            frames: dict[str, list[str]]) -> None:
        """Log byte ranges newly written and blocks not logged before (encoded)."""
        if done or nodes or frames:
            self._log.append(_entry(done, nodes, frames))

    def close(self) -> None:
        self._log.close()


def _entry(done: list[tuple[int, int]], nodes: dict[str, str],
           frames: dict[str, list[str]]) -> dict[str, Any]:
    return {"done": done, "nodes": nodes, "frames": frames}


def read_file_journal(journal_path: str, cid: CID, size: int) -> KeptFile | None:
    """The journal of the file ``cid`` of ``size`` bytes, its lines joined (ranges
    merged), or None when there is none or it is unusable (another file's, another
    version's, not a journal)."""
    return _read_file(journal_path, (str(cid), size))


def kept_file_bytes(journal_path: str) -> int | None:
    """The bytes a file journal claims are written, whatever file it is of (None: no
    file journal there). Claims only: nothing is checked."""
    kept = _read_file(journal_path, None)
    return None if kept is None else sum(b - a for a, b in kept.done)


def _read_file(journal_path: str, want: tuple[str, int] | None) -> KeptFile | None:
    try:
        with open(journal_path, "rb") as f:
            head = _head(f)
            if head is None or (want is not None
                                and (head.get("cid"), head.get("size")) != want):
                return None
            if head.get("version") == FILE_JOURNAL_VERSION and head.get("kind") == "file":
                entries: Iterator[dict[str, Any]] = read_lines(f)
            elif head.get("version") == 1 and "kind" not in head:
                entries = iter([head])  # the whole-document form of carget before
            else:
                return None
            kept = KeptFile({}, {}, [])
            for doc in entries:
                try:
                    entry = _decode(doc)
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue  # a malformed line vouches for nothing
                kept.nodes.update(entry.nodes)
                kept.frames.update(entry.frames)
                kept.done.extend(entry.done)
    except OSError:
        return None
    kept.done = merge_ranges(kept.done)
    return kept


# --- a tree's journal ------------------------------------------------------------------


class TreeJournal:
    """A tree's journal, opened for appending (its header written if it is new)."""

    def __init__(self, journal_path: str, cid: CID, target: str) -> None:
        self._log = LineLog.open_append(journal_path, {
            "version": JOURNAL_VERSION, "target": target, "cid": str(cid), "kind": "tree"})

    @staticmethod
    def matches(journal_path: str, cid: CID) -> bool:
        """The journal there is a tree journal of ``cid`` (a link planted at the name, or
        anything else, is not)."""
        if os.path.islink(journal_path):
            return False
        try:
            with open(journal_path, "rb") as f:
                head = _head(f)
        except OSError:
            return False
        return (head is not None and head.get("version") == JOURNAL_VERSION
                and head.get("kind") == "tree" and head.get("cid") == str(cid))

    def log(self, doc: dict[str, Any]) -> None:
        self._log.append(doc)

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
        to check them that its earlier part lines do not hold."""
        self.log({"part": path, "cid": str(cid), "size": size, "done": done,
                  **encode_blocks(nodes, frames)})

    def close(self) -> None:
        self._log.close()


#: a tree journal's file: CID, size, and its blocks (with the ranges done, for a part)
KeptTreeFile = tuple[CID, int, KeptFile]


@dataclass
class KeptTree:
    """What a tree journal lists: verified directories (CID and node), finished files
    and files partly written (the ranges of the last line of each, the blocks of all of
    them), by path."""

    dirs: dict[str, tuple[CID, bytes]]
    files: dict[str, KeptTreeFile]
    parts: dict[str, KeptTreeFile]


def read_tree_journal(journal_path: str) -> KeptTree:
    """What the tree journal at ``journal_path`` lists; lines cut short or malformed are
    skipped. Raises OSError when it cannot be read."""
    kept = KeptTree({}, {}, {})
    with open(journal_path, "rb") as f:
        f.readline()  # the header (checked by TreeJournal.matches)
        for doc in read_lines(f):
            try:
                if "dir" in doc:
                    kept.dirs[str(doc["dir"])] = (CID.parse(doc["cid"]),
                                                  base64.b64decode(doc["node"]))
                elif "file" in doc:
                    kept.files[str(doc["file"])] = (CID.parse(doc["cid"]), int(doc["size"]),
                                                    _decode(doc))
                elif "part" in doc:
                    path, cid = str(doc["part"]), CID.parse(doc["cid"])
                    part = _decode(doc)
                    before = kept.parts.get(path)
                    if before is not None and before[0] == cid:  # its blocks so far, too
                        part.nodes = before[2].nodes | part.nodes
                        part.frames = before[2].frames | part.frames
                    kept.parts[path] = (cid, int(doc["size"]), part)
            except (KeyError, TypeError, ValueError, AttributeError, CargetError):
                continue  # a malformed line (a bad CID too) vouches for nothing
    return kept
