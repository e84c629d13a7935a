"""Hostile and malformed requests get the right status or a closed connection, and the
server keeps serving everybody else."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from servehelp import CAR_TYPE, car_cids

from carget.cid import CID
from carget.server import ServerLimits
from carget.server.store import BlockStore
from carget.server.testing import build_store, running_gateway

MULTI = "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa"
TWO = "bafybeietjm63oynimmv5yyqay33nui4y4wx6u3peezwetxgiwvfmelutzu"
ASCII = "bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm"
MISSING = "QmYhmPjhFjYFyaoiuNzYv8WGavpSRDwdHWe5B4M5du5Rtk"


@pytest.mark.parametrize(("target", "status"), [
    ("/ipfs/notacid?format=car", 400),
    ("/ipfs/bafyb@d?format=raw", 400),
    ("/ipfs/Qm123?format=raw", 400),
    ("/ipfs/?format=raw", 400),
    (f"/ipfs/{TWO}/%2e%2e/x?format=car", 400),
    (f"/ipfs/{TWO}/sub%00dir?format=car", 400),
    (f"/ipfs/{TWO}/a%2Fb?format=car", 400),
    (f"/ipfs/{TWO}/%ff?format=car", 400),
    (f"/ipfs/{TWO}//subdir?format=car", 400),
    (f"/ipfs/{MULTI}?format=car&dag-scope=entity&entity-bytes=99999:*", 400),  # past the end
    (f"/ipfs/{MULTI}?format=car&entity-bytes=5:2", 400),
    (f"/ipfs/{MULTI}?format=car&entity-bytes=-2:-5", 400),
    (f"/ipfs/{MULTI}?format=car&entity-bytes=abc:def", 400),
    (f"/ipfs/{MULTI}?format=car&entity-bytes=*:5", 400),
    (f"/ipfs/{MULTI}?format=car&entity-bytes=1:2:3", 400),
    (f"/ipfs/{MULTI}?format=car&entity-bytes=" + "9" * 40 + ":*", 400),
    (f"/ipfs/{MULTI}?format=car&entity-bytes=", 400),
    (f"/ipfs/{MULTI}?format=car&dag-scope=everything", 400),
    (f"/ipfs/{MULTI}?format=car&car-dups=maybe", 400),
    (f"/ipfs/{MULTI}?format=car&car-order=bfs", 400),
    (f"/ipfs/{MULTI}?format=car&car-version=2", 406),
    (f"/ipfs/{MULTI}?format=car&format=raw", 400),
    (f"/ipfs/{MULTI}?format=raw&dag-scope=block", 400),
    (f"/ipfs/{TWO}/subdir?format=raw", 200),  # the path's last block, as kubo 0.43.1
    (f"/ipfs/{MULTI}?format=bogus", 400),
    (f"/ipfs/{MULTI}?format=tar", 406),
    (f"/ipfs/{MULTI}?format=dag-json", 406),
    (f"/ipfs/{MULTI}", 200),  # no trustless format: the content (path gateway)
    (f"/ipfs/{MULTI}?format=raw&utm_source=x&filename=a.bin", 200),  # unknown names ignored
    (f"/ipfs/{ASCII}/more?format=car", 404),  # a raw block has no entries
    (f"/ipfs/{MULTI}/x?format=car", 404),  # nor does a file
    ("/ipns/example.com?format=car", 404),
    ("/", 404),
    ("/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy?format=car", 404),
])
def test_bad_requests_get_the_right_status(client: httpx.Client, target: str,
                                           status: int) -> None:
    r = client.get(target)
    assert r.status_code == status, r.text
    assert client.get(f"/ipfs/{ASCII}?format=raw").status_code == 200  # still serving


@pytest.mark.parametrize(("accept", "status"), [
    ("text/html", 200),  # the content itself, as a path gateway
    ("application/json, text/plain", 200),
    ("application/x-tar, application/vnd.ipfs.ipns-record", 406),  # only ones it cannot give
    ("application/json, application/x-tar", 200),  # json of a UnixFS file: the file (kubo)
    (f"{CAR_TYPE}; version=2", 406),
    (f"{CAR_TYPE}; order=bfs", 406),
    (f"{CAR_TYPE}; dups=maybe", 406),
    ("*/*", 200),
    (f"text/html, {CAR_TYPE};q=0.1", 200),
    (f"{CAR_TYPE}; q=abc", 400),
    (f"{CAR_TYPE}; q=0", 200),  # refused CAR: what is left is the content
])
def test_accept_negotiation(client: httpx.Client, accept: str, status: int) -> None:
    r = client.get(f"/ipfs/{MULTI}", headers={"Accept": accept})
    assert r.status_code == status, r.text


def test_q_values_pick_the_preferred_type(client: httpx.Client) -> None:
    r = client.get(f"/ipfs/{MULTI}",
                   headers={"Accept": f"{CAR_TYPE};q=0.5, application/vnd.ipld.raw;q=0.9"})
    assert r.headers["content-type"] == "application/vnd.ipld.raw"
    r = client.get(f"/ipfs/{MULTI}",
                   headers={"Accept": f"{CAR_TYPE};q=0.9, application/vnd.ipld.raw;q=0.5"})
    assert CAR_TYPE in r.headers["content-type"]
    # an unusable first choice falls through to the next one
    r = client.get(f"/ipfs/{MULTI}", headers={
        "Accept": f"{CAR_TYPE};version=2, {CAR_TYPE};version=1;dups=y;q=0.5"})
    assert "dups=y" in r.headers["content-type"]


def test_method_not_allowed_and_head(client: httpx.Client) -> None:
    r = client.post(f"/ipfs/{MULTI}?format=car", content=b"x")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    r = client.head(f"/ipfs/{MULTI}?format=car")
    assert r.status_code == 200 and r.content == b""
    assert CAR_TYPE in r.headers["content-type"]
    r = client.head(f"/ipfs/{TWO}/nope?format=car")
    assert r.status_code == 404


def test_etag_and_if_none_match(client: httpx.Client) -> None:
    r = client.get(f"/ipfs/{MULTI}?format=car")
    etag = r.headers["etag"]
    other = client.get(f"/ipfs/{MULTI}?format=car&entity-bytes=0:10").headers["etag"]
    assert other != etag  # entity-bytes changes the Etag (spec)
    r = client.get(f"/ipfs/{MULTI}?format=car", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""


def _raw_exchange(url: str, request: bytes, limit: float = 10) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=limit) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:  # closed with our unread bytes pending: a reset
            pass
        return out


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /ipfs/x HTTP/1.1\r\nno-colon-header\r\n\r\n",
    b"GET /ipfs/x HTTP/9.9\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET /ipfs/\xff\xfe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET /ipfs/x HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 40000 + b"\r\n\r\n",
    b"GET /ipfs/x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\nxx",
], ids=["garbage", "no-colon", "http-9.9", "non-ascii-target", "huge-header", "huge-body"])
def test_protocol_garbage_gets_an_error_or_a_close(gateway: str, client: httpx.Client,
                                                   request_bytes: bytes) -> None:
    out = _raw_exchange(gateway, request_bytes)
    assert out == b"" or out.startswith(b"HTTP/1.1 4")
    assert client.get(f"/ipfs/{ASCII}?format=raw").status_code == 200


@pytest.mark.parametrize("path", [f"/ipfs/{TWO}/../etc/passwd", f"/ipfs/{TWO}/subdir/..",
                                  f"/ipfs/{TWO}/./subdir"])
def test_dot_segments_are_refused(gateway: str, path: str) -> None:
    # sent raw: HTTP clients normalise dot segments away before they reach the server
    out = _raw_exchange(gateway, f"GET {path}?format=car HTTP/1.1\r\nHost: a\r\n"
                                 "Connection: close\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 400")


def test_missing_block_ends_without_the_terminating_chunk(gateway: str) -> None:
    out = _raw_exchange(gateway, f"GET /ipfs/{MISSING}?format=car HTTP/1.1\r\nHost: a\r\n"
                                 "\r\n".encode())
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
    assert not body.endswith(b"0\r\n\r\n")  # the stream was cut, not finished
    assert len(body) > 100  # what came before the missing block was sent


def test_unsupported_codec(tmp_path: object) -> None:
    store = BlockStore()
    doc = b'{"a":1}'
    cid = CID.of(doc, 0x0129)  # dag-json: a codec carget cannot walk
    store.add_block(cid, doc)
    with running_gateway(store) as url:
        assert httpx.get(f"{url}/ipfs/{cid}?format=raw").content == doc
        assert httpx.get(f"{url}/ipfs/{cid}?format=car").status_code == 501
        assert httpx.get(f"{url}/ipfs/{cid}/a?format=car").status_code == 501
        r = httpx.get(f"{url}/ipfs/{cid}?format=car&dag-scope=block")
        assert car_cids(r.content) == [str(cid)]


@pytest.fixture
def small_gateway() -> Iterator[str]:
    from servehelp import fixture_cars

    limits = ServerLimits(max_connections=50, idle_timeout=30, header_timeout=0.5)
    with running_gateway(build_store(fixture_cars()), limits=limits) as url:
        yield url


def test_thousands_of_idle_connections(small_gateway: str) -> None:
    host, port = small_gateway.removeprefix("http://").split(":")
    idle = []
    try:
        for _ in range(1500):
            idle.append(socket.create_connection((host, int(port)), timeout=10))
        # the longest-idle connections make room: real clients are still served
        for _ in range(20):
            r = httpx.get(f"{small_gateway}/ipfs/{ASCII}?format=raw", timeout=10)
            assert r.status_code == 200
        # and the server closed most idle sockets instead of holding them all open
        idle[0].settimeout(10)
        assert idle[0].recv(100) in (b"", )
    finally:
        for s in idle:
            s.close()
    r = httpx.get(f"{small_gateway}/ipfs/{MULTI}?format=car", timeout=10)
    assert r.status_code == 200


def test_slow_header_is_cut_off(small_gateway: str) -> None:
    host, port = small_gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /ipfs/")  # and never finish the request head
        assert s.recv(100) == b""  # closed by the header timeout (0.5 s), well before 10 s


def test_a_client_that_does_not_read_does_not_stall_others(tmp_path: object) -> None:
    import os
    from pathlib import Path

    big = Path(str(tmp_path)) / "big.bin"
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    store = BlockStore()
    from carget.unixfs.options import resolve_options

    root = store.add_paths([str(big)], resolve_options(cid_version=1), jobs=1)[0]
    with running_gateway(store) as url:
        host, port = url.removeprefix("http://").split(":")
        stuck = []
        for _ in range(4):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /ipfs/{root}?format=car HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            stuck.append(s)
        try:
            for _ in range(5):
                r = httpx.get(f"{url}/ipfs/{root}?format=car", timeout=20)
                assert r.status_code == 200 and len(r.content) > 8 * 1024 * 1024
        finally:
            for s in stuck:
                s.close()
