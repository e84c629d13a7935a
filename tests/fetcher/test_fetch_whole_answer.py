"""Gateways that ignore ``dag-scope`` and ``entity-bytes`` (a static server in front of
ready-made CARs, or a gateway older than those parameters): the race's answer for the root
block goes on with the whole file, and carget keeps it as the file's stream instead of
opening more, so the gateway sends the CAR once.

The byte counts are the fault gateway's own (``Logged.sent``: body bytes it wrote).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway
from fetchhelp import ByteSink, content

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID
from carget.fetcher import FetchOptions
from carget.fetcher.cat import run_cat
from carget.fetcher.get import run_get
from carget.fetcher.verifier import DagVerifier, FileData, Scope
from carget.unixfs.node import decode_unixfs

SIZE = 6 * 1024 * 1024 + 12345  # 25 leaves of 256 KiB (a parent above them)


def car_bytes(store: DagStore, root: CID) -> int:
    """The size of the whole DAG's CAR (what a static server holds)."""
    blocks = store.select(root, [], "all", None, True)
    return len(encode_header([root])) + sum(
        len(section_prefix(b.cid, len(b.data))) + len(b.data) for b in blocks)


@pytest.mark.parametrize("kind", ["static", "ignore_scope"])
@pytest.mark.parametrize("streams", [1, 2])
async def test_one_answer_carries_the_file(store: DagStore, tmp_path: Path, kind: str,
                                           streams: int) -> None:
    data = content(SIZE, seed=11)
    cid = store.add_bytes(data, cid_version=1)
    out = tmp_path / "out"
    events: list[dict[str, object]] = []
    with trio.fail_after(30):
        async with fault_gateway(store, Fault(kind)) as gw:
            await run_get(str(cid), str(out), FetchOptions(
                [gw.url], streams_per_gateway=streams, unit_bytes=1 << 20,
                progress=events.append))
    assert out.read_bytes() == data
    cars = [e for e in gw.log if e.path.startswith("/ipfs/")]
    assert len(cars) == 1, [(e.query, e.sent) for e in cars]  # the race's answer, kept
    assert sum(e.sent for e in cars) <= 1.15 * car_bytes(store, cid)
    assert any(e["event"] == "whole-answer" for e in events)


async def test_beside_an_honest_gateway(store: DagStore, tmp_path: Path) -> None:
    """A static server and an honest gateway: whichever wins the race, the file is
    right and the static server sends its CAR at most once."""
    data = content(SIZE, seed=12)
    cid = store.add_bytes(data, cid_version=1)
    out = tmp_path / "out"
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("static")) as static, \
                fault_gateway(store) as honest:
            await run_get(str(cid), str(out), FetchOptions(
                [static.url, honest.url], streams_per_gateway=2, unit_bytes=1 << 20))
    assert out.read_bytes() == data
    assert sum(e.sent for e in static.log) <= 1.15 * car_bytes(store, cid)


async def test_a_losing_answer_that_goes_on_marks_its_gateway(store: DagStore,
                                                              tmp_path: Path) -> None:
    """The honest gateway wins the race while the static server's answer is streaming
    (its root block in, the rest just behind): the loser is read on long enough to show
    that it ignores the query, so it is not asked for the file again (each request would
    cost it the CAR from the start)."""
    data = content(SIZE, seed=14)
    cid = store.add_bytes(data, cid_version=1)
    out = tmp_path / "out"
    static_began = trio.Event()
    honest_done = trio.Event()
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("static")) as static, \
                fault_gateway(store) as honest:
            real_static, real_honest = static.send_body_piece, honest.respond

            async def static_piece(stream, entry, piece):  # type: ignore[no-untyped-def]
                if entry.sent > 0 and len(static.log) == 1:  # after its root block...
                    static_began.set()
                    await honest_done.wait()  # ...the rest once the race is decided
                    await trio.sleep(0.05)
                await real_static(stream, entry, piece)

            async def honest_respond(stream, entry, headers):  # type: ignore[no-untyped-def]
                if len(honest.log) == 1:
                    await static_began.wait()
                    await trio.sleep(0.05)  # the static answer's first bytes are read
                await real_honest(stream, entry, headers)
                honest_done.set()

            static.send_body_piece = static_piece  # type: ignore[method-assign]
            honest.respond = honest_respond  # type: ignore[method-assign]
            await run_get(str(cid), str(out), FetchOptions(
                [static.url, honest.url], streams_per_gateway=2, unit_bytes=1 << 20))
    assert out.read_bytes() == data
    assert honest.log[0].complete and not static.log[0].complete  # honest won
    assert len(static.log) == 1, [(e.query, e.sent) for e in static.log]


