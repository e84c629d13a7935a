"""Issue 12, the server's slice: hostile DAGs and hostile peers against a real gateway on
loopback. Each test reproduces one item of the issue and fails without its fix."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dag_cbor
import httpx
import pytest
from multiformats import CID as MFCID

from carget.cid import CID, DAG_CBOR, RAW
from carget.server._http import MAX_HEAD_BYTES
from carget.server.store import BlockStore
from carget.server.testing import running_gateway
from carget.unixfs.dagpb import PBLink, encode_node
from carget.unixfs.data import DataType, UnixFSData, encode_data

ASCII = "bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm"


def _exchange(url: str, request: bytes, limit: float = 10) -> bytes:
    """Send ``request`` whole, read until the server closes (bounded by ``limit``)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=limit) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


# --- item 4: the request-head limit is the constant -----------------------------------------

def _head_of(size: int) -> bytes:
    start = f"GET /ipfs/{ASCII}?format=raw HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: "
    end = "\r\n\r\n"
    pad = size - len(start) - len(end)
    assert pad > 0
    head = (start + "p" * pad + end).encode()
    assert len(head) == size
    return head


@pytest.mark.parametrize(("size", "status"), [
    (MAX_HEAD_BYTES - 100, b"200"),
    (MAX_HEAD_BYTES, b"200"),
    (MAX_HEAD_BYTES + 1, b"431"),
    (MAX_HEAD_BYTES + 4096, b"431"),  # was served: h11 checked only incomplete heads
    (2 * MAX_HEAD_BYTES - 1, b"431"),
])
def test_request_head_limit_is_exact(gateway: str, size: int, status: bytes) -> None:
    out = _exchange(gateway, _head_of(size))
    assert out.split(b" ", 2)[1] == status, out[:200]


def test_a_431_reaches_a_client_that_sent_more_than_was_read(gateway: str) -> None:
    """The server stops reading at the limit; closing with the rest unread would make the
    kernel reset the connection, which can destroy the 431 before the client reads it."""
    host, port = gateway.removeprefix("http://").split(":")
    for _ in range(10):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(_head_of(4 * MAX_HEAD_BYTES))
            out = b""
            while chunk := s.recv(65536):  # a reset here fails the test
                out += chunk
        assert out.startswith(b"HTTP/1.1 431"), out[:100]


# --- item 5: tracebacks and unwritable headers ------------------------------------------------

@pytest.fixture(scope="module")
def odd_dags() -> Iterator[tuple[str, dict[str, CID]]]:
    store = BlockStore()
    leaf = b"hello\n"
    leaf_cid = CID.of(leaf, RAW)
    store.add_block(leaf_cid, leaf)
    doc = dag_cbor.encode({"a": [1, 2, 3], "l": MFCID.decode(str(leaf_cid))})
    cbor_cid = CID.of(doc, DAG_CBOR)
    store.add_block(cbor_cid, doc)
    bad = b"\xa1\x61a\xff"  # a map whose value is a stray break code: not DAG-CBOR
    bad_cid = CID.of(bad, DAG_CBOR)
    store.add_block(bad_cid, bad)
    names = ["crlf\r\nSet-Cookie: x=1", "sp ace", "ünï", "ok"]
    links = [PBLink(leaf_cid, n, len(leaf)) for n in sorted(names, key=str.encode)]
    dirblock = encode_node(links, encode_data(UnixFSData(DataType.DIRECTORY)))
    dir_cid = CID.of(dirblock, 0x70)
    store.add_block(dir_cid, dirblock)
    with running_gateway(store) as url:
        yield url, {"cbor": cbor_cid, "bad": bad_cid, "dir": dir_cid}


