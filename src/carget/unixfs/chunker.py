"""The fixed-size chunker (kubo's ``size-N``), sans-IO.

Fed bytes in pieces of any size, it returns whole chunks of exactly ``size`` bytes; the
last, shorter chunk comes from :meth:`finish`. So the chunk boundaries, and therefore the
CID, never depend on how the input happened to be split on its way in.
"""

from __future__ import annotations

__all__ = ["FixedSizeChunker"]


class FixedSizeChunker:
    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError("chunk size must be positive")
        self.size = size
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return the chunks it completed (possibly none)."""
        size = self.size
        if not self._buf and len(data) >= size:
            # fast path: slice whole chunks straight out of the input
            mv = memoryview(data)
            whole = len(mv) - len(mv) % size
            out = [bytes(mv[i : i + size]) for i in range(0, whole, size)]
            self._buf += mv[whole:]
            return out
        self._buf += data
        out = []
        while len(self._buf) >= size:
            out.append(bytes(self._buf[:size]))
            del self._buf[:size]
        return out

    def finish(self) -> bytes | None:
        """The final partial chunk, or None when the input ended on a chunk boundary."""
        rest = bytes(self._buf) if self._buf else None
        self._buf = bytearray()
        return rest