async def test_a_losing_answer_that_has_answered_is_read_on(store: DagStore,
                                                            tmp_path: Path) -> None:
    """The static server's head is in when the honest gateway wins the race, its first
    block not yet (a loaded machine: the verifying thread is behind, or the server is):
    its answer is read on for the grace too, shows that it ignores the query, and the
    static server is not asked for the file again (each request would cost it the CAR
    from the start)."""
    data = content(SIZE, seed=15)
    cid = store.add_bytes(data, cid_version=1)
    out = tmp_path / "out"
    static_head = trio.Event()
    honest_done = trio.Event()
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("static")) as static, \
                fault_gateway(store) as honest:
            real_head, real_piece, real_honest = (static.send_head, static.send_body_piece,
                                                  honest.respond)

            async def head(stream, entry, status, headers):  # type: ignore[no-untyped-def]
                await real_head(stream, entry, status, headers)
                static_head.set()

            async def piece(stream, entry, data):  # type: ignore[no-untyped-def]
                if entry.sent == 0 and len(static.log) == 1:  # no byte of its body...
                    await honest_done.wait()  # ...until the race is decided
                    await trio.sleep(0.05)
                await real_piece(stream, entry, data)

            async def honest_respond(stream, entry, headers):  # type: ignore[no-untyped-def]
                if len(honest.log) == 1:
                    await static_head.wait()
                    await trio.sleep(0.05)  # the static answer's head is read
                await real_honest(stream, entry, headers)
                honest_done.set()

            static.send_head = head  # type: ignore[method-assign]
            static.send_body_piece = piece  # type: ignore[method-assign]
            honest.respond = honest_respond  # type: ignore[method-assign]
            await run_get(str(cid), str(out), FetchOptions(
                [static.url, honest.url], streams_per_gateway=2, unit_bytes=1 << 20))
    assert out.read_bytes() == data
    assert honest.log[0].complete and not static.log[0].complete  # honest won
    assert len(static.log) == 1, [(e.query, e.sent) for e in static.log]


async def test_kept_answer_cut_short_is_finished_by_the_next_request(
        store: DagStore, tmp_path: Path) -> None:
    """The kept answer breaks mid-file: what it brought stays, the rest comes from a
    further request (here the same gateway, honest the second time)."""
    data = content(SIZE, seed=13)
    cid = store.add_bytes(data, cid_version=1)
    out = tmp_path / "out"
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("cut_mid", at=12, times=1)) as gw:
            gw.fault.kind = "cut_mid"
            real = gw.respond

            async def respond(stream, entry, headers):  # type: ignore[no-untyped-def]
                # the first answer is the whole DAG (ignoring the block scope), cut
                if gw.car_requests == 0:
                    entry.query["dag-scope"] = "all"
                    entry.query.pop("entity-bytes", None)
                await real(stream, entry, headers)

            gw.respond = respond  # type: ignore[method-assign]
            await run_get(str(cid), str(out), FetchOptions(
                [gw.url], streams_per_gateway=1, unit_bytes=1 << 20, idle_timeout=5))
    assert out.read_bytes() == data
    _, *rest = [e for e in gw.log if e.path.startswith("/ipfs/")]
    assert rest and "entity-bytes" in rest[0].query
    assert int(rest[0].query["entity-bytes"].split(":")[0]) > 0  # not from the start


async def test_cat_from_a_static_server(store: DagStore) -> None:
    data = content(SIZE, seed=14)
    cid = store.add_bytes(data, cid_version=1)

    sink = ByteSink()
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("static")) as gw:
            await run_cat(str(cid), FetchOptions([gw.url], unit_bytes=1 << 20), sink)
    assert bytes(sink.buf) == data
    cars = [e for e in gw.log if e.path.startswith("/ipfs/")]
    assert len(cars) == 1  # the race's answer went on to stdout
    assert sum(e.sent for e in cars) <= 1.15 * car_bytes(store, cid)


# --- the verifier's part -----------------------------------------------------------------

