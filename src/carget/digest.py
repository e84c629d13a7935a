"""Whole-file digests, ``sha256:HEX`` and ``sha512:HEX`` (the go-digest form lima uses).

The one place that parses and computes them: ``carget add --digest``, ``carget get
--digest`` / :func:`carget.fetcher.fetch_file` and lima's image digests all come here.
Parsing raises :class:`DigestSyntaxError`, a usage error (exit 2) that gives the reason;
a caller with more to say (which option, which template) words it as its own.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any, Final

from .errors import DigestMismatch, UsageError

__all__ = [
    "ALGORITHMS",
    "DigestSyntaxError",
    "NotRegularFile",
    "check_digest",
    "digest_bytes",
    "file_digest",
    "new_hasher",
    "parse_digest",
]

#: the algorithms carget computes, with the hex digits of each one's digest
ALGORITHMS: Final = {"sha256": 64, "sha512": 128}
#: bytes per read when hashing a file (hashlib drops the GIL for pieces this big)
READ_BYTES: Final = 1 << 20


class DigestSyntaxError(UsageError, ValueError):
    """A digest string that is not ``ALGORITHM:HEX`` with a known algorithm."""


class NotRegularFile(OSError):
    """:func:`file_digest` of something that is not a regular file."""


def parse_digest(text: str, *, bare: bool = False, exact: bool = False) -> tuple[str, str]:
    """``sha256:HEX`` / ``sha512:HEX`` → (algorithm, hex).

    ``bare`` also takes a HEX alone (what ``sha256sum`` prints): 64 digits are sha256, 128
    sha512. ``exact`` takes the go-digest form only (lower-case, nothing around it);
    otherwise surrounding space is dropped and case folded. Raises
    :class:`DigestSyntaxError`."""
    if not exact:
        text = text.strip()
    algo, sep, hexpart = text.partition(":")
    if not sep:
        if not bare:
            raise DigestSyntaxError(f"{text!r} is not ALGORITHM:HEX (e.g. sha256:...)")
        algo, hexpart = ("sha512" if len(text) == 128 else "sha256"), text
    if not exact:
        algo, hexpart = algo.lower(), hexpart.lower()
    want = ALGORITHMS.get(algo)
    if want is None:
        raise DigestSyntaxError(f"digest algorithm {algo!r} is not supported "
                                f"(use {' or '.join(ALGORITHMS)})")
    if any(c not in "0123456789abcdef" for c in hexpart):
        raise DigestSyntaxError(f"{text!r} is not ALGORITHM:HEX ({hexpart!r} is not "
                                f"hexadecimal)")
    if len(hexpart) != want:
        raise DigestSyntaxError(f"a {algo} digest has {want} hex digits, this one "
                                f"{len(hexpart)}")
    return algo, hexpart


def new_hasher(algo: str) -> Any:
    """A hashlib object for ``algo`` (one of :data:`ALGORITHMS`)."""
    if algo not in ALGORITHMS:
        raise DigestSyntaxError(f"digest algorithm {algo!r} is not supported "
                                f"(use {' or '.join(ALGORITHMS)})")
    return hashlib.new(algo)


def digest_bytes(algo: str, data: bytes | bytearray | memoryview) -> str:
    """``algo:HEX`` of ``data``."""
    h = new_hasher(algo)
    h.update(data)
    return f"{algo}:{h.hexdigest()}"


def file_digest(path: str | os.PathLike[str], algo: str) -> str:
    """``algo:HEX`` of the regular file ``path``, read in :data:`READ_BYTES` pieces.

    A symlink is not followed (``O_NOFOLLOW``: the file must be the one named). Raises
    :class:`OSError` when it cannot be read, :class:`NotRegularFile` (an ``OSError``)
    when it is not a regular file."""
    h = new_hasher(algo)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise NotRegularFile(f"{os.fspath(path)} is not a regular file")
    with open(fd, "rb", buffering=0) as f:
        buf = bytearray(READ_BYTES)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return f"{algo}:{h.hexdigest()}"


def check_digest(got: str, expected: str) -> str:
    """Return ``got`` if it is the ``expected`` ``algo:HEX`` (any case); else raise
    :class:`~carget.errors.DigestMismatch`."""
    algo, want = parse_digest(expected)
    if got != f"{algo}:{want}":
        raise DigestMismatch(f"digest mismatch: expected {algo}:{want}, got {got}")
    return got