def test_huge_list_index_on_a_dag_cbor_path_is_400(odd_dags: tuple[str, dict[str, CID]],
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    url, cids = odd_dags
    r = httpx.get(f"{url}/ipfs/{cids['cbor']}/a/{'9' * 5000}?format=car", timeout=10)
    assert r.status_code == 400, r.text
    r = httpx.get(f"{url}/ipfs/{cids['cbor']}/a/{'1' * 20}?format=car", timeout=10)
    assert r.status_code == 400, r.text
    assert httpx.get(f"{url}/ipfs/{cids['cbor']}/a/7?format=car", timeout=10).status_code == 404
    r = httpx.get(f"{url}/ipfs/{cids['cbor']}/l?format=car", timeout=10)
    assert r.status_code == 200
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("path", ["/a", "/a/0", ""])
def test_invalid_dag_cbor_block_is_a_clean_answer(odd_dags: tuple[str, dict[str, CID]],
                                                  capfd: pytest.CaptureFixture[str],
                                                  path: str) -> None:
    url, cids = odd_dags
    out = _exchange(url, f"GET /ipfs/{cids['bad']}{path}?format=car HTTP/1.1\r\nHost: a\r\n"
                         "Connection: close\r\n\r\n".encode())
    # decided before the status line: a 502 with its whole body, never a cut 200
    assert out.startswith(b"HTTP/1.1 502 "), out[:200]
    assert b"does not decode" in out
    assert "Traceback" not in capfd.readouterr().err
    r = httpx.get(f"{url}/ipfs/{cids['bad']}?format=raw", timeout=10)
    assert r.status_code == 200  # the block itself is still served: it hashes correctly


@pytest.mark.parametrize(("name", "encoded"), [
    ("crlf\r\nSet-Cookie: x=1", "crlf%0D%0ASet-Cookie:%20x=1"),
    ("sp ace", "sp%20ace"),
    ("ünï", "%C3%BCn%C3%AF"),
    ("ok", "ok"),
])
def test_entry_names_are_percent_encoded_in_headers(odd_dags: tuple[str, dict[str, CID]],
                                                    name: str, encoded: str) -> None:
    from urllib.parse import quote

    url, cids = odd_dags
    target = f"/ipfs/{cids['dir']}/{quote(name, safe='')}?format=car"
    out = _exchange(url, f"GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                         .encode())
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), out[:300]
    lines = head.decode("ascii").split("\r\n")
    assert f"X-Ipfs-Path: /ipfs/{cids['dir']}/{encoded}" in lines
    assert not any(ln.lower().startswith("set-cookie") for ln in lines)
    assert body.endswith(b"0\r\n\r\n")  # complete


# --- item 3: slow heads cannot take every slot ------------------------------------------------

#: slow-head sockets against a cap of SLOW_CAP connections: more than the cap, as in the
#: issue (1,100 against 1,024)
SLOW_SOCKETS = 80
SLOW_CAP = 50


def test_slow_heads_cannot_take_every_slot() -> None:
    import time

    from servehelp import fixture_cars

    from carget.server import ServerLimits
    from carget.server.testing import build_store

    # a header timeout far beyond the test: only eviction can free the slots
    limits = ServerLimits(max_connections=SLOW_CAP, idle_timeout=60, header_timeout=60)
    with running_gateway(build_store(fixture_cars()), limits=limits) as url:
        host, port = url.removeprefix("http://").split(":")
        head = b"GET /ipfs/x?format=raw HTTP/1.1\r\nHost: a\r\n"
        slow: list[socket.socket] = []
        try:
            for _ in range(SLOW_SOCKETS):
                s = socket.create_connection((host, int(port)), timeout=10)
                s.sendall(head[:1])
                slow.append(s)
            for i in range(1, 4):  # one more header byte each, a few times
                time.sleep(0.2)
                for s in slow:
                    try:
                        s.sendall(head[i: i + 1])
                    except OSError:
                        pass  # evicted already
            for _ in range(5):
                t0 = time.monotonic()
                r = httpx.get(f"{url}/ipfs/{ASCII}?format=raw", timeout=10)
                assert r.status_code == 200, r.text
                assert time.monotonic() - t0 < 2
        finally:
            for s in slow:
                s.close()


# --- item 1: memory does not grow with stalled clients ----------------------------------------

#: stalled clients in the test (the issue's 600 are measured by ``stalled.py``, see README)
STALLED = 150
#: what one stalled CAR client may cost the server: its task, h11 state, a first buffer
#: (it held a 1 MiB buffer before, so 150 of them passed this by far)
PER_STALLED_KIB = 256


def test_stalled_car_clients_do_not_grow_memory() -> None:
    from stalled import stalled_run

    out = stalled_run(STALLED, file_bytes=16 * 1024 * 1024, settle=1.5)
    assert out.normal_status == 200 and out.normal_bytes > 16 * 1024 * 1024
    grown = out.peak_rss_kib - out.base_rss_kib
    assert grown < STALLED * PER_STALLED_KIB, (out, grown / STALLED)


def test_connection_limit_is_a_503_with_retry_after_before_any_body(tmp_path: object) -> None:
    import os
    import time
    from pathlib import Path

    from carget.server import ServerLimits
    from carget.unixfs.options import resolve_options

    big = Path(str(tmp_path)) / "big.bin"
    big.write_bytes(os.urandom(16 * 1024 * 1024))
    store = BlockStore()
    root = store.add_paths([str(big)], resolve_options(cid_version=1), jobs=1)[0]
    limits = ServerLimits(max_connections=8)
    with running_gateway(store, limits=limits) as url:
        host, port = url.removeprefix("http://").split(":")
        req = f"GET /ipfs/{root}?format=car HTTP/1.1\r\nHost: a\r\n\r\n".encode()
        stalled: list[socket.socket] = []
        try:
            for _ in range(8):  # every slot answering a client that does not read
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(10)
                s.connect((host, int(port)))
                s.sendall(req)
                stalled.append(s)
            time.sleep(0.5)
            out = _exchange(url, req)
            head, _, body = out.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), out[:200]
            assert b"\r\nRetry-After: " in head and body == b""
        finally:
            for s in stalled:
                s.close()
        r = httpx.get(f"{url}/ipfs/{root}?format=car", timeout=20)  # slots free again
        assert r.status_code == 200 and len(r.content) > 16 * 1024 * 1024