def _car(store: DagStore, root: CID, order: str = "dfs") -> bytes:
    blocks = store.select(root, [], "all", None, True)
    if order == "leaves-first":
        blocks = blocks[1:] + blocks[:1]
    return encode_header([root]) + b"".join(
        section_prefix(b.cid, len(b.data)) + bytes(b.data) for b in blocks)


def test_block_answer_that_goes_on_is_extended(store: DagStore) -> None:
    data = content(SIZE, seed=15)
    cid = store.add_bytes(data, cid_version=1)
    v = DagVerifier(cid, scope=Scope.BLOCK)
    car = _car(store, cid)
    v.feed(car[:300_000])
    assert v.done
    assert v.beyond() is True  # the root's first leaf follows the root
    got = bytearray(SIZE)
    events = v.extend(SIZE, 0) + v.feed(car[300_000:]) + v.feed_eof()
    for ev in events:
        if isinstance(ev, FileData):
            got[ev.offset:ev.offset + len(ev.data)] = ev.data
    assert v.done and bytes(got) == data


def test_honest_block_answer_is_not_beyond(store: DagStore) -> None:
    cid = store.add_bytes(content(SIZE, seed=16), cid_version=1)
    root_block = store.blocks[cid]
    v = DagVerifier(cid, scope=Scope.BLOCK)
    v.feed(encode_header([cid]) + section_prefix(cid, len(root_block)) + root_block)
    assert v.done
    assert v.beyond() is None  # nothing more yet
    v.feed_eof()
    assert v.beyond() is False


def test_order_unknown_set_after_construction_takes_the_larger_buffer(
        store: DagStore) -> None:
    """``ordered`` is set from the answer's Content-Type after the verifier is made: a
    CAR without ``order=dfs`` (a ready-made CAR with its root last) gets the unordered
    buffer, not the 4 MiB one."""
    data = content(SIZE, seed=17)
    cid = store.add_bytes(data, cid_version=1)
    v = DagVerifier(cid, scope=Scope.ENTITY)
    v.ordered = False
    n = sum(len(e.data) for e in v.feed(_car(store, cid, "leaves-first")) + v.feed_eof()
            if isinstance(e, FileData))
    assert n == SIZE



def test_the_look_ahead_wait_answers_cancellation() -> None:
    """The look-ahead's timed wait (a race's loser waits there for the block after its
    range) stops within STOP_POLL once its stream is cancelled, as every wait of the
    worker threads does, not after LOOK_AHEAD: a cancelled race waited on it."""
    import threading
    import time

    import pytest

    from carget.fetcher.channel import Channel, Stopped
    from carget.fetcher.http import STOP_POLL

    stop = threading.Event()
    chan: Channel[object] = Channel(1, stop)
    threading.Timer(0.05, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(Stopped):
        chan.get_within(10.0)
    assert time.monotonic() - t0 < 0.05 + 2 * STOP_POLL


async def test_entity_bytes_ignored_one_answer_takes_the_ranges_after_it(
        store: DagStore, tmp_path: Path) -> None:
    """A gateway that answers dag-scope=block honestly but ignores entity-bytes: its
    first range's answer goes on past the range, and takes over the queued ranges that
    follow, one after another, instead of each being asked for (each answer would start
    from the file's first byte again)."""
    data = content(SIZE, seed=19)
    cid = store.add_bytes(data, cid_version=1)
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("ignore_scope", only_scope="entity")) as gw:
            # --digest hands out unit-sized ranges in file order: seven of them here
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            await run_get(str(cid), str(tmp_path / "out"), FetchOptions(
                [gw.url], streams_per_gateway=1, unit_bytes=1 << 20, digest=digest))
    assert (tmp_path / "out").read_bytes() == data
    ranges = [e for e in gw.log if e.query.get("dag-scope") == "entity"]
    assert len(ranges) == 1
    assert sum(e.sent for e in ranges) <= 1.15 * car_bytes(store, cid)


def test_extend_returns_what_the_looked_ahead_block_completes(store: DagStore) -> None:
    """When the looked-ahead block alone completes the new range (the file's last leaf),
    extend() still returns its bytes."""
    data = content(SIZE, seed=20)
    cid = store.add_bytes(data, cid_version=1)
    last = SIZE - SIZE % (256 << 10)
    v = DagVerifier(cid, scope=Scope.ENTITY, byte_range=(0, last))
    car = _car(store, cid)
    n = sum(len(e.data) for e in v.feed(car) if isinstance(e, FileData))
    assert v.done and n == last
    assert v.beyond() is True
    tail = v.extend(SIZE)
    assert [(e.offset, len(e.data)) for e in tail if isinstance(e, FileData)] == \
        [(last, SIZE - last)]


