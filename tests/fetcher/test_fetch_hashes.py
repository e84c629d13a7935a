"""Every hash ``carget add --hash`` makes is verified wherever blocks are checked: a CAR
written with it passes ``car verify --dag`` and is served and fetched (``get``, ``cat``),
and one flipped bit is refused by ``car verify``, by the server's CAR index and by the
fetcher (exit 4, nothing written), all as whole processes over loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from dagstore import DagStore
from faultgw import Fault, fault_gateway
from fetchhelp import content, run_cli

from carget.car import decode_car
from carget.cid import CID
from carget.errors import HashMismatch
from carget.server.store import BlockStore
from carget.server.testing import running_gateway

#: what kubo 0.43.1 takes beyond sha2-256 (the BLAKE2b run by its two ends)
HASHES = ["sha1", "sha2-512", "sha3-224", "sha3-256", "sha3-384", "sha3-512", "shake-256",
          "keccak-256", "keccak-512", "blake3", "dbl-sha2-256", "blake2b-160", "blake2b-256",
          "blake2b-512", "blake2s-256"]
SIZE = 150_000


@pytest.mark.parametrize("name", HASHES)
async def test_car_with_each_hash_verifies_serves_and_fetches(tmp_path: Path, name: str) -> None:
    data = content(SIZE, seed=len(name))
    (tmp_path / "src.bin").write_bytes(data)
    code, out, err = await run_cli("add", "-Q", f"--hash={name}", "--raw-leaves=false",
                                   "--chunker=size-65536", "--car", "a.car", "src.bin")
    assert code == 0, err
    root = out.decode().strip()
    header, blocks = decode_car((tmp_path / "a.car").read_bytes())
    assert [str(c) for c in header.roots] == [root] and len(blocks) == 4
    assert {CID.parse(root).hash_code} == {b.cid.hash_code for b in blocks}
    code, _, err = await run_cli("car", "verify", "--dag", "a.car")
    assert code == 0, err

    with running_gateway([str(tmp_path / "a.car")]) as url:
        code, _, err = await run_cli("get", "-g", url, root, "-o", "got.bin")
        assert code == 0, err
        assert (tmp_path / "got.bin").read_bytes() == data
        code, out, err = await run_cli("cat", "-g", url, f"/ipfs/{root}")
        assert (code, out) == (0, data), err

    bad = bytearray((tmp_path / "a.car").read_bytes())
    bad[-1] ^= 1  # the last byte of the last block
    (tmp_path / "bad.car").write_bytes(bytes(bad))
    code, _, err = await run_cli("car", "verify", "bad.car")
    assert code == 4 and "does not match" in err
    with pytest.raises(HashMismatch):
        BlockStore().add_car(str(tmp_path / "bad.car"))

    store = DagStore()
    store.add_car(tmp_path / "a.car")
    with trio.fail_after(30):
        async with fault_gateway(store, Fault("flip", at=1)) as liar:
            code, _, err = await run_cli("get", "-g", liar.url, root, "-o", "lied.bin",
                                         "--idle-timeout", "2")
    assert code == 4, err
    assert not (tmp_path / "lied.bin").exists()
