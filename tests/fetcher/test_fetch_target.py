"""Target parsing, gateway discovery order, provider multiaddrs, and the sync library API."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fetchhelp import content

from carget.errors import CIDParseError, UsageError
from carget.fetcher import FetchResult, fetch_file_sync
from carget.fetcher.gateways import (
    PUBLIC_GATEWAYS,
    discover_gateways,
    multiaddr_to_url,
    providers_from_json,
)
from carget.fetcher.target import parse_target, quote_segment

V1 = "bafybeidh6k2vzukelqtrjsmd4p52cpmltd2ufqrdtdg6yigi73in672fwu"
V0 = "QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt"


@pytest.mark.parametrize("text", [f"ipfs://{V1}/a/b", f"/ipfs/{V1}/a/b", f"{V1}/a/b",
                                  f"https://gw.example/ipfs/{V1}/a/b?format=raw#x",
                                  f"{V1}/a/b/"])
def test_target_forms(text: str) -> None:
    t = parse_target(text)
    assert str(t.cid) == V1 and t.path == ("a", "b") and t.default_name == "b"
    assert t.gateway_hint == ("https://gw.example" if text.startswith("https") else None)


def test_cid_versions_and_bases() -> None:
    v0 = parse_target(V0)
    assert v0.cid.version == 0 and v0.default_name == V0
    b36 = v0.cid.to_v1().encode("base36")
    assert parse_target(f"ipfs://{b36}").cid == v0.cid.to_v1()


def test_percent_decoding_and_quoting_round_trip() -> None:
    name = "Portugal%2C+España=Peninsula Ibérica.txt"
    t = parse_target(f"{V1}/{quote_segment(name)}")
    assert t.path == (name,)
    assert t.url_path() == f"/ipfs/{V1}/{quote_segment(name)}"


@pytest.mark.parametrize("bad", [f"{V1}/../x", f"{V1}/a//b", f"{V1}/a/%00", f"{V1}/.",
                                 f"{V1}/a%2Fb", "/ipns/example.com", "", "ipfs://",
                                 "https://gw.example/not-ipfs"])
def test_unsafe_or_malformed_targets(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_target(bad)


def test_bad_cid_is_cid_parse_error() -> None:
    with pytest.raises(CIDParseError):
        parse_target("ipfs://bafynotacid")


def test_discovery_order(tmp_path: Path) -> None:
    (tmp_path / "ipfs").mkdir()
    (tmp_path / "ipfs" / "gateway").write_text("http://from-ipfs-path:1\nignored\n")
    (tmp_path / ".ipfs").mkdir()
    (tmp_path / ".ipfs" / "gateway").write_text("http://from-home:2\n")
    env = {"IPFS_GATEWAY": "http://from-env:3", "IPFS_PATH": str(tmp_path / "ipfs"),
           "HOME": str(tmp_path)}
    got = discover_gateways(["127.0.0.1:4/"], env)
    assert got == ["http://127.0.0.1:4", "http://from-env:3", "http://from-ipfs-path:1",
                   *PUBLIC_GATEWAYS]
    assert discover_gateways([], {"HOME": str(tmp_path)}, include_public=False) == \
        ["http://from-home:2"]


def test_provider_multiaddrs() -> None:
    assert multiaddr_to_url("/ip4/127.0.0.1/tcp/8080/http") == "http://127.0.0.1:8080"
    assert multiaddr_to_url("/dns/gw.example/tcp/443/https") == "https://gw.example:443"
    assert multiaddr_to_url("/dns4/gw.example/tcp/443/tls/http") == "https://gw.example:443"
    assert multiaddr_to_url("/ip6/::1/tcp/80/http") == "http://[::1]:80"
    assert multiaddr_to_url("/ip4/1.2.3.4/udp/4001/quic") is None
    doc = {"Providers": [{"Protocols": ["transport-bitswap"], "Addrs": ["/ip4/1.1.1.1/tcp/1/http"]},
                         {"Protocols": ["transport-ipfs-gateway-http"],
                          "Addrs": ["/ip4/2.2.2.2/tcp/2/http", "garbage"]}, "junk"]}
    assert providers_from_json(doc) == ["http://2.2.2.2:2"]


def test_fetch_file_sync_against_carget_serve(tmp_path: Path) -> None:
    from carget.add import add_file
    from carget.server.testing import running_gateway
    from carget.unixfs.options import resolve_options

    src = tmp_path / "src.bin"
    src.write_bytes(content(700_000, seed=5))
    digest = "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    cid = add_file(str(src), resolve_options(cid_version=1)).cid
    with running_gateway([str(src)], cid_version=1) as url:
        res = fetch_file_sync(f"ipfs://{cid}", tmp_path / "out.bin", gateways=[url],
                              digest=digest, timeout=60)
    assert res == FetchResult(str(cid), 700_000, digest, "ipfs")
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
