"""`carget add` as a user runs it: a real process, kubo's output format, errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # `echo "hello world" | ipfs add`
HELLO_V1 = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


def carget(
    *args: str, stdin: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "carget", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        cwd=cwd,
    )


def test_file_and_stdin_output(tmp_path: Path) -> None:
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello world\n")
    r = carget("add", str(f))
    assert r.returncode == 0
    assert r.stdout.decode() == f"added {HELLO_V0} hello.txt\n"
    r = carget("add", stdin=b"hello world\n")
    assert r.stdout.decode() == f"added {HELLO_V0} {HELLO_V0}\n"  # kubo names stdin by CID
    r = carget("add", "-q", "--cid-version=1", "-", stdin=b"hello world\n")
    assert r.stdout.decode() == f"{HELLO_V1}\n"


def test_quieter_prints_only_the_last_and_digest(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"hello world\n")
    r = carget("add", "-Q", "--digest", str(a), str(b))
    lines = r.stdout.decode().splitlines()
    assert lines == [
        HELLO_V0,
        "sha256:a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447",
    ]


def test_raw_leaves_flag_forms(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"hello world\n")
    bare = carget("add", "-q", "--raw-leaves", str(f)).stdout.decode().strip()
    assert bare == HELLO_V1  # bare flag did not swallow the path
    off = carget("add", "-q", "--cid-version=1", "--raw-leaves=false", str(f)).stdout
    assert off.decode().strip().startswith("bafybei")


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["add", "/nonexistent/x"], 1, "no such file"),
        (["add", "--hash", "md5", "-"], 2, "unsupported hash"),
        (["add", "--chunker", "rabin-1-2-3", "-"], 2, "unsupported chunker"),
        (["add", "--chunker", "size-abc", "-"], 2, "bad chunker"),
        (["add", "--cid-version=0", "--hash", "sha2-512", "-"], 2, "CIDv0 only supports"),
        (["add", "--cid-version=7", "-"], 2, ""),
        (["add", "--raw-leaves=maybe", "-"], 2, ""),
        (["add", "--profile", "nope", "-"], 2, ""),
        (["add", "--bogus", "-"], 2, ""),
    ],
)
def test_bad_input(args: list[str], code: int, needle: str) -> None:
    r = carget(*args)
    assert r.returncode == code, r.stderr
    assert r.stdout == b""  # nothing printed as if it had succeeded
    err = r.stderr.decode()
    assert needle in err
    assert "Traceback" not in err


def test_directory_without_r_and_fifo(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"x")
    r = carget("add", str(good), str(tmp_path))
    assert r.returncode == 1 and r.stdout == b"" and b"use -r" in r.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = carget("add", str(fifo))
    assert r.returncode == 1 and r.stdout == b"" and b"not a regular file" in r.stderr


def test_unreadable_file(tmp_path: Path, unprivileged: list[str]) -> None:
    f = tmp_path / "secret"
    f.write_bytes(b"x")
    f.chmod(0)
    cmd = [*unprivileged, sys.executable, "-m", "carget", "add", str(f)]
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stdout == b"" and b"secret" in r.stderr and b"Traceback" not in r.stderr


def test_serve_takes_kubos_flag_forms_too(tmp_path: Path) -> None:
    """`serve` shares add's import flags: a bare --raw-leaves does not swallow the path."""
    missing = tmp_path / "missing"
    r = carget("serve", "--raw-leaves", str(missing))
    assert r.returncode == 1, r.stderr
    assert b"missing: no such file" in r.stderr
    r = carget("serve", "--cid-version=0", "--hash", "sha2-512", str(missing))
    assert r.returncode == 2 and b"CIDv0 only supports" in r.stderr


def test_add_car_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    # RLIMIT_FSIZE in the child makes writing past 1 MiB fail with EFBIG, as a full disk
    # fails with ENOSPC: the command says so in one line and removes its temporary
    limited = ("import os, resource, signal, sys\n"
               "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
               "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
               "os.execv(sys.executable, [sys.executable, '-m', 'carget', *sys.argv[1:]])")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", limited, "add", "-Q", "--car",
                           str(out / "x.car"), str(src)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr == "carget: File too large\n"
    assert os.listdir(out) == []


def test_quieter_does_not_print_a_cid_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """-Q prints the last root only, and turns no other CID into text (~8 µs a CIDv0: a
    third of the time per small file); -q's last line is the same root."""
    from carget.cid import CID
    from carget.cli import main

    for i in range(30):
        (tmp_path / "t" / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "t" / f"d{i % 3}" / f"f{i}").write_bytes(b"x" * i)
    (tmp_path / "one").write_bytes(b"one")
    for args in (["-r", str(tmp_path / "t")], ["-r", "-w", str(tmp_path / "t"),
                                               str(tmp_path / "one")]):
        main(["add", "-q", *args])
        last = capsys.readouterr().out.splitlines()[-1]
        real = CID.__str__
        calls: list[CID] = []

        def counting(cid: CID, calls: list[CID] = calls, real: Any = real) -> str:
            calls.append(cid)
            return str(real(cid))

        monkeypatch.setattr(CID, "__str__", counting)
        main(["add", "-Q", *args])
        monkeypatch.setattr(CID, "__str__", real)
        assert capsys.readouterr().out == f"{last}\n"
        assert len(calls) <= 10  # the directories' lines at most, never one per file


def test_kubo_storing_flags_accepted_or_refused_as_under_only_hash(tmp_path: Path) -> None:
    """carget always computes as ``ipfs add --only-hash``: -n, --pin[=false] and --fscache
    change nothing; --to-files and --pin-name are refused, as kubo refuses them with -n."""
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello world\n")
    for flags in (["-n"], ["--only-hash"], ["--pin"], ["--pin=false"], ["--fscache"]):
        p = carget("add", *flags, str(f))
        assert p.returncode == 0, (flags, p.stderr)
        assert p.stdout.split()[:2] == [b"added", HELLO_V0.encode()], flags
    for flags, said in ((["--to-files=/x"], b"to-files"), (["--pin-name=x"], b"pin-name")):
        p = carget("add", *flags, str(f))
        assert p.returncode == 2 and said in p.stderr and p.stdout == b"", (flags, p.stderr)


def test_ignore_rules_path_missing_and_stdin_name(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    p = carget("add", "-r", "--ignore-rules-path", str(tmp_path / "none"), str(tmp_path / "d"))
    assert p.returncode == 1 and b"--ignore-rules-path" in p.stderr and p.stdout == b""
    p = carget("add", "--stdin-name", "named.txt", stdin=b"hello world\n")
    assert p.stdout == f"added {HELLO_V0} named.txt\n".encode(), p.stderr
