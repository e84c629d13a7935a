"""Kept connections: a run reuses a gateway's connections across requests (the race, each
split range, each ``cat`` segment), so over TLS it pays a handshake per stream, not per
request. The fault gateway counts its accepted connections (TLS handshakes)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme
from dagstore import DagStore
from faultgw import fault_gateway
from fetchhelp import ByteSink, content
from relay import delaying_relay

from carget.fetcher import FetchOptions, connection
from carget.fetcher.cat import run_cat
from carget.fetcher.get import run_get

SIZE = 4 << 20


@pytest.fixture
def server_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.setattr(connection, "_context", None)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


async def test_cat_of_16_segments_over_tls_opens_one_connection_a_stream(
        store: DagStore, server_tls: ssl.SSLContext) -> None:
    data = content(SIZE, seed=31)
    cid = store.add_bytes(data, cid_version=1)
    sink = ByteSink()
    with trio.fail_after(30):
        async with fault_gateway(store, keep_alive=True, tls=server_tls) as gw:
            port = gw.url.rsplit(":", 1)[1]
            # two names for one server: two gateways, so cat splits into segments
            urls = [f"https://127.0.0.1:{port}", f"https://localhost:{port}"]
            await run_cat(str(cid), FetchOptions(urls, streams_per_gateway=2,
                                                 unit_bytes=SIZE // 16), sink)
    assert bytes(sink.buf) == data
    segments = [e for e in gw.log if "entity-bytes" in e.query]
    assert len(segments) >= 16
    streams = len(urls) * 2
    # one connection a stream, plus the race's loser: cancelled mid-answer (or
    # mid-handshake) once the other gateway's block arrived, it cannot be kept
    assert gw.accepts <= streams + 1, (gw.accepts, len(gw.log))


async def test_get_reuses_the_race_connection(store: DagStore, tmp_path: Path,
                                             server_tls: ssl.SSLContext) -> None:
    data = content(SIZE, seed=32)
    cid = store.add_bytes(data, cid_version=1)
    with trio.fail_after(30):
        async with fault_gateway(store, keep_alive=True, tls=server_tls) as gw:
            await run_get(str(cid), str(tmp_path / "out"), FetchOptions(
                [gw.url], streams_per_gateway=1, unit_bytes=SIZE // 8))
    assert (tmp_path / "out").read_bytes() == data
    assert len(gw.log) >= 2  # the race's block, then the file
    assert gw.accepts == 1


async def test_a_kept_connection_the_server_closed_is_replaced(
        store: DagStore, tmp_path: Path) -> None:
    """The server closes each connection after one answer without saying so (an idle
    timeout): the next request on it finds it closed before any answer, and goes on a
    fresh connection instead of failing the gateway."""
    data = content(SIZE, seed=33)
    cid = store.add_bytes(data, cid_version=1)
    logged: list[str] = []
    with trio.fail_after(30):
        async with fault_gateway(store, keep_alive=True, per_connection=1) as gw:
            await run_get(str(cid), str(tmp_path / "out"), FetchOptions(
                [gw.url], streams_per_gateway=1, unit_bytes=SIZE // 8,
                log=logged.append, verbose=True))
    assert (tmp_path / "out").read_bytes() == data
    assert logged == []  # no attempt failed (verbose logs each one)
    assert gw.accepts == len(gw.log)  # each answer on its own connection, none failed


async def test_cat_over_tls_behind_a_delaying_relay_opens_one_connection_a_stream(
        store: DagStore, server_tls: ssl.SSLContext) -> None:
    """Over a path with 20 ms each way (a relay between carget and the TLS gateway), a
    ``cat`` of 16 segments still opens one connection (one TLS handshake) a stream: each
    segment goes on a kept connection, and none is opened while another sits idle."""
    data = content(SIZE, seed=34)
    cid = store.add_bytes(data, cid_version=1)
    sink = ByteSink()
    with trio.fail_after(60):
        async with fault_gateway(store, keep_alive=True, tls=server_tls) as gw:
            async with delaying_relay(int(gw.url.rsplit(":", 1)[1]), delay=0.02) as relay:
                # two names for the relay: two gateways, so cat splits into segments
                urls = [f"https://127.0.0.1:{relay.port}", f"https://localhost:{relay.port}"]
                await run_cat(str(cid), FetchOptions(urls, streams_per_gateway=2,
                                                     unit_bytes=SIZE // 16), sink)
    assert bytes(sink.buf) == data
    segments = [e for e in gw.log if "entity-bytes" in e.query]
    assert len(segments) >= 16
    assert gw.accepts == relay.connections  # every connection went through the relay
    streams = len(urls) * 2
    # the race's loser is the one connection past a stream each (see above)
    assert gw.accepts <= streams + 1, (gw.accepts, len(gw.log))
