"""Receive buffers used again (issue 17): a body read on the worker thread goes into a few
buffers that are reused once no piece of them is referenced, never while one is, over
plain TCP (a loopback server) and TLS (stdlib ssl on a thread, a trustme CA)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio
import trustme
from fetchhelp import content
from tlsserver import tls_server

from carget.fetcher import connection
from carget.fetcher.buffers import ReceiveBuffers
from carget.fetcher.http import open_http
from loopback import http_answer, one_answer

BODY = content(16 << 20, seed=17)
READ = 256 << 10


def test_a_buffer_is_handed_out_again_only_once_nothing_views_it() -> None:
    pool = ReceiveBuffers(keep=4)
    a = pool.take(READ)
    first = a.obj
    piece = a[10:20]  # a piece of it travels on (framing, verifier, writer)
    del a
    b = pool.take(READ)
    second = b.obj
    assert second is not first  # still viewed through the piece: not handed out again
    b.release()
    c = pool.take(READ)
    assert c.obj is second  # nothing viewed that one any more
    held = hashlib.sha256()
    held.update(piece)  # read, not kept: the piece is what keeps the first one busy
    assert pool.take(READ).obj is not first
    piece.release()  # the last view of the first one is gone: it is free again
    assert pool.take(READ).obj is first
    assert len(pool.take(2 * READ)) == 2 * READ  # a larger read gets a larger buffer
    assert pool.made == 4
    del c


async def _read(url: str, keep_pieces: bool) -> tuple[bytes, ReceiveBuffers]:
    pool = ReceiveBuffers(keep=8)
    kept: list[memoryview] = []
    digest = hashlib.sha256()

    def consume(piece: memoryview | None) -> bool:
        if piece is not None:
            digest.update(piece)
            if keep_pieces:
                kept.append(piece)
        return False

    async with open_http(url, idle_timeout=10) as resp:
        assert resp.status == 200
        await trio.to_thread.run_sync(resp.read_body_blocking, consume, READ,
                                      lambda: False, lambda: False, pool)
    if keep_pieces:  # every piece kept is still what was received: nothing overwrote it
        assert hashlib.sha256(b"".join(kept)).digest() == digest.digest()
    return digest.digest(), pool


@pytest.mark.parametrize("keep_pieces", [False, True])
async def test_a_plain_body_is_read_into_a_few_reused_buffers(keep_pieces: bool) -> None:
    answer = http_answer("200 OK", {"Content-Type": "application/octet-stream"}, BODY)
    async with one_answer(answer) as url:
        with trio.fail_after(60):
            got, pool = await _read(url + "/x", keep_pieces)
    assert got == hashlib.sha256(BODY).digest()
    if keep_pieces:  # all of them viewed: each receive needed a buffer of its own
        assert pool.made > (len(BODY) - (1 << 20)) // READ  # (the head's read took <= 1 MiB)
    else:  # 64+ receives of 256 KiB went into the framing's and the loop's few buffers
        assert pool.made <= 4


@pytest.mark.parametrize("keep_pieces", [False, True])
async def test_a_tls_body_is_decrypted_into_a_few_reused_buffers(
        keep_pieces: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.setattr(connection, "_context", None)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
    with tls_server(ca.issue_cert("localhost", "127.0.0.1"),
                    lambda tls, _request: tls.sendall(answer)) as port:
        with trio.fail_after(60):
            got, pool = await _read(f"https://localhost:{port}/x", keep_pieces)
    assert got == hashlib.sha256(BODY).digest()
    if keep_pieces:
        assert pool.made > (len(BODY) - (1 << 20)) // READ
    else:
        assert pool.made <= 4
