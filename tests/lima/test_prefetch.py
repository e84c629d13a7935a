"""``carget lima prefetch`` against a real ``carget serve`` on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from limafixtures import FILES, Site, StaticServer, run_cli, sha256, tree

from carget.add import add_bytes
from carget.lima import template as tm
from carget.lima.cache import LimaCache, cache_key
from carget.lima.edit import Annotation, annotate_text
from carget.lima.prefetch import ProgressHooks, event_bytes, prefetch
from carget.lima.template import parse_template
from carget.server.testing import running_gateway
from carget.unixfs.options import resolve_options

MIRROR = "https://mirror.invalid"  # never contacted: entries with a cid come by IPFS
DEAD = "http://127.0.0.1:9"  # nothing listens there: any download attempt fails


def cid_of(data: bytes) -> str:
    return str(add_bytes(data, resolve_options(cid_version=1)).cid)


def annotated(site: Site, base: str, skip: tuple[str, ...] = ("images[3]",),
              **digests: str) -> str:
    """The test template with a cid after every digest (and none for ``skip``)."""
    t = parse_template(site.template(base, **digests))
    notes = [Annotation(e, cid_of(site.data[e.location[len(base) + 1:]]))
             for e in t.entries if e.where not in skip]
    return annotate_text(t, notes)


@pytest.fixture
def gateway(site: Site) -> Iterator[str]:
    # the whole tree as one directory: every file's blocks are in the store, so each file
    # can be fetched by its own CID
    with running_gateway([site.root], cid_version=1) as url:
        yield url


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(text, newline="")
    return path


def entries_of(cache: Path) -> dict[str, dict[str, bytes]]:
    by_url = cache / "download" / "by-url-sha256"
    return {d.name: {f.name: f.read_bytes() for f in d.iterdir()} for d in by_url.iterdir()}


AMD64 = [
    "releases/20250101/test-cloudimg-amd64.img",
    "releases/20250101/vmlinuz-amd64",
    "nerdctl/nerdctl-full-9.9.9-linux-amd64.tar.gz",
]


def test_prefetch_fills_limas_cache_then_downloads_nothing(
    site: Site, gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, annotated(site, MIRROR))
    cache = tmp_path / "lima"
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(cache), "--gateway", gateway], capsys)
    assert code == 0, err
    expected = {
        cache_key(f"{MIRROR}/{rel}"): {
            "url": f"{MIRROR}/{rel}".encode(),
            "data": site.data[rel],
            "sha256.digest": sha256(site.data[rel]).encode(),
        }
        for rel in AMD64
    }
    assert entries_of(cache) == expected  # exactly lima's layout and bytes, nothing else
    assert os.listdir(cache / "download") == ["by-url-sha256"]  # no staging left
    assert err.count("fetched") == 3
    assert "skipped: no cid" in err  # images[3], the moving "current" image
    assert "aarch64" not in err

    before = {p: os.stat(p) for p in cache.rglob("*") if p.is_file()}
    # second run: the only gateway is dead, so any download would fail the run
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(cache), "--gateway", DEAD], capsys)
    assert code == 0, err
    assert err.count("cached") == 3 and "fetched" not in err
    after = {p: os.stat(p) for p in cache.rglob("*") if p.is_file()}
    assert before.keys() == after.keys()
    assert all((before[p].st_ino, before[p].st_mtime_ns) == (after[p].st_ino, after[p].st_mtime_ns)
               for p in before)


def test_default_arch_is_this_machines(
    site: Site, gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tm.platform, "machine", lambda: "arm64")  # macOS's name for aarch64
    path = write(tmp_path, annotated(site, MIRROR))
    cache = tmp_path / "lima"
    code, _, err = run_cli(["lima", "prefetch", str(path), "--cache-dir", str(cache),
                            "--gateway", gateway], capsys)
    assert code == 0, err
    wanted = ["releases/20250101/test-cloudimg-arm64.img",
              "nerdctl/nerdctl-full-9.9.9-linux-arm64.tar.gz"]
    assert sorted(entries_of(cache)) == sorted(cache_key(f"{MIRROR}/{r}") for r in wanted)


def test_wrong_digest_fails_that_entry_with_exit_5(
    site: Site, gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "sha256:" + "ab" * 32
    path = write(tmp_path, annotated(site, MIRROR, digest_nerdctl_amd64=wrong))
    cache = tmp_path / "lima"
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(cache), "--gateway", gateway], capsys)
    assert code == 5
    assert "containerd.archives[0]" in err and wrong in err
    bad = cache_key(f"{MIRROR}/nerdctl/nerdctl-full-9.9.9-linux-amd64.tar.gz")
    got = entries_of(cache)
    assert bad not in got  # no cache entry for the failed one
    assert len(got) == 2  # the others were placed
    assert os.listdir(cache / "download") == ["by-url-sha256"]  # no leftovers


def test_fallback_downloads_from_location_with_digest_check(
    site: Site, static_server: StaticServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = static_server.base
    # the archive has no cid; the image and kernel have one, but the only gateway is dead
    path = write(tmp_path, annotated(site, base, skip=("images[3]", "containerd.archives[0]")))
    cache = tmp_path / "lima"
    args = ["lima", "prefetch", str(path), "--arch", "x86_64", "--cache-dir", str(cache),
            "--gateway", DEAD]
    code, _, err = run_cli(args, capsys)
    assert code == 6  # without --fallback: the cid entries fail on the dead gateway
    assert static_server.counts == {}
    assert entries_of(cache) == {}

    code, _, err = run_cli([*args, "--fallback"], capsys)
    assert code == 0, err
    got = entries_of(cache)
    for rel in AMD64:
        entry = got[cache_key(f"{base}/{rel}")]
        assert entry["data"] == site.data[rel]
        assert entry["sha256.digest"] == sha256(site.data[rel]).encode()
    assert "location" in err and "fallback" in err
    # the digest-less "current" image is never downloaded: nothing could check it
    assert "skipped: no cid, no digest" in err
    assert static_server.counts["/releases/current/test-cloudimg-amd64.img"] == 0


def test_fallback_with_wrong_digest_leaves_no_entry(
    site: Site, static_server: StaticServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = static_server.base
    wrong = "sha256:" + "cd" * 32
    # only the archive, with no cid and a wrong digest
    skip = ("images[0]", "images[0].kernel", "images[1]", "images[2]", "images[3]",
            "containerd.archives[0]")
    text = annotated(site, base, skip=skip, digest_nerdctl_amd64=wrong)
    path = write(tmp_path, text)
    cache = tmp_path / "lima"
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64", "--cache-dir",
                            str(cache), "--gateway", DEAD, "--fallback"], capsys)
    assert code == 5
    assert "containerd.archives[0]" in err and wrong in err
    assert cache_key(f"{base}/nerdctl/nerdctl-full-9.9.9-linux-amd64.tar.gz") not in \
        entries_of(cache)
    assert os.listdir(cache / "download") == ["by-url-sha256"]


@pytest.mark.parametrize(
    ("text", "args", "code", "needle"),
    [
        ("images: [\n", [], 1, "not valid YAML"),
        ("mounts: []\n", [], 1, "no images list"),
        ("images:\n- location: https://h/a.img\n", ["--arch", "m68k"], 2, "unknown arch 'm68k'"),
        ("images:\n- location: https://h/a.img\n  arch: x86_64\n- location: /srv/b.img\n"
         "  arch: x86_64\n", ["--arch", "x86_64"], 1,
         "images[1] (line 4): location '/srv/b.img' is not http(s)"),
        ("images:\n- location: file:///srv/b.img\n", ["--arch", "x86_64"], 1, "not http(s)"),
    ],
)
def test_bad_input_leaves_the_cache_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, args: list[str], code: int,
    needle: str,
) -> None:
    cache = tmp_path / "lima"
    (cache / "download" / "by-url-sha256" / "x").mkdir(parents=True)
    (cache / "download" / "by-url-sha256" / "x" / "data").write_bytes(b"old")
    before = tree(cache)
    path = write(tmp_path, text)
    got, _, err = run_cli(["lima", "prefetch", str(path), "--cache-dir", str(cache),
                           "--gateway", DEAD, *args], capsys)
    assert got == code
    assert needle in err
    assert tree(cache) == before
    assert sorted(p.name for p in (cache / "download").iterdir()) == ["by-url-sha256"]


def test_unwritable_cache_dir_is_an_error_before_any_fetch(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_bytes(b"x")
    path = write(tmp_path, annotated(site, MIRROR))
    code, _, err = run_cli(["lima", "prefetch", str(path), "--arch", "x86_64",
                            "--cache-dir", str(blocker), "--gateway", DEAD], capsys)
    assert code == 1
    assert "cache dir" in err and str(blocker) in err
    assert blocker.read_bytes() == b"x"


def test_a_failed_fetch_keeps_no_entry_and_next_run_completes(
    site: Site, gateway: str, tmp_path: Path
) -> None:
    """Library level: an entry already in the cache with another digest is replaced whole."""
    import trio

    text = annotated(site, MIRROR)
    t = parse_template(text)
    cache = LimaCache(tmp_path / "lima")
    rel = "releases/20250101/test-cloudimg-amd64.img"
    stale = cache.entry_dir(f"{MIRROR}/{rel}")
    stale.mkdir(parents=True)
    (stale / "data").write_bytes(b"stale")
    (stale / "sha256.digest").write_text("sha256:" + "0" * 64)
    seen: dict[str, list[tuple[int | None, int | None]]] = {}
    hooks = ProgressHooks(
        start=lambda e, total: seen.setdefault(e.where, []).append((None, total)),
        advance=lambda e, done, total: seen[e.where].append((done, total)),
        finish=lambda e: seen[e.where].append((-1, -1)),
    )
    outcomes = trio.run(lambda: prefetch(t, cache, arch="x86_64", gateways=[gateway],
                                         hooks=hooks))
    assert [o.result for o in outcomes] == ["fetched", "fetched", "skipped: no cid", "fetched"]
    assert (stale / "data").read_bytes() == site.data[rel]
    assert sorted(os.listdir(stale)) == ["data", "sha256.digest", "url"]
    # the progress display saw every fetched entry through to its full size
    assert sorted(seen) == ["containerd.archives[0]", "images[0]", "images[0].kernel"]
    for where, events in seen.items():
        size = len(site.data[next(o.entry.location for o in outcomes
                                  if o.entry.where == where)[len(MIRROR) + 1:]])
        assert events[-1] == (-1, -1)
        assert max(d for d, _ in events[:-1] if d is not None) == size
        assert any(total == size for _, total in events)


def test_event_bytes_reads_the_fetchers_events() -> None:
    assert event_bytes({"event": "resolved", "size": 10, "cid": "x"}) == (None, 10)
    assert event_bytes({"event": "progress", "bytes": 4, "total": 10}) == (4, 10)
    assert event_bytes({"event": "resume", "bytes": 3}) == (3, None)
    assert event_bytes({"event": "done", "size": 10}) == (None, None)
    assert event_bytes({"event": "progress", "bytes": "4"}) == (None, None)


def test_files_cover_the_template() -> None:
    assert all(rel in FILES for rel in AMD64)