def test_a_stopped_channel_wakes_its_waiter_at_once() -> None:
    """Cancelling a stream wakes its threads' channel waits at once (a race's cancelled
    loser held the race's end for up to STOP_POLL, 0.2 s, in a third of the runs)."""
    import threading
    import time

    import pytest

    from carget.fetcher.channel import Channel, Stopped

    stop = threading.Event()
    chan: Channel[object] = Channel(1, stop)
    woke: list[float] = []

    def waiter() -> None:
        with pytest.raises(Stopped):
            chan.get()
        woke.append(time.monotonic())

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    stop.set()
    at = time.monotonic()
    chan.wake()
    t.join(5)
    assert woke and woke[0] - at < 0.1


async def test_a_static_server_sends_a_sharded_tree_once(store: DagStore,
                                                         tmp_path: Path) -> None:
    """A tree holding a HAMT directory, from a static server: the race's answer carries
    the whole tree and is kept; the output cannot tell a sharded directory's listing
    complete from what it placed, so the answer's end says it is (not asked again)."""
    from carget.tree import add_paths
    from carget.unixfs.options import resolve_options

    src = tmp_path / "src"
    (src / "many").mkdir(parents=True)
    files = {f"entry-{i:03}": content(3000 + i, seed=i) for i in range(60)}
    for name, data in files.items():
        (src / "many" / name).write_bytes(data)
    root = add_paths([str(src)], resolve_options(cid_version=1, max_directory_links=8,
                                                 max_hamt_fanout=8), jobs=1,
                     emit=lambda b: store.blocks.__setitem__(b.cid, bytes(b.data)))[0]
    many = decode_unixfs(root, store.blocks[root]).links[0].cid
    assert decode_unixfs(many, store.blocks[many]).kind == "hamt"
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("static")) as gw:
            await run_get(str(root), str(tmp_path / "tree"),
                          FetchOptions([gw.url], idle_timeout=5))
    got = tmp_path / "tree" / "many"
    assert {p.name: p.read_bytes() for p in got.iterdir()} == files
    cars = [e for e in gw.log if e.path.startswith("/ipfs/")]
    assert len(cars) == 1, [(e.query, e.sent) for e in cars]


@pytest.mark.parametrize("cut", [False, True])
async def test_a_static_server_sends_a_tree_once(store: DagStore, tmp_path: Path,
                                                 cut: bool) -> None:
    """A directory tree from a static server: the race's answer for the root block goes
    on with the whole tree, and carget keeps it for the tree instead of asking for it
    again (``dag-scope=all``). Cut short, only what it did not bring is asked for next."""
    from test_fetch_tree_failover import make_tree, store_tree

    files = make_tree(tmp_path / "src")
    root = store_tree(store, tmp_path / "src")
    events: list[dict[str, object]] = []
    fault = Fault("static") if not cut else Fault("cut_mid", at=14, times=1)
    with trio.fail_after(30):
        async with fault_gateway(store, fault) as gw:
            if cut:
                real = gw.respond

                async def respond(stream, entry, headers):  # type: ignore[no-untyped-def]
                    # the first answer is the whole DAG (ignoring the block scope), cut
                    # inside m/b.bin; the next ones are honest
                    if gw.car_requests == 0:
                        entry.query["dag-scope"] = "all"
                    await real(stream, entry, headers)

                gw.respond = respond  # type: ignore[method-assign]
            await run_get(str(root), str(tmp_path / "tree"),
                          FetchOptions([gw.url], idle_timeout=5, progress=events.append))
    for rel, data in files.items():
        assert (tmp_path / "tree" / rel).read_bytes() == data
    assert (tmp_path / "tree" / "m" / "link").readlink() == Path("c.txt")
    cars = [e for e in gw.log if e.path.startswith("/ipfs/")]
    assert any(e["event"] == "whole-answer" for e in events)
    if not cut:
        assert len(cars) == 1, [(e.query, e.sent) for e in cars]  # the race's answer, kept
        assert sum(e.sent for e in cars) <= 1.15 * car_bytes(store, root)
    else:
        # the rest: a.bin and what came before the cut are not asked for again
        rest = [e.path for e in cars[1:]]
        assert rest and not any(p.endswith("/a.bin") for p in rest), rest
        assert all(e.path != f"/ipfs/{root}" for e in cars[1:]), rest


