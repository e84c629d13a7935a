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


@pytest.mark.parametrize("step", [7, 1 << 16])
def test_receiving_is_called_before_each_receive(step: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``receiving()`` comes before every receive of the blocking body reader, once the
    pieces of the one before are all consumed: the request hands a receive's pieces (a
    chunked answer's many chunks) to the verifier as one item."""
    from carget.fetcher import connection

    log: list[str] = []
    recv = connection.BlockingReader._recv_plain

    def logged_recv(self: connection.BlockingReader, n: int) -> bytes:
        log.append("recv")
        return recv(self, n)

    monkeypatch.setattr(connection.BlockingReader, "_recv_plain", logged_recv)
    body = b"".join(b"%x\r\n%s\r\n" % (len(w), w) for w in (b"x" * k for k in range(1, 60)))
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")
    with dribbling_server(raw, step) as port:

        async def main() -> None:
            def consume(piece: memoryview | None) -> bool:
                log.append("piece" if piece is not None else "end")
                return False

            def receiving() -> bool:
                log.append("receiving")
                return False

            with trio.fail_after(10):
                async with open_http(f"http://127.0.0.1:{port}/x", idle_timeout=5) as resp:
                    await trio.to_thread.run_sync(resp.read_body_blocking, consume,
                                                  1 << 20, lambda: False, receiving)

        trio.run(main)
    assert log.count("piece") >= 59 and log[-1] == "end"
    assert log.count("receiving") == log.count("recv")
    assert all(log[i - 1] == "receiving" for i, e in enumerate(log) if e == "recv")
