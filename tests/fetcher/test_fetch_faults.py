"""Fetching against real loopback gateways that lie, stall, cut, drip and throttle."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway, most_at_once, plain_server
from fetchhelp import content, run_cli

from carget.errors import (
    DigestMismatch,
    FetchTimeout,
    NetworkError,
    NotFoundError,
    UsageError,
    VerificationError,
)
from carget.fetcher import FetchOptions
from carget.fetcher.cat import run_cat
from carget.fetcher.get import run_get

SIZE = 600_000
CHUNK = "size-16384"


@pytest.fixture
def big(store: DagStore) -> tuple[DagStore, str, bytes]:
    data = content(SIZE, seed=7)
    root = store.add_bytes(data, cid_version=1, chunker=CHUNK)
    return store, str(root), data


def opts(*gateways: str, events: list[dict[str, Any]] | None = None, **kw: Any) -> FetchOptions:
    o = FetchOptions(gateways=list(gateways), idle_timeout=kw.pop("idle_timeout", 1.0), **kw)
    if events is not None:
        o.progress = events.append
    return o


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != "home")


async def test_one_liar_one_honest_succeeds_and_drops_the_liar(
        big: tuple[DagStore, str, bytes], tmp_path: Path) -> None:
    store, cid, data = big
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("flip", at=3, only_scope="entity")) as liar, \
                fault_gateway(store) as honest:
            res = await run_get(cid, "out.bin", opts(liar.url, honest.url, events=events,
                                                     unit_bytes=65536))
    assert (tmp_path / "out.bin").read_bytes() == data
    assert res.size == SIZE and res.source == "ipfs"
    dropped = [e["gateway"] for e in events if e["event"] == "gateway-dropped"]
    assert dropped == [liar.url]
    assert leftovers(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("kind", ["flip", "substitute", "content_type", "huge_prefix"])
async def test_only_liars_fail_with_verification_error_and_no_output(
        big: tuple[DagStore, str, bytes], tmp_path: Path, kind: str) -> None:
    store, cid, _ = big
    with trio.fail_after(30):
        async with fault_gateway(store, Fault(kind, at=2)) as a, \
                fault_gateway(store, Fault(kind, at=5)) as b:
            with pytest.raises(VerificationError):
                await run_get(cid, "out.bin", opts(a.url, b.url))
    assert leftovers(tmp_path) == []


async def test_only_liars_cli_exit_4(big: tuple[DagStore, str, bytes], tmp_path: Path) -> None:
    store, cid, _ = big
    async with fault_gateway(store, Fault("flip", at=1)) as a:
        code, _, err = await run_cli("get", "-g", a.url, cid, "-o", "x.bin",
                                       "--idle-timeout", "2")
    assert code == 4, err
    assert leftovers(tmp_path) == []


async def test_stall_mid_download_is_finished_by_another_gateway(
        big: tuple[DagStore, str, bytes], tmp_path: Path) -> None:
    store, cid, data = big
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("stall", at=6)) as staller, \
                fault_gateway(store) as honest:
            await run_get(cid, "out.bin", opts(staller.url, honest.url, idle_timeout=0.5))
    assert (tmp_path / "out.bin").read_bytes() == data


async def test_a_slow_gateways_range_is_taken_over_by_a_fast_one(
        big: tuple[DagStore, str, bytes], tmp_path: Path) -> None:
    # the file starts split in two, one half per gateway; the honest one finishes its half
    # and then takes over the back half of what the slow one has left, again and again,
    # and the slow one's stream stops at each new end: it ends up sending little
    store, cid, data = big
    slow_fault = Fault("drip", only_scope="entity", drip_size=2048, drip_delay=0.01)
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store, slow_fault) as slow, fault_gateway(store) as fast:
            await run_get(cid, "out.bin", opts(slow.url, fast.url, streams_per_gateway=1,
                                               unit_bytes=32768, events=events))
    assert (tmp_path / "out.bin").read_bytes() == data
    progress = [e["bytes"] for e in events if e["event"] == "progress"]
    assert progress[-1] == SIZE and max(progress) == SIZE  # a leaf fetched twice: not 101%
    assert any(e["event"] == "takeover" for e in events)
    slow_sent = sum(r.sent for r in slow.log if r.query.get("dag-scope") == "entity")
    fast_ranges = [r.query["entity-bytes"] for r in fast.log if "entity-bytes" in r.query]
    assert slow_sent < SIZE // 4, (slow_sent, fast_ranges)
    assert len(fast_ranges) >= 2, fast_ranges  # its own half, then at least one take-over
    assert leftovers(tmp_path) == ["out.bin"]


async def test_get_opens_one_stream_per_cpu_when_the_gateways_keep_up(
        big: tuple[DagStore, str, bytes], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # two gateways × two connections allowed, CPUs for two streams: a stream per gateway,
    # and no second connection to either, since the streams are not slow
    import carget.fetcher.file as file_strategy

    monkeypatch.setattr(file_strategy, "usable_cpus", lambda: 2)
    store, cid, data = big
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store) as a, fault_gateway(store) as b:
            await run_get(cid, "out.bin", opts(a.url, b.url, streams_per_gateway=2,
                                               unit_bytes=32768, events=events))
    assert (tmp_path / "out.bin").read_bytes() == data
    for gw in (a, b):
        entity = [r for r in gw.log if r.query.get("dag-scope") == "entity"]
        assert entity and most_at_once(entity) == 1, [(r.began, r.ended) for r in entity]
    assert not [e for e in events if e["event"] == "streams"]


async def test_get_opens_more_connections_where_streams_are_slow(
        big: tuple[DagStore, str, bytes], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # each connection drips (a per-connection limit): once the first stream of each
    # gateway has proved slow, its second connection opens and both run at once
    import carget.fetcher.file as file_strategy
    import carget.fetcher.split as split

    monkeypatch.setattr(file_strategy, "usable_cpus", lambda: 2)
    monkeypatch.setattr(split, "SPLIT_AFTER", 0.2)
    store, cid, data = big
    drip = Fault("drip", only_scope="entity", drip_size=4096, drip_delay=0.01)
    events: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with fault_gateway(store, drip) as a, fault_gateway(store, drip) as b:
            await run_get(cid, "out.bin", opts(a.url, b.url, streams_per_gateway=2,
                                               unit_bytes=32768, events=events))
    assert (tmp_path / "out.bin").read_bytes() == data
    grown = sorted(e["gateway"] for e in events if e["event"] == "streams")
    assert grown == sorted([a.url, b.url]), events
    assert all(e["streams"] == 2 for e in events if e["event"] == "streams")
    for gw in (a, b):  # (a stream cut short by a take-over may still be draining)
        entity = [r for r in gw.log if r.query.get("dag-scope") == "entity"]
        assert most_at_once(entity) >= 2


async def test_cut_streams_continue_from_the_last_verified_leaf(
        big: tuple[DagStore, str, bytes], tmp_path: Path) -> None:
    store, cid, data = big
    with trio.fail_after(30):
        cut = Fault("cut_mid", at=10, times=2, only_scope="entity")
        async with fault_gateway(store, cut) as gw:
            await run_get(cid, "out.bin", opts(gw.url, streams_per_gateway=1))
    assert (tmp_path / "out.bin").read_bytes() == data
    ranges = [r.query.get("entity-bytes") for r in gw.log if "entity-bytes" in r.query]
    starts = [int(r.split(":")[0]) for r in ranges if r]
    assert any(s > 0 for s in starts[1:]), ranges  # a retry started after verified bytes


@pytest.mark.parametrize("kind", ["cut_boundary", "drip", "ignore_scope", "never_end"])
async def test_tolerated_faults_still_succeed(big: tuple[DagStore, str, bytes], tmp_path: Path,
                                              kind: str) -> None:
    store, cid, data = big
    fault = Fault(kind, at=4, times=1 if kind == "cut_boundary" else None,
                  only_scope="entity", drip_size=65536, drip_delay=0.001)
    with trio.fail_after(30):
        async with fault_gateway(store, fault) as gw:
            await run_get(cid, "out.bin", opts(gw.url))
    assert (tmp_path / "out.bin").read_bytes() == data


async def test_429_retry_after_is_honoured(big: tuple[DagStore, str, bytes],
                                           tmp_path: Path) -> None:
    store, cid, data = big
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("status", status=429, retry_after="1",
                                              times=1)) as gw:
            t0 = trio.current_time()
            await run_get(cid, "out.bin", opts(gw.url))
            waited = trio.current_time() - t0
    assert (tmp_path / "out.bin").read_bytes() == data
    assert gw.log[0].status == 429 and len(gw.log) >= 2
    assert waited >= 0.9  # the second request came only after Retry-After


async def test_500_everywhere_is_a_network_error(big: tuple[DagStore, str, bytes]) -> None:
    store, cid, _ = big
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("status", status=500)) as gw:
            with pytest.raises(NetworkError):
                await run_get(cid, "out.bin", opts(gw.url))


async def test_not_found_everywhere_exit_3(tmp_path: Path) -> None:
    async with fault_gateway(DagStore()) as gw:
        code, _, err = await run_cli(
            "get", "-g", gw.url, "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
    assert code == 3, err
    async with fault_gateway(DagStore()) as gw:
        with pytest.raises(NotFoundError):
            await run_get("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
                          "x", opts(gw.url))


async def test_whole_run_timeout(big: tuple[DagStore, str, bytes]) -> None:
    store, cid, _ = big
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("stall", at=3)) as gw:
            with pytest.raises(FetchTimeout):
                await run_get(cid, "out.bin", opts(gw.url, idle_timeout=20, timeout=0.5))


async def test_digest_checked_and_printed(big: tuple[DagStore, str, bytes],
                                          tmp_path: Path) -> None:
    store, cid, data = big
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    bad = "sha256:" + "0" * 64
    async with fault_gateway(store) as gw:
        code, out, err = await run_cli("get", "-g", gw.url, cid, "-o", "d.bin",
                                       "--digest", good)
        assert code == 0, err
        assert out.decode().strip() == good
        code, out, err = await run_cli("get", "-g", gw.url, cid, "-o", "e.bin",
                                       "--digest", bad)
        assert code == 5, err
        assert not (tmp_path / "e.bin").exists()
        with pytest.raises(DigestMismatch):
            await run_get(cid, "f.bin", opts(gw.url, digest=bad))
    assert leftovers(tmp_path) == ["d.bin"]


async def test_with_a_digest_the_streams_fetch_small_units_in_file_order(
        big: tuple[DagStore, str, bytes], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the whole-file digest follows the bytes as they land only near its frontier: so
    # with --digest the streams take unit-sized ranges in file order (without it, one
    # long range each)
    import carget.fetcher.file as file_strategy

    monkeypatch.setattr(file_strategy, "usable_cpus", lambda: 2)  # both workers start at once
    store, cid, data = big
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    ranges: dict[str, list[tuple[int, int]]] = {}
    for name, digest in (("plain", None), ("digest", good)):
        async with fault_gateway(store) as gw:
            res = await run_get(cid, f"{name}.bin", opts(gw.url, streams_per_gateway=2,
                                                         unit_bytes=65536, digest=digest))
        assert (tmp_path / f"{name}.bin").read_bytes() == data
        ranges[name] = sorted((int(a), int(b)) for a, b in (
            r.query["entity-bytes"].split(":") for r in gw.log if "entity-bytes" in r.query))
    assert res.digest == good
    # without it: half the file each from the start; a stream that ends first may take
    # over the back half of the other's rest (a split), never a unit-sized range in order
    plain = ranges["plain"]
    first = next(r for r in plain if r[0] == 0)
    second = min(r for r in plain if r[1] == SIZE - 1)
    assert first[1] + 1 == second[0] and abs(second[0] - SIZE // 2) < 65536, ranges
    assert all(hi in (first[1], SIZE - 1) for _, hi in plain), ranges  # splits end there
    assert len(plain) < SIZE // 65536 // 2, ranges
    assert len(ranges["digest"]) >= SIZE // 65536, ranges
    assert all(hi - lo < 65536 for lo, hi in ranges["digest"]), ranges


async def test_fallback_url_used_only_when_ipfs_fails(big: tuple[DagStore, str, bytes],
                                                      tmp_path: Path) -> None:
    store, cid, data = big
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with trio.fail_after(30):
        async with plain_server(data) as mirror, \
                fault_gateway(store, Fault("flip", at=1)) as liar:
            res = await run_get(cid, "out.bin", opts(liar.url, digest=digest,
                                                     fallback_url=mirror))
            assert res.source == "fallback" and res.digest == digest
            assert (tmp_path / "out.bin").read_bytes() == data
            with pytest.raises(DigestMismatch):
                await run_get(cid, "bad.bin", opts(liar.url, digest="sha256:" + "1" * 64,
                                                   fallback_url=mirror))
            assert not (tmp_path / "bad.bin").exists()
            with pytest.raises(UsageError):
                await run_get(cid, "x.bin", opts(liar.url, fallback_url=mirror))


async def test_cat_streams_in_order_and_fails_over(big: tuple[DagStore, str, bytes]) -> None:
    store, cid, data = big
    # the honest gateway fails the race (500), so the cutter serves first and is cut off
    async with fault_gateway(store, Fault("cut_mid", at=12, only_scope="entity")) as cutter, \
            fault_gateway(store, Fault("status", status=500, only_scope="block")) as honest:
        code, out, err = await run_cli("cat", "-g", cutter.url, "-g", honest.url, cid,
                                       "--idle-timeout", "2")
    assert code == 0, err
    assert out == data
    # the second gateway was asked only for what the first had not delivered
    ranges = [r.query.get("entity-bytes") for r in honest.log if r.query.get("dag-scope")
              == "entity"]
    assert ranges and all(r and int(r.split(":")[0]) > 0 for r in ranges), ranges


async def test_cat_with_only_liars_writes_nothing_unverified(
        big: tuple[DagStore, str, bytes]) -> None:
    store, cid, data = big
    async with fault_gateway(store, Fault("flip", at=5, only_scope="entity")) as liar:
        code, out, err = await run_cli("cat", "-g", liar.url, cid, "--idle-timeout", "2")
    assert code == 4, err
    assert data.startswith(out)  # only verified leaves before the bad one


async def test_library_cat_to_a_stream(big: tuple[DagStore, str, bytes]) -> None:
    import io

    store, cid, data = big
    buf = io.BytesIO()
    async with fault_gateway(store) as gw:
        res = await run_cat(cid, opts(gw.url), buf)
    assert buf.getvalue() == data and res.size == SIZE


async def test_car_output_holds_the_verified_dag(big: tuple[DagStore, str, bytes],
                                                 tmp_path: Path) -> None:
    from carget.car.decoder import decode_car

    store, cid, _ = big
    async with fault_gateway(store) as gw:
        await run_get(cid, "out.bin", opts(gw.url, car_out="out.car"))
    header, blocks = decode_car((tmp_path / "out.car").read_bytes())
    assert [str(r) for r in header.roots] == [cid]
    assert {b.cid for b in blocks} == set(store.blocks)


async def test_routing_adds_gateway_providers(big: tuple[DagStore, str, bytes],
                                              tmp_path: Path) -> None:
    store, cid, data = big
    async with fault_gateway(store) as honest:
        port = honest.url.rsplit(":", 1)[1]
        providers = [
            {"Schema": "peer", "ID": "12D3KooWx", "Protocols": ["transport-bitswap"],
             "Addrs": ["/ip4/127.0.0.1/tcp/1/http"]},
            {"Schema": "peer", "ID": "12D3KooWy", "Protocols": ["transport-ipfs-gateway-http"],
             "Addrs": [f"/ip4/127.0.0.1/tcp/{port}/http"]},
        ]
        async with fault_gateway(DagStore(), providers=providers) as router:
            code, _, err = await run_cli("get", "--routing", router.url, cid, "-o", "r.bin")
    assert code == 0, err
    assert (tmp_path / "r.bin").read_bytes() == data
    assert any(r.path.startswith("/routing/v1/providers/") for r in router.log)


async def test_gateway_from_ipfs_path_file(big: tuple[DagStore, str, bytes],
                                           tmp_path: Path) -> None:
    store, cid, data = big
    ipfs_path = Path(os.environ["IPFS_PATH"])
    ipfs_path.mkdir(parents=True)
    async with fault_gateway(store) as gw:
        (ipfs_path / "gateway").write_text(gw.url + "\n")
        code, _, err = await run_cli("get", cid, "-o", "g.bin")
    assert code == 0, err
    assert (tmp_path / "g.bin").read_bytes() == data


async def test_race_cancels_the_loser(big: tuple[DagStore, str, bytes], tmp_path: Path) -> None:
    store, cid, data = big
    # the staller never answers the race; with a 20 s idle timeout the run can only end
    # quickly if the honest answer cancels the losing request
    with trio.fail_after(10):
        async with fault_gateway(store, Fault("stall", at=0, only_scope="block")) as staller, \
                fault_gateway(store) as honest:
            await run_get(cid, "out.bin", opts(staller.url, honest.url, idle_timeout=20,
                                               streams_per_gateway=1))
    assert (tmp_path / "out.bin").read_bytes() == data


async def test_json_events_on_stderr_and_clean_stdout(big: tuple[DagStore, str, bytes]) -> None:
    import json

    store, cid, data = big
    async with fault_gateway(store) as gw:
        code, out, err = await run_cli("cat", "--json", "-g", gw.url, cid)
    assert code == 0, err
    assert out == data
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert next(e["event"] for e in events) == "resolved"
    assert events[-1]["event"] == "done" and events[-1]["size"] == SIZE


#: 150 fetches, each cut short by a deadline at a random moment; argv: GATEWAY CID
CANCEL_SCRIPT = """
import os, random, sys, tempfile, trio
from carget.fetcher import FetchOptions
from carget.fetcher.get import run_get
async def main():
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as d:
        for i in range(150):
            with trio.move_on_after(rng.uniform(0, 0.03)):
                await run_get(sys.argv[2], os.path.join(d, f"o{i}"),
                              FetchOptions([sys.argv[1]], idle_timeout=1.0))
trio.run(main)
print("ok")
"""


async def test_fetches_cancelled_at_any_moment_end_promptly(
        big: tuple[DagStore, str, bytes]) -> None:
    # a fetch cut short at any point (before, during or after its stages start) ends at
    # once: no stage is left waiting for another that never ran. In a child process, so
    # that such a hang (in threads no cancellation reaches) fails the test, not the run
    import sys

    store, cid, _ = big
    slow = Fault("drip", only_scope="entity", drip_size=8192, drip_delay=0.001)
    async with fault_gateway(store, slow) as gw:
        try:
            with trio.fail_after(60):
                done = await trio.run_process([sys.executable, "-c", CANCEL_SCRIPT, gw.url, cid],
                                              capture_stdout=True, check=False)
        except trio.TooSlowError:
            pytest.fail("a cancelled fetch hung")
    assert done.returncode == 0 and done.stdout.strip() == b"ok", done
