"""lima's download cache: where an entry lives and how to put one there atomically.

lima (``pkg/downloader``) keeps each download in
``<cache>/download/by-url-sha256/<sha256 hex of the location string>/`` holding

* ``url``: the location, no trailing newline;
* ``data``: the bytes;
* ``<algo>.digest``: the expected digest (``sha256:HEX``), no trailing newline.

When ``data`` and the digest file for the template's digest both exist and the digest file
holds that digest, lima uses the entry without downloading or re-hashing it. So an entry
must never be visible half-made: carget builds it in a staging directory inside the cache
(same filesystem) and renames the whole directory into place.

The cache root is the user cache dir plus ``lima`` (Go's ``os.UserCacheDir``):
``$XDG_CACHE_HOME/lima`` or ``~/.cache/lima`` on Linux, ``~/Library/Caches/lima`` on macOS.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import InputError

__all__ = [
    "BY_URL",
    "STAGING",
    "LimaCache",
    "cache_key",
    "default_cache_dir",
]

#: lima's layout under the cache root
BY_URL = ("download", "by-url-sha256")
#: carget's staging area: beside by-url-sha256, not in it, so lima's cache listing (which
#: reads every directory under by-url-sha256) never sees a half-made entry
STAGING = ("download", ".carget-staging")


def default_cache_dir() -> Path:
    """lima's cache root on this OS (Go's os.UserCacheDir() + "lima")."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lima"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # os.UserCacheDir ignores a relative $XDG_CACHE_HOME (it must be absolute)
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "lima"


def cache_key(location: str) -> str:
    """lima's CacheKey: the sha256 hex of the location string, exactly as written."""
    return hashlib.sha256(location.encode("utf-8")).hexdigest()


class LimaCache:
    """One lima cache root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.by_url = self.root.joinpath(*BY_URL)
        self.staging = self.root.joinpath(*STAGING)

    def entry_dir(self, location: str) -> Path:
        return self.by_url / cache_key(location)

    def staging_dir(self, location: str) -> Path:
        """Where an entry is built. Keyed like the entry so an interrupted fetch resumes
        into the same place on the next run."""
        return self.staging / cache_key(location)

    def has(self, location: str, digest: str) -> bool:
        """True if lima would use the entry as it is: ``data`` exists and the digest file
        for ``digest``'s algorithm holds exactly ``digest`` (lima trims whitespace)."""
        d = self.entry_dir(location)
        algo = digest.partition(":")[0]
        try:
            recorded = (d / f"{algo}.digest").read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return False
        return recorded == digest and (d / "data").is_file()

    def check_writable(self) -> None:
        """Make sure entries can be created. Creates the layout's directories if missing.

        Raises :class:`InputError` naming the directory when it cannot be created or
        written (read-only, a file in the way, no permission).
        """
        for d in (self.by_url, self.staging):
            try:
                d.mkdir(parents=True, exist_ok=True)
                fd, probe = tempfile.mkstemp(prefix=".carget-probe-", dir=d)
                os.close(fd)
                os.unlink(probe)
            except OSError as exc:
                raise InputError(
                    f"cache dir {self.root}: cannot write {d}: {exc.strerror or exc}"
                ) from None

    def begin(self, location: str) -> Path:
        """Return the staging directory for ``location``, created, ready for ``data``.
        Raises :class:`InputError` when it cannot be created."""
        d = self.staging_dir(location)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cache: cannot create {d}: {exc.strerror or exc}") from None
        return d

    def discard(self, location: str) -> None:
        """Remove ``location``'s staging directory (after a failed digest or verification)."""
        shutil.rmtree(self.staging_dir(location), ignore_errors=True)

    def commit(self, location: str, digest: str) -> Path:
        """Finish the staged entry (``data`` already in place): write ``url`` and the digest
        file, then rename the directory into ``by-url-sha256``, replacing an older entry.

        The old entry is first renamed aside, so at every moment the entry path holds either
        a complete old entry, nothing, or the complete new one. Returns the entry path.
        Raises :class:`InputError` if the staged ``data`` is missing or a rename fails.
        """
        stage = self.staging_dir(location)
        if not (stage / "data").is_file():
            raise InputError(f"cache: staged data for {location} is missing")
        algo = digest.partition(":")[0]
        # leave only what lima reads: resume journals and temporaries stay out of the entry
        for extra in stage.iterdir():
            if extra.name != "data":
                if extra.is_dir():
                    shutil.rmtree(extra, ignore_errors=True)
                else:
                    extra.unlink(missing_ok=True)
        _write(stage / "url", location)
        _write(stage / f"{algo}.digest", digest)
        final = self.entry_dir(location)
        old: Path | None = None
        try:
            if final.exists() or final.is_symlink():
                old = Path(tempfile.mkdtemp(prefix="old-", dir=self.staging))
                os.rename(final, old / "entry")
            try:
                os.rename(stage, final)
            except OSError:
                if old is not None:  # put the old entry back rather than lose it
                    os.rename(old / "entry", final)
                raise
        except OSError as exc:
            raise InputError(f"cache: cannot place {final}: {exc.strerror or exc}") from None
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def tidy(self) -> None:
        """Remove the staging directory if nothing is left in it (no fetch to resume)."""
        with contextlib.suppress(OSError):
            self.staging.rmdir()


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
