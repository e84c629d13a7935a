"""Receive buffers that are used again once nothing points into them (no trio here).

A request's receiving thread reads each piece of a body into a buffer, and the pieces
travel on as memoryview slices of it (framing, verifier, output: no copies), so a buffer
is busy for as long as any of those views lives. A fresh buffer for every receive cost
page faults (and, over HTTPS, zeroing the piece to decrypt into): a whole ``get`` of
512 MiB with two connections faulted ~12,000 pages in from a plain gateway and 23,000 to
89,000 over HTTPS; with :class:`ReceiveBuffers` handing out the same few buffers again,
~9,000 and ~11,000. Over HTTPS that is 0.05-0.4 s less CPU per 512 MiB (medians of four
runs of 8-10 paired rounds against bench_fetch.py's gateways, on a loaded machine); over
plain HTTP the difference was within the noise (-0.05 to +0.06 s).

A buffer is free when no memoryview of it is left: Python refuses to resize a bytearray
that has views (``BufferError``), and every view, slice and C call reading it through one
keeps it viewed, so a free buffer is one that can shrink by a byte (and grow back, which
reuses its memory). The view a receive writes into is made under the pool's lock, so two
threads can never be handed the same buffer.
"""

from __future__ import annotations

import threading

__all__ = ["ReceiveBuffers"]


def _unviewed(buf: bytearray) -> bool:
    """No memoryview of ``buf`` is left (so nothing can read or write it but the pool)."""
    try:
        last = buf.pop()
    except BufferError:
        return False
    except IndexError:  # empty: nothing to read or write in it
        return True
    buf.append(last)  # within its allocation: no copy, no new memory
    return True


class ReceiveBuffers:
    """Up to ``keep`` reusable receive buffers, shared by the threads of one run.

    :meth:`take` returns a view of a free buffer of at least the size asked, or of a new
    one (kept for reuse while the pool has room). Thread-safe."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._bufs: list[bytearray] = []
        self._lock = threading.Lock()
        #: buffers made (tests count them)
        self.made = 0

    def take(self, size: int) -> memoryview:
        """A writable view of ``size`` bytes of a buffer that nothing else views. Write
        into it and hand out slices of it; the buffer is reused once they are all gone."""
        with self._lock:
            for buf in self._bufs:
                if len(buf) >= size and _unviewed(buf):
                    return memoryview(buf)[:size]
            buf = bytearray(size)
            self.made += 1
            if len(self._bufs) < self.keep:
                self._bufs.append(buf)
            else:  # full: a smaller free one (the read size shrank) makes room for it
                for i, old in enumerate(self._bufs):
                    if len(old) < size and _unviewed(old):
                        self._bufs[i] = buf
                        break
            return memoryview(buf)[:size]
