"""carget.digest: the one parser and hasher of whole-file digests (add, get, lima)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from carget.digest import (
    DigestSyntaxError,
    NotRegularFile,
    check_digest,
    digest_bytes,
    file_digest,
    parse_digest,
)
from carget.errors import DigestMismatch, UsageError

HEX = "ab" * 32


def test_parse_forms() -> None:
    assert parse_digest(f"sha256:{HEX}") == ("sha256", HEX)
    assert parse_digest(f"  SHA256:{HEX.upper()} ") == ("sha256", HEX)  # folded, trimmed
    assert parse_digest(HEX, bare=True) == ("sha256", HEX)
    assert parse_digest("cd" * 64, bare=True) == ("sha512", "cd" * 64)
    assert parse_digest(f"sha256:{HEX}", exact=True) == ("sha256", HEX)


@pytest.mark.parametrize(("text", "kw", "needle"), [
    (HEX, {}, "is not ALGORITHM:HEX"),
    (f"md5:{HEX}", {}, "'md5' is not supported"),
    ("sha256:zz", {}, "is not ALGORITHM:HEX ('zz' is not hexadecimal)"),
    ("sha256:abcd", {}, "a sha256 digest has 64 hex digits, this one 4"),
    (f"SHA256:{HEX}", {"exact": True}, "'SHA256' is not supported"),  # go-digest form only
    (f"sha256:{HEX.upper()}", {"exact": True}, "is not hexadecimal"),
])
def test_parse_errors_say_why_and_are_usage_errors(text: str, kw: dict[str, bool],
                                                   needle: str) -> None:
    with pytest.raises(DigestSyntaxError) as info:
        parse_digest(text, **kw)
    assert needle in str(info.value)
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_bytes_and_file_digests(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    f = tmp_path / "f"
    f.write_bytes(data)
    want = "sha512:" + hashlib.sha512(data).hexdigest()
    assert digest_bytes("sha512", data) == want
    assert file_digest(f, "sha512") == want
    assert check_digest(want, want.upper().replace("SHA512", "sha512")) == want
    with pytest.raises(DigestMismatch):
        check_digest("sha512:" + "00" * 64, want)


def test_file_digest_reads_the_file_itself_only(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "link").symlink_to("f")
    with pytest.raises(OSError):
        file_digest(tmp_path / "link", "sha256")  # not followed
    with pytest.raises(NotRegularFile):
        file_digest(tmp_path, "sha256")
