"""The lean HTTP/1.1 reader's chunked-body framing, over a real loopback socket: chunk-size
lines split across reads, a line that never ends, and bodies read whole."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from carget.errors import NetworkError
from carget.fetcher.framing import MAX_CHUNK_LINE, NEED_DATA, ResponseReader
from carget.fetcher.http import open_http


def test_chunk_size_line_needs_its_crlf_and_a_bound() -> None:
    r = ResponseReader("u")
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1a")
    r.next_event()  # the head
    assert r.next_event() is NEED_DATA
    r = ResponseReader("u")
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"1" * (MAX_CHUNK_LINE + 5))
    r.next_event()
    with pytest.raises(NetworkError, match="longer than"):
        r.next_event()


@contextmanager
def dribbling_server(raw: bytes, step: int) -> Iterator[int]:
    """Answers one request with ``raw`` sent ``step`` bytes per send."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            try:
                for i in range(0, len(raw), step):
                    conn.sendall(raw[i : i + step])
                    if step < 16:
                        threading.Event().wait(0.001)  # let each piece arrive on its own
            except OSError:
                pass  # the reader may hang up once the last chunk is in (trailers unread)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield port
    finally:
        srv.close()
        t.join(5)


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n"
    b"6;ext=1\r\n world\r\n"
    b"0\r\nTrailer: x\r\n\r\n"
)


@pytest.mark.parametrize("step", [1, 3, 4096])
def test_chunked_body_with_lines_split_across_reads(step: int) -> None:
    with dribbling_server(CHUNKED, step) as port:

        async def main() -> bytes:
            got: list[bytes] = []

            def consume(piece: memoryview | None) -> bool:
                if piece is not None:
                    got.append(bytes(piece))
                return False

            with trio.fail_after(10):
                async with open_http(f"http://127.0.0.1:{port}/x", idle_timeout=5) as resp:
                    await trio.to_thread.run_sync(resp.read_body_blocking, consume)
            return b"".join(got)

        assert trio.run(main) == b"hello world"
