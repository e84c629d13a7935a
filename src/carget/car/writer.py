"""Blocking CAR writers (v1, and v2 with a MultihashIndexSorted index) over files or stdout.

Roots are often known only at the end (``carget add --car`` learns the root after the last
block), so a writer whose roots are not set before the first block writes a placeholder
header sized for one CIDv1 sha2-256 root and patches it at the end; when the real header
has another length it rewrites the file once (a CARv2 whose header got shorter only moves
its data offset, which the spec allows). Output to stdout is spooled to a temporary file
unless the roots are known up front, since a pipe cannot be patched.

A file target is written atomically: a temporary file beside it, renamed on success and
removed on any error, so nothing incomplete ever sits at the target path.

Blocks with identity CIDs are not written (their bytes live in the CID; gateways and
go-car leave them out), and a block already written is not written twice.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO, cast

from ..atomic import atomic_file
from ..cid import CID, IDENTITY, Block
from ..errors import UsageError
from .encoder import encode_header, section_prefix
from .header import CARV2_HEADER_SIZE, CARV2_PRAGMA, CarV2Header, encode_v2_header
from .index import encode_multihash_index

__all__ = ["CarWriter", "open_car_writer"]

#: the placeholder header: one CIDv1 sha2-256 root, what a single `add` or `create` yields
_PLACEHOLDER_ROOTS = (CID(1, 0x70, b"\x12\x20" + bytes(32)),)
#: copy buffer when a header of another length forces a rewrite
_COPY_CHUNK = 1 << 20


class CarWriter:
    """Writes one CAR to a seekable binary file ``f`` (positioned at 0).

    Call :meth:`write_block` for every block, :meth:`set_roots` any time, then
    :meth:`finish`, which returns the file to use (``f`` itself, or a rewritten copy).
    """

    def __init__(self, f: BinaryIO, version: int = 1, roots: Sequence[CID] | None = None) -> None:
        if version not in (1, 2):
            raise UsageError(f"CAR version must be 1 or 2, not {version}")
        self._f = f
        self.version = version
        self._roots: tuple[CID, ...] | None = tuple(roots) if roots is not None else None
        self._started = False
        self._header_len = 0  # bytes of the inner CARv1 header as written
        self._payload = 0  # bytes of CARv1 payload written (header + sections)
        self._seen: set[bytes] = set()
        self._records: list[tuple[bytes, int]] = []
        self.blocks = 0

    @property
    def _v2_prefix(self) -> int:
        return len(CARV2_PRAGMA) + CARV2_HEADER_SIZE if self.version == 2 else 0

    def _start(self) -> None:
        roots = self._roots if self._roots is not None else _PLACEHOLDER_ROOTS
        head = encode_header(roots)
        if self.version == 2:
            self._f.write(bytes(self._v2_prefix))  # patched in finish()
        self._f.write(head)
        self._header_len = len(head)
        self._payload = len(head)
        self._started = True

    def set_roots(self, roots: Sequence[CID]) -> None:
        self._roots = tuple(roots)

    def write_block(self, block: Block) -> None:
        """Append one block (skipped if identity or already written). ``block.data`` may be
        a memoryview valid only during the call: it is written, not kept."""
        if not self._started:
            self._start()
        cid, data = block
        if cid.multihash[0] == IDENTITY:
            return
        key = cid.bytes
        if key in self._seen:
            return
        self._seen.add(key)
        prefix = section_prefix(cid, len(data))
        if self.version == 2:
            self._records.append((cid.multihash, self._payload))
        self._f.write(prefix)
        self._f.write(data)
        self._payload += len(prefix) + len(data)
        self.blocks += 1

    def finish(self) -> None:
        """Write the real header (and CARv2 header and index); flush."""
        if not self._started:
            self._start()
        roots = self._roots if self._roots is not None else ()
        head = encode_header(roots)
        f = self._f
        data_offset = self._v2_prefix
        if len(head) == self._header_len or (self.version == 2 and len(head) < self._header_len):
            # same length: patch in place; a shorter CARv2 header: start the payload later
            data_offset += self._header_len - len(head)
            f.flush()
            f.seek(data_offset)
            f.write(head)
        else:
            self._shift(len(head) - self._header_len, head)
        data_size = self._payload - self._header_len + len(head)
        if self.version == 2:
            # index offsets count from the payload start: the sections moved by the
            # header's growth, or the payload start moved past a shorter header
            shift = len(head) - self._header_len
            records = [(mh, off + shift) for mh, off in self._records] if shift \
                else self._records
            index_offset = data_offset + data_size
            f.seek(index_offset)
            f.write(encode_multihash_index(records))
            f.truncate()
            f.seek(0)
            f.write(encode_v2_header(CarV2Header(bytes(16), data_offset, data_size,
                                                 index_offset)))
        else:
            f.seek(data_offset + data_size)
            f.truncate()
        f.flush()

    def _shift(self, delta: int, head: bytes) -> None:
        """Move the sections by ``delta`` bytes (the header grew) and write ``head``."""
        f = self._f
        start = self._v2_prefix + self._header_len
        end = self._v2_prefix + self._payload
        # copy away from the direction of the move, so nothing is overwritten unread
        spans = []
        for pos in range(start, end, _COPY_CHUNK):
            spans.append((pos, min(_COPY_CHUNK, end - pos)))
        for pos, n in reversed(spans) if delta > 0 else spans:
            f.seek(pos)
            chunk = f.read(n)
            f.seek(pos + delta)
            f.write(chunk)
        f.seek(self._v2_prefix)
        f.write(head)


@contextmanager
def open_car_writer(path: str, version: int = 1,
                    roots: Sequence[CID] | None = None) -> Iterator[CarWriter]:
    """A :class:`CarWriter` for ``path`` ("-" is stdout), committed when the block exits.

    A file appears only complete (temp file beside it, renamed); on error the temp file
    is removed and nothing is left at ``path``. Raises :class:`InputError` when the target
    directory cannot be written.
    """
    if path == "-" and roots is not None and version == 1:
        # roots known: the header is final from the start, so stream straight out
        writer = CarWriter(sys.stdout.buffer, version, roots)
        yield writer
        if not writer._started:
            writer._start()
        sys.stdout.buffer.flush()
        return
    if path == "-":
        with tempfile.TemporaryFile(prefix="carget-car-") as spool:
            writer = CarWriter(spool, version, roots)
            yield writer
            writer.finish()
            spool.seek(0)
            out = sys.stdout.buffer
            shutil.copyfileobj(spool, out, _COPY_CHUNK)
            out.flush()
        return
    with atomic_file(path, "w+b") as (f, _):
        writer = CarWriter(cast(BinaryIO, f), version, roots)
        yield writer
        writer.finish()
