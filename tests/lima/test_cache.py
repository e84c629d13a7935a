"""lima's cache layout: key, root, atomic placement, what counts as cached."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carget.errors import InputError
from carget.lima.cache import LimaCache, cache_key, default_cache_dir

LOC = "https://cloud-images.example/releases/noble/img-amd64.img"
DIGEST = "sha256:" + hashlib.sha256(b"image bytes").hexdigest()


def test_cache_key_is_sha256_of_the_location_text() -> None:
    assert cache_key(LOC) == hashlib.sha256(LOC.encode()).hexdigest()
    assert cache_key(LOC + "/") != cache_key(LOC)


@pytest.mark.skipif(sys.platform == "darwin", reason="Linux rules")
def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lima"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # Go ignores a relative one
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "lima"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / ".cache" / "lima"


def _stage(cache: LimaCache, data: bytes) -> None:
    (cache.begin(LOC) / "data").write_bytes(data)


def test_commit_makes_exactly_limas_entry(tmp_path: Path) -> None:
    cache = LimaCache(tmp_path / "lima")
    cache.check_writable()
    _stage(cache, b"image bytes")
    (cache.staging_dir(LOC) / "resume.journal").write_text("x")  # must not leak into entry
    final = cache.commit(LOC, DIGEST)
    assert final == tmp_path / "lima" / "download" / "by-url-sha256" / cache_key(LOC)
    assert sorted(os.listdir(final)) == ["data", "sha256.digest", "url"]
    assert (final / "url").read_bytes() == LOC.encode()
    assert (final / "sha256.digest").read_bytes() == DIGEST.encode()
    assert (final / "data").read_bytes() == b"image bytes"
    assert cache.has(LOC, DIGEST)
    cache.tidy()
    assert sorted(os.listdir(tmp_path / "lima" / "download")) == ["by-url-sha256"]


def test_commit_replaces_an_old_entry_whole(tmp_path: Path) -> None:
    cache = LimaCache(tmp_path)
    cache.check_writable()
    old = cache.entry_dir(LOC)
    old.mkdir(parents=True)
    (old / "data").write_bytes(b"stale")
    (old / "sha512.digest").write_text("sha512:" + "0" * 128)
    assert not cache.has(LOC, DIGEST)
    _stage(cache, b"image bytes")
    cache.commit(LOC, DIGEST)
    assert sorted(os.listdir(old)) == ["data", "sha256.digest", "url"]
    assert (old / "data").read_bytes() == b"image bytes"
    assert list(cache.staging.iterdir()) == []  # the old entry was removed, not parked


def test_has_needs_data_and_the_same_digest(tmp_path: Path) -> None:
    cache = LimaCache(tmp_path)
    d = cache.entry_dir(LOC)
    d.mkdir(parents=True)
    (d / "sha256.digest").write_text(DIGEST + "\n")  # lima trims whitespace
    assert not cache.has(LOC, DIGEST)  # no data
    (d / "data").write_bytes(b"x")
    assert cache.has(LOC, DIGEST)
    assert not cache.has(LOC, "sha256:" + "1" * 64)
    assert not cache.has(LOC, "sha512:" + "1" * 128)


def test_commit_without_staged_data_is_refused(tmp_path: Path) -> None:
    cache = LimaCache(tmp_path)
    cache.begin(LOC)
    with pytest.raises(InputError, match="staged data"):
        cache.commit(LOC, DIGEST)
    assert not cache.entry_dir(LOC).exists()


def test_unwritable_cache_dir_is_named(tmp_path: Path, unprivileged: list[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    code = (
        "import sys\n"
        "from carget.errors import InputError\n"
        "from carget.lima import LimaCache\n"
        "try:\n"
        "    LimaCache(sys.argv[1]).check_writable()\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(1)\n"
    )
    try:
        r = subprocess.run([*unprivileged, sys.executable, "-c", code, str(ro)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert "cache dir" in r.stdout
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o700)


def test_cache_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("not a dir")
    with pytest.raises(InputError, match=r"cache dir .*file"):
        LimaCache(f).check_writable()
    assert f.read_text() == "not a dir"