async def test_a_kept_tree_answer_that_proves_the_tree_unsafe_ends_the_run(
        store: DagStore, tmp_path: Path) -> None:
    """The content's own fault found in the kept answer (a name twice in a directory)
    ends the run there: every gateway would send the same tree, so none is asked again."""
    from carget.errors import UnsafePathError
    from hostiledag import Dag

    dag = Dag()
    root = dag.directory([("a", dag.file(b"one")), ("a", dag.file(b"two"))])
    store.blocks.update(dag.blocks)
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("static")) as gw:
            with pytest.raises(UnsafePathError, match="twice"):
                await run_get(str(root), str(tmp_path / "tree"), FetchOptions([gw.url]))
    assert len(gw.log) == 1, [(e.query, e.sent) for e in gw.log]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tree")] == []


async def test_a_static_server_that_holds_only_the_roots_car_finishes_a_cut_tree(
        store: DagStore, tmp_path: Path) -> None:
    """A static server of ready-made CARs answers only for the CID it holds a CAR for
    (404 for any subtree) and always with the whole CAR. Its first answer is cut inside
    the tree, after a file larger than the discard bound: the rest comes from the whole
    CAR again, what is in place skipped as it streams past."""
    from test_fetch_tree_failover import make_tree, store_tree

    files = make_tree(tmp_path / "src")
    big = content(40 << 20, seed=21)  # first in DFS order, and past DISCARD_LIMIT
    (tmp_path / "src" / "A-big.bin").write_bytes(big)
    files["A-big.bin"] = big
    root = store_tree(store, tmp_path / "src")
    # cut inside a.bin's first leaf, right after the whole of A-big.bin
    a_bin = next(link.cid for link in decode_unixfs(root, store.blocks[root]).links
                 if link.name == "a.bin")
    order = [b.cid for b in store.select(root, [], "all", None, True)]
    cut = order.index(a_bin) + 1
    assert cut > 2500
    with trio.fail_after(60):
        async with fault_gateway(store, Fault("cut_mid", at=cut, times=1)) as gw:
            real = gw.respond

            async def respond(stream, entry, headers):  # type: ignore[no-untyped-def]
                if entry.path != f"/ipfs/{root}":
                    await gw.simple(stream, entry, 404, b"no such CAR")
                    return
                entry.query["dag-scope"] = "all"  # the whole CAR, whatever was asked
                entry.query.pop("entity-bytes", None)
                await real(stream, entry, headers)

            gw.respond = respond  # type: ignore[method-assign]
            await run_get(str(root), str(tmp_path / "tree"),
                          FetchOptions([gw.url], idle_timeout=5))
    for rel, data in files.items():
        assert (tmp_path / "tree" / rel).read_bytes() == data
    assert (tmp_path / "tree" / "m" / "link").readlink() == Path("c.txt")
    whole = [e for e in gw.log if e.path == f"/ipfs/{root}"]
    assert len(whole) == 2, [(e.path, e.query, e.status) for e in gw.log]  # cut, then whole
    assert len(gw.log) <= 3  # and at most one question it could not answer


def test_a_whole_answer_skips_what_is_in_place(store: DagStore, tmp_path: Path) -> None:
    """``have``: entities already in place are not wanted; their blocks stream past as
    outside the answer, and the answer is complete without them."""
    from test_fetch_tree_failover import make_tree, store_tree

    make_tree(tmp_path / "src")
    root = store_tree(store, tmp_path / "src")
    links = {link.name: link.cid for link in decode_unixfs(root, store.blocks[root]).links}
    blocks = store.select(root, [], "all", None, True)
    car = encode_header([root]) + b"".join(
        section_prefix(b.cid, len(b.data)) + bytes(b.data) for b in blocks)
    v = DagVerifier(root, scope=Scope.ALL, have={("a.bin", links["a.bin"]),
                                                 ("m", links["m"])})
    events = v.feed(car) + v.feed_eof()
    written = {e.path for e in events if isinstance(e, FileData)}
    assert written == {"z.bin"}
    assert v.done
