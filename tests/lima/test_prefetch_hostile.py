"""``carget lima prefetch`` with templates that cannot be right (issue 12): a ``cid:`` that
names a directory, and one location given two digests. Against a real ``carget serve`` and
a static HTTP server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from limafixtures import Site, StaticServer, run_cli, sha256, tree

from carget.add import add_bytes
from carget.lima.cache import cache_key
from carget.server.testing import running_gateway
from carget.tree import add_paths
from carget.unixfs.options import resolve_options

MIRROR = "https://mirror.invalid"  # never contacted: entries with a cid come by IPFS
DEAD = "http://127.0.0.1:9"  # nothing listens there: any download attempt fails
IMG = "releases/20250101/test-cloudimg-arm64.img"
ARCHIVE = "nerdctl/nerdctl-full-9.9.9-linux-amd64.tar.gz"


def cid_of(data: bytes) -> str:
    return str(add_bytes(data, resolve_options(cid_version=1)).cid)


def dir_cid(path: Path) -> str:
    return str(add_paths([str(path)], resolve_options(cid_version=1), jobs=1)[0])


@pytest.fixture
def gateway(site: Site) -> Iterator[str]:
    with running_gateway([site.root], cid_version=1) as url:
        yield url


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(text, newline="")
    return path


def entries_of(cache: Path) -> dict[str, dict[str, bytes]]:
    by_url = cache / "download" / "by-url-sha256"
    return {d.name: {f.name: f.read_bytes() for f in d.iterdir()} for d in by_url.iterdir()}


def image(location: str, *, cid: str | None = None, digest: str | None = None) -> str:
    lines = [f"- location: {location}", "  arch: x86_64"]
    if digest is not None:
        lines.append(f"  digest: {digest}")
    if cid is not None:
        lines.append(f"  cid: {cid}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("with_digest", [False, True])
def test_a_directory_cid_fails_its_entry_and_the_others_are_fetched(
    site: Site, gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    with_digest: bool,
) -> None:
    """Lima images and archives are files: a ``cid:`` naming a directory is refused for
    that entry (exit 2, as ``get --digest`` of a directory), before its tree is written;
    the entries before and after it are fetched as usual."""
    releases = dir_cid(site.root / "releases")
    bad = f"{MIRROR}/bad.img"
    text = "images:\n" + image(f"{MIRROR}/{IMG}", cid=cid_of(site.data[IMG]),
                               digest=sha256(site.data[IMG]))
    text += image(bad, cid=releases,
                  digest=sha256(b"anything") if with_digest else None)
    text += image(f"{MIRROR}/{ARCHIVE}", cid=cid_of(site.data[ARCHIVE]))
    path = write(tmp_path, text)
    cache = tmp_path / "lima"
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(cache), "--gateway", gateway], capsys)
    assert code == 2, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert f"images[1] (bad.img): {releases} is a directory" in err
    assert "lima images and archives are files" in err
    got = entries_of(cache)
    assert sorted(got) == sorted([cache_key(f"{MIRROR}/{IMG}"), cache_key(f"{MIRROR}/{ARCHIVE}")])
    assert got[cache_key(f"{MIRROR}/{IMG}")]["data"] == site.data[IMG]
    assert got[cache_key(f"{MIRROR}/{ARCHIVE}")]["data"] == site.data[ARCHIVE]
    # nothing of the directory was kept: no staging, no entry, no file of its tree
    assert os.listdir(cache / "download") == ["by-url-sha256"]
    assert not any(p.name == "vmlinuz-amd64" for p in cache.rglob("*"))


def test_one_location_with_two_digests_is_refused_before_any_fetch(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loc = f"{MIRROR}/{IMG}"
    right, wrong = sha256(site.data[IMG]), "sha256:" + "ab" * 32
    text = "images:\n" + image(loc, cid=cid_of(site.data[IMG]), digest=right)
    text += image(f"{MIRROR}/{ARCHIVE}", cid=cid_of(site.data[ARCHIVE]))
    text += image(loc, cid=cid_of(site.data[IMG]), digest=wrong)
    path = write(tmp_path, text)
    cache = tmp_path / "lima"
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(cache), "--gateway", DEAD], capsys)
    assert code == 1, err
    assert loc in err and right in err and wrong in err
    assert "images[0]" in err and "images[2]" in err
    assert tree(cache) == {}


def test_two_digests_for_one_location_are_refused_across_arches(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A location is one file whatever the arch that names it."""
    loc = f"{MIRROR}/{IMG}"
    text = ("images:\n" + image(loc, digest=sha256(site.data[IMG]))
            + image(loc, digest="sha256:" + "cd" * 32).replace("x86_64", "aarch64"))
    path = write(tmp_path, text)
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(tmp_path / "lima"), "--gateway", DEAD], capsys)
    assert code == 1, err
    assert "two digests" in err and loc in err


def test_the_digest_of_a_later_entry_for_the_same_location_is_checked(
    site: Site, gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first entry has no digest, the second (same location) a wrong one: the file
    is fetched once, checked against the second's digest, and refused."""
    loc = f"{MIRROR}/{IMG}"
    wrong = "sha256:" + "ef" * 32
    text = ("images:\n" + image(loc, cid=cid_of(site.data[IMG]))
            + image(loc, digest=wrong))
    path = write(tmp_path, text)
    cache = tmp_path / "lima"
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(cache), "--gateway", gateway], capsys)
    assert code == 5, err
    assert wrong in err
    assert entries_of(cache) == {}


def test_one_location_with_one_digest_is_fetched_once(
    site: Site, static_server: StaticServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = static_server.base
    loc = f"{base}/{IMG}"
    digest = sha256(site.data[IMG])
    text = "images:\n" + image(loc, digest=digest) + image(loc, digest=digest)
    text += image(loc)  # no digest: the same file, checked by the others' digest
    path = write(tmp_path, text)
    cache = tmp_path / "lima"
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(cache), "--gateway", DEAD, "--fallback"],
                           capsys)
    assert code == 0, err
    assert static_server.counts == {f"/{IMG}": 1}
    got = entries_of(cache)
    assert got == {cache_key(loc): {"url": loc.encode(), "data": site.data[IMG],
                                    "sha256.digest": digest.encode()}}
    assert err.count("same location as images[0]") == 2
