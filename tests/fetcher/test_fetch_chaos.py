"""Randomized faults against get and cat with several gateways and streams: every run
ends promptly with either the exact bytes or a carget error (and never unverified bytes
in place); with an honest gateway among them, it succeeds.

The runs happen in a child process, so that a hang in worker threads (which no trio
cancellation reaches) fails this test instead of stalling the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

HERE = Path(__file__).resolve().parent

#: argv: TESTS_DIR SEED RUNS. Prints one line per run, then "ok".
CHAOS = r"""
import hashlib, io, os, random, shutil, sys, tempfile
sys.path[:0] = [sys.argv[1], os.path.dirname(sys.argv[1])]  # tests/fetcher, tests
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway
from fetchhelp import content
from carget.errors import CargetError
from carget.fetcher import FetchOptions
from carget.fetcher.cat import run_cat
from carget.fetcher.get import run_get

# (fault, honest?): an honest gateway is one whose faults a client must tolerate
KINDS = [("none", True), ("drip", True), ("cut_boundary", False), ("cut_mid", False),
         ("flip", False), ("substitute", False), ("stall", False), ("status", False),
         ("ignore_scope", True), ("never_end", True), ("content_type", False)]

async def one(rng, store, cid, data, tmp):
    n = rng.randint(1, 3)
    picks = [rng.choice(KINDS) for _ in range(n)]
    faults = []
    for kind, _ in picks:
        f = Fault(kind, at=rng.randint(0, 12), only_scope=rng.choice([None, "entity"]),
                  times=rng.choice([None, 1, 2]), drip_size=rng.choice([4096, 65536]),
                  drip_delay=0.001, status=rng.choice([500, 429]), retry_after="0")
        faults.append(f)
    honest = any(ok for _, ok in picks)  # one gateway whose faults a client tolerates
    op = rng.choice(["get", "cat", "tree"])
    opts = FetchOptions([], idle_timeout=0.3, timeout=20,
                        streams_per_gateway=rng.randint(1, 3),
                        unit_bytes=rng.choice([16384, 65536, 1 << 20]))
    async with trio.open_nursery() as nursery:
        gws = []
        for f in faults:
            cm = fault_gateway(store, f)
            gws.append(await nursery.start(_hold, cm))
        opts.gateways = [g.url for g in gws]
        out = os.path.join(tmp, "out.bin")
        outcome = "ok"
        try:
            if op == "tree":
                await run_get(TREE[0], out, opts)
                for rel, want in TREE[1].items():
                    with open(os.path.join(out, rel), "rb") as f:
                        assert f.read() == want, f"tree: {rel} has wrong bytes"
                shutil.rmtree(out)
            elif op == "get":
                await run_get(cid, out, opts)
                assert open(out, "rb").read() == data, "get wrote wrong bytes"
            else:
                buf = io.BytesIO()
                try:
                    await run_cat(cid, opts, buf)
                    assert buf.getvalue() == data, "cat wrote wrong bytes"
                finally:
                    assert data.startswith(buf.getvalue()), "cat wrote unverified bytes"
        except CargetError as exc:
            outcome = type(exc).__name__
            assert not honest, f"failed with an honest gateway: {exc!r}"
            if op != "cat":
                assert not os.path.exists(out), "a failed get left its output"
        nursery.cancel_scope.cancel()
    for name in os.listdir(tmp):  # a kept partial (network errors) must not leak on
        assert not name.startswith(".carget-"), "a failed tree get left a temporary"
        if outcome == "ok" or not ("Network" in outcome or "Timeout" in outcome):
            assert not name.endswith((".carget-partial", ".carget-journal")), (
                f"{name} left after {outcome}")
        full = os.path.join(tmp, name)
        shutil.rmtree(full) if os.path.isdir(full) else os.unlink(full)
    return f"{op} {[k for k, _ in picks]} -> {outcome}"

def make_tree(store, rng):
    # a small tree (files, a subdirectory, an empty file) imported into the store
    from carget.tree import add_paths
    from carget.unixfs.options import resolve_options
    files = {"a.bin": content(70_000, seed=rng.randint(0, 99)), "d/b.bin":
             content(50_000, seed=rng.randint(0, 99)), "d/e/c.txt": b"c\n", "z": b""}
    with tempfile.TemporaryDirectory() as src:
        for rel, want in files.items():
            os.makedirs(os.path.dirname(os.path.join(src, "t", rel)), exist_ok=True)
            with open(os.path.join(src, "t", rel), "wb") as f:
                f.write(want)
        root = add_paths([os.path.join(src, "t")], resolve_options(
            cid_version=1, chunker="size-16384"), jobs=1,
            emit=lambda b: store.blocks.__setitem__(b.cid, bytes(b.data)))[0]
    return str(root), files

async def _hold(cm, task_status=trio.TASK_STATUS_IGNORED):
    async with cm as gw:
        task_status.started(gw)
        await trio.sleep_forever()

async def main():
    rng = random.Random(int(sys.argv[2]))
    store = DagStore()
    data = content(300_000, seed=rng.randint(0, 99))
    cid = str(store.add_bytes(data, cid_version=rng.choice([0, 1]), chunker="size-16384"))
    global TREE
    TREE = make_tree(store, rng)
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(int(sys.argv[3])):
            print(await one(rng, store, cid, data, tmp), flush=True)
    print("ok")

trio.run(main)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_faults_end_in_exact_bytes_or_a_carget_error(seed: int) -> None:
    try:
        with trio.fail_after(150):
            done = await trio.run_process([sys.executable, "-c", CHAOS, str(HERE), str(seed),
                                           "25"], capture_stdout=True, capture_stderr=True,
                                          check=False)
    except trio.TooSlowError:
        pytest.fail("a fetch under random faults hung")
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0 and lines[-1:] == ["ok"], (
        "\n".join(lines[-5:]) + "\n" + done.stderr.decode()[-3000:])
    outcomes = [line.rsplit("-> ", 1)[-1] for line in lines[:-1]]
    assert "ok" in outcomes  # some runs succeed (and some fail: the faults are real)
