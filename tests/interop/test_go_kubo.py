"""kubo v0.43.1 itself (built by tests/interop/build_peers.py): `ipfs add --only-hash` and
`carget add` print the same CIDs for edge-case sizes under each layout flag.

kubo runs only inside `unshare -n`, in a repository made for the test with kubo's `test`
profile (loopback addresses, no bootstrap peers, no mDNS, no NAT port mapping); the
fixture checks those settings before anything is added.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from gopeers import carget, isolated, known_difference, require

#: name -> size: empty, one byte, one default chunk exactly and one byte over, ~2 MiB
SIZES = {
    "empty": 0,
    "1B": 1,
    "256KiB": 262144,
    "256KiB+1": 262145,
    "2MiB+": 2 * 1024 * 1024 + 12345,
}

#: flag set -> (kubo's flags, carget's flags)
FLAGS = {
    "defaults": ([], []),
    "cid-v1": (["--cid-version=1"], ["--cid-version", "1"]),
    "raw-leaves": (["--raw-leaves"], ["--raw-leaves"]),
    "size-1024": (["--chunker=size-1024"], ["--chunker", "size-1024"]),
    "trickle": (["--trickle"], ["--trickle"]),
}

#: (flag set, size) -> why carget differs from kubo 0.43.1 (strict xfail; none known)
KNOWN: dict[tuple[str, str], str] = {}


def _parse(out: str) -> dict[str, str]:
    """``added <cid> <name>`` lines -> {name: cid}."""
    got = {}
    for line in out.splitlines():
        if line.startswith("added "):
            _, cid, name = line.split(" ", 2)
            got[name] = cid
    return got


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("kubo-files")
    rng = random.Random(4301)
    for name, size in SIZES.items():
        (d / name).write_bytes(rng.randbytes(size))
    return d


@pytest.fixture(scope="module")
def kubo_cids(files: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """{flag set: {file name: CID}} from one kubo repository, inside `unshare -n`."""
    ipfs = require("kubo")
    repo = tmp_path_factory.mktemp("kubo-repo") / "ipfs"
    paths = " ".join(f"'{files / n}'" for n in SIZES)
    script = ['"$IPFS" init --profile=test >/dev/null',
              'echo "== config"; "$IPFS" config show']
    for name, (kubo_flags, _) in FLAGS.items():
        script.append(f'echo "== {name}"; "$IPFS" add --only-hash {" ".join(kubo_flags)} {paths}')
    out = isolated("\n".join(script), env={"IPFS": str(ipfs), "IPFS_PATH": str(repo)}).stdout
    sections: dict[str, str] = {}
    for chunk in out.split("== ")[1:]:
        head, _, body = chunk.partition("\n")
        sections[head.strip()] = body
    config = json.loads(sections.pop("config"))
    assert config["Bootstrap"] == []
    assert config["Discovery"]["MDNS"]["Enabled"] is False
    assert config["Swarm"]["DisableNatPortMap"] is True
    for addr in [config["Addresses"]["API"], config["Addresses"]["Gateway"],
                 *config["Addresses"]["Swarm"]]:
        addrs = addr if isinstance(addr, list) else [addr]
        assert all(a.startswith("/ip4/127.0.0.1/") for a in addrs), addr
    cids = {name: _parse(body) for name, body in sections.items()}
    for name in FLAGS:
        assert set(cids[name]) == set(SIZES), (name, sections[name])
    return cids


@pytest.fixture(scope="module")
def carget_cids(files: Path) -> dict[str, dict[str, str]]:
    paths = [str(files / n) for n in SIZES]
    return {name: _parse(carget("add", *flags, *paths).stdout)
            for name, (_, flags) in FLAGS.items()}


CASES = [
    pytest.param(flags, size, id=f"{flags}-{size}",
                 marks=[known_difference(KNOWN[flags, size])]
                 if (flags, size) in KNOWN else [])
    for flags in FLAGS for size in SIZES
]


@pytest.mark.parametrize(("flags", "size"), CASES)
def test_add_matches_kubo(flags: str, size: str, kubo_cids: dict[str, dict[str, str]],
                          carget_cids: dict[str, dict[str, str]]) -> None:
    assert carget_cids[flags][size] == kubo_cids[flags][size], (
        f"ipfs add --only-hash {' '.join(FLAGS[flags][0])} on {SIZES[size]} bytes")


def test_kubo_is_the_pinned_version() -> None:
    out = isolated('"$IPFS" version', env={"IPFS": str(require("kubo"))}).stdout
    assert out.strip() == "ipfs version 0.43.1"
