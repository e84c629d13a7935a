"""A dag-cbor block that does not decode is carget's :class:`DecodeError` (exit 4), never a
traceback (issue 12): the decode entry point fuzzed with random bytes, and ``carget get
CID/a`` through a loopback gateway that answers with such a block."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dag_cbor
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID, DAG_CBOR
from carget.errors import DecodeError, NotFoundError
from carget.unixfs.node import block_links, cbor_walk, decode_dag_cbor

#: blocks that hash right and are not DAG-CBOR, one per way the dag_cbor package fails
BAD = {
    "truncated map": b"\xa1\x61a",
    "duplicate key": b"\xa2\x61a\x01\x61a\x02",
    "trailing junk": b"\x01\x02",
    "deep nesting": b"\x81" * 5000 + b"\x01",  # RecursionError inside dag_cbor
    "huge length": b"\x5b" + b"\xff" * 8,  # OverflowError inside dag_cbor
    "link with unknown hash": b"\xd8\x2a\x45\x00\x01\x02\x03\x04",  # KeyError inside it
    "link too short": b"\xd8\x2a\x58\x05\x00\x01\x71\x12\x00",
    "float NaN": b"\xf9\x7e\x00",
}


def cbor_cid(block: bytes) -> CID:
    return CID.of(block, DAG_CBOR)


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_block_is_a_decode_error(name: str) -> None:
    block = BAD[name]
    cid = cbor_cid(block)
    with pytest.raises(DecodeError, match=f"dag-cbor block {cid} does not decode"):
        decode_dag_cbor(cid, block)
    with pytest.raises(DecodeError):
        block_links(cid, memoryview(block))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | st.builds(
    lambda head, body: head + body,
    st.sampled_from([b"\xa1", b"\x81", b"\xd8\x2a", b"\x9f", b"\xbf", b"\x5b", b"\x7b"]),
    st.binary(max_size=64)))
def test_random_bytes_decode_or_raise_decode_error(block: bytes) -> None:
    """Garbage in: a value, or carget's DecodeError; nothing else escapes."""
    cid = cbor_cid(block)
    try:
        value = decode_dag_cbor(cid, block)
    except DecodeError:
        value = None
    try:
        block_links(cid, block)
    except DecodeError:
        pass
    # walking whatever decoded, with paths of every shape, is a link, an end or not-found
    for path in (["a"], ["0"], ["0", "1"], ["²"], ["9" * 5000], [""]):
        try:
            cbor_walk(value, path, 0)
        except (NotFoundError, DecodeError):
            pass


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=12))
def test_valid_values_round_trip(value: Any) -> None:
    block = dag_cbor.encode(value)
    assert decode_dag_cbor(cbor_cid(block), block) == value


def test_list_index_segments_are_ascii_digits_of_sane_length() -> None:
    value = {"a": [10, 11, 12]}
    assert cbor_walk(value, ["a", "2"], 0) == (None, 2)
    for seg in ("²", "٣", "9" * 5000, "-1", "+1", " 1"):
        with pytest.raises(NotFoundError):
            cbor_walk(value, ["a", seg], 0)


@pytest.fixture
def bad_cbor_gateway() -> Iterator[tuple[str, CID]]:
    """A loopback gateway that answers every CAR request with one dag-cbor block that
    hashes right and does not decode (the truncated map)."""
    block = BAD["truncated map"]
    cid = cbor_cid(block)
    car = encode_header([cid]) + section_prefix(cid, len(block)) + block

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.ipld.car; version=1")
            self.send_header("Content-Length", str(len(car)))
            self.end_headers()
            self.wfile.write(car)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", cid
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_get_through_a_bad_dag_cbor_block_exits_4(
    bad_cbor_gateway: tuple[str, CID], tmp_path: Path
) -> None:
    url, cid = bad_cbor_gateway
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "carget", "get", f"{cid}/a", "-o", str(out),
                        "--gateway", url, "--timeout", "60"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 4, r.stderr
    assert "Traceback" not in r.stderr
    assert f"dag-cbor block {cid} does not decode" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
