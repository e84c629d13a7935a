"""The command line as people use it (issue 15): output paths, summaries, one-line errors,
JSON, flag forms, CAR messages and the small things. Each test runs the real ``carget``
as a subprocess against a loopback ``carget serve`` (or the CLI's own functions where the
behaviour is a pure function), and fails without the change it covers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from carget.server.testing import running_gateway

FILE_BYTES = os.urandom(3 << 20)


def run(cwd: Path, *args: str, stdin: bytes | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "IPFS_GATEWAY"}
    env.update(HOME=str(cwd), IPFS_PATH=str(cwd / ".ipfs"), COLUMNS="100")
    return subprocess.run([sys.executable, "-m", "carget", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, timeout=timeout)


def err(p: subprocess.CompletedProcess[bytes]) -> str:
    return p.stderr.decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(gateway URL, file CID, tree CID): big.bin (3 MiB) and site/{index.html, sub/a.txt}."""
    src = tmp_path_factory.mktemp("src")
    (src / "big.bin").write_bytes(FILE_BYTES)
    (src / "site" / "sub").mkdir(parents=True)
    (src / "site" / "index.html").write_text("hi\n")
    (src / "site" / "sub" / "a.txt").write_text("x\n")
    cids = {}
    for name in ("big.bin", "site"):
        out = run(src, "add", "-Q", "-r", name)
        cids[name] = out.stdout.decode().strip()
    with running_gateway([src / "big.bin", src / "site"]) as url:
        yield url, cids["big.bin"], cids["site"]


# --- 1. output paths ------------------------------------------------------------------


def test_output_into_directories_as_curl_wget_cp(served: tuple[str, str, str],
                                                  tmp_path: Path) -> None:
    url, fcid, dcid = served
    (tmp_path / "existing").mkdir()
    cases = [
        (dcid, "sitecopy/", f"sitecopy/{dcid}/index.html"),   # a missing dir/ is made
        (dcid, "existing", f"existing/{dcid}/sub/a.txt"),     # an existing dir receives it
        (fcid, "newd/", f"newd/{fcid}"),
        (fcid, "existing", f"existing/{fcid}"),
        (f"{dcid}/sub/a.txt", "existing/", "existing/a.txt"),
        (fcid, "plain.bin", "plain.bin"),
    ]
    for target, out, want in cases:
        p = run(tmp_path, "get", "-g", url, target, "-o", out)
        assert p.returncode == 0, (target, out, err(p))
        assert (tmp_path / want).is_file(), (target, out, sorted(os.listdir(tmp_path)))
    assert (tmp_path / f"newd/{fcid}").read_bytes() == FILE_BYTES
    left = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*carget*")]
    assert left == []


def test_output_dash_is_stdout(served: tuple[str, str, str], tmp_path: Path) -> None:
    url, fcid, _ = served
    p = run(tmp_path, "get", "-g", url, fcid, "-o", "-")
    assert p.returncode == 0, err(p)
    assert p.stdout == FILE_BYTES
    assert not (tmp_path / "-").exists()


def test_no_internal_name_in_messages(served: tuple[str, str, str], tmp_path: Path) -> None:
    url, fcid, dcid = served
    assert run(tmp_path, "get", "-g", url, dcid, "-o", "t/").returncode == 0
    again = run(tmp_path, "get", "-g", url, dcid, "-o", "t/")
    assert again.returncode == 1
    assert "already exists" in err(again) and "carget-" not in err(again)
    (tmp_path / "f").write_text("")  # a file where a directory is wanted
    p = run(tmp_path, "get", "-g", url, fcid, "-o", "f/")
    assert p.returncode != 0 and "carget-" not in err(p) and len(err(p).splitlines()) == 1


# --- 2. serve on a busy port ----------------------------------------------------------


def test_serve_busy_port_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = run(tmp_path, "serve", "--listen", f"127.0.0.1:{port}", "a", timeout=30)
    assert p.returncode == 1
    lines = err(p).splitlines()
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port}" in lines[0] and "--listen 127.0.0.1:0" in lines[0]
    assert p.stdout == b""  # bound first: nothing was imported


# --- 3. summary line, -q ----------------------------------------------------------------


def test_summary_line_and_quiet(served: tuple[str, str, str], tmp_path: Path) -> None:
    url, fcid, _ = served
    p = run(tmp_path, "get", "-g", url, fcid, "-o", "x.bin")
    assert p.returncode == 0 and p.stdout == b""
    lines = err(p).splitlines()
    assert len(lines) == 1 and lines[0].startswith("carget: saved x.bin (3.0 MiB) in "), lines
    assert "MiB/s, from 1 gateway" in lines[0]
    q = run(tmp_path, "get", "-q", "-g", url, fcid, "-o", "y.bin")
    assert q.returncode == 0 and q.stderr == b""


# --- 4. progress figures ----------------------------------------------------------------


def test_progress_figures_binary_units_nothing_unknown() -> None:
    from carget.cli.get import figures, human_size

    assert human_size(54_001_664) == "51.5 MiB"
    assert figures(0, None, None) == "0 B"
    assert figures(1 << 20, 4 << 20, 1 << 20) == "1.0 MiB / 4.0 MiB   25%  1.0 MiB/s  0:00:03"
    assert "?" not in figures(0, 10, None) and "-:--" not in figures(0, 10, None)


def test_bar_label_is_output_name_and_resume_is_words(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from carget.cli.get import _Reporter

    r = _Reporter(bar=True, json_events=False, label="ubuntu.img", quiet=False)
    r({"event": "resolved", "cid": "bafy" + "a" * 50, "size": 100 << 20})
    assert r.progress.tasks[0].description == "ubuntu.img"
    r.close()
    capsys.readouterr()
    plain = _Reporter(bar=False, json_events=False, label="x", quiet=False)
    plain({"event": "resume", "bytes": 54_001_664})
    assert capsys.readouterr().err == "carget: resuming: 51.5 MiB already verified\n"


# --- 5. interrupts: what was kept, --no-resume -------------------------------------------


def test_no_resume_discards_what_was_kept(tmp_path: Path) -> None:
    from carget.fetcher.outputs.journal import JOURNAL_SUFFIX, PARTIAL_SUFFIX

    (tmp_path / ("out.bin" + PARTIAL_SUFFIX)).write_bytes(b"x" * 10)
    (tmp_path / ("out.bin" + JOURNAL_SUFFIX)).write_text("{}")
    p = run(tmp_path, "get", "--no-resume", "-g", "http://127.0.0.1:1", "--timeout", "1",
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "-o", "out.bin")
    assert p.returncode == 6
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)


def test_interrupt_says_what_was_kept(tmp_path: Path) -> None:
    import signal
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_signals import _get_after, stalling_gateway

    with stalling_gateway() as (gw, cid, _):
        env = {k: v for k, v in os.environ.items() if k != "IPFS_GATEWAY"}
        env.update(HOME=str(tmp_path))
        proc = subprocess.Popen([sys.executable, "-m", "carget", "get", cid, "--gateway",
                                 gw.url, "--streams", "1", "--idle-timeout", "60", "-o",
                                 "out.bin"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        code, stderr = _get_after(gw, proc, signal.SIGINT)
        time.sleep(0)
    assert code == 130
    assert "kept; run the same command to resume, or add --no-resume" in stderr, stderr
    assert "carget-partial" not in stderr


# --- 6. network errors: one final line, retries only with -v --------------------------


ABSENT = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # served by none


def test_one_line_names_each_gateway(served: tuple[str, str, str], tmp_path: Path) -> None:
    url, _, _ = served
    with running_gateway([]) as empty:
        p = run(tmp_path, "get", "-g", url, "-g", empty, f"{ABSENT}/nope", "-o", "x")
        assert p.returncode == 3
        lines = err(p).splitlines()
        assert len(lines) == 1, lines
        assert f"{url}: answered 404" in lines[0] and f"{empty}: answered 404" in lines[0]
        v = run(tmp_path, "get", "-v", "-g", url, "-g", empty, f"{ABSENT}/nope", "-o", "x")
        assert len(err(v).splitlines()) == 3, err(v)


@pytest.mark.parametrize("command", ["get", "cat"])
def test_missing_path_names_the_segment(served: tuple[str, str, str], tmp_path: Path,
                                        command: str) -> None:
    """A gateway answers a missing path with a bare 404: the verified path blocks say
    which segment is missing, under which path (exit 3, one line)."""
    url, _, dcid = served
    cases = [(f"{dcid}/sub/missing/deeper", f"/ipfs/{dcid}/sub: no entry 'missing'"),
             (f"{dcid}/nope", f"/ipfs/{dcid}: no entry 'nope'"),
             (f"{dcid}/index.html/x", f"/ipfs/{dcid}/index.html: ")]
    with running_gateway([]) as empty:
        for target, said in cases:
            p = run(tmp_path, command, "-g", empty, "-g", url, target)
            assert p.returncode == 3, err(p)
            lines = err(p).splitlines()
            assert len(lines) == 1 and said in lines[0], lines
            assert "not found on any gateway" not in lines[0]
    assert list(tmp_path.iterdir()) == []


# --- 7. --json ----------------------------------------------------------------------------


def test_json_failure_ends_with_error_event(served: tuple[str, str, str],
                                            tmp_path: Path) -> None:
    url, _, dcid = served
    p = run(tmp_path, "get", "--json", "-g", url, f"{dcid}/nope", "-o", "x")
    assert p.returncode == 3
    lines = err(p).splitlines()
    last = json.loads(lines[-1])
    assert last["event"] == "error" and last["code"] == 3 and "nope" in last["message"]
    assert all(json.loads(line) for line in lines)  # nothing but JSON


def test_json_for_add_car_ls_inspect(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello\n")
    p = run(tmp_path, "add", "--json", "--cid-version", "1", "f")
    assert json.loads(p.stdout) == {
        "Name": "f", "Hash": "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"}
    assert run(tmp_path, "car", "create", "-f", "f.car", "f").returncode == 0
    ls = [json.loads(x) for x in run(tmp_path, "car", "ls", "--json", "f.car").stdout.splitlines()]
    assert ls == [{"cid": ls[0]["cid"], "codec": "raw", "size": 6}]
    doc = json.loads(run(tmp_path, "car", "inspect", "--json", "f.car").stdout)
    assert doc["blocks"] == 1 and doc["missing"] == [] and doc["car_bytes"] > 6


# --- 8. flag forms --------------------------------------------------------------------


def test_add_value_as_separate_word(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello\n")
    p = run(tmp_path, "add", "--digest", "sha512", "f")
    assert p.returncode == 0, err(p)
    assert p.stdout.decode().splitlines()[1].startswith("digest sha512:")
    r = run(tmp_path, "add", "--raw-leaves", "true", "f")
    assert r.returncode == 0 and r.stdout.decode().startswith("added bafkrei"), err(r)
    (tmp_path / "sha512").write_text("")
    amb = run(tmp_path, "add", "--digest", "sha512", "f")
    assert amb.returncode == 2 and "--digest=sha512" in err(amb)


def test_digest_forms() -> None:
    from carget.cli.get import _digest_arg
    from carget.errors import UsageError

    assert _digest_arg("AB" * 32) == "sha256:" + "ab" * 32
    with pytest.raises(UsageError, match="has 64 hex digits, this one 8"):
        _digest_arg("sha256:deadbeef")


def test_cid_format_not_a_cid_and_stdin(tmp_path: Path) -> None:
    p = run(tmp_path, "cid", "format", "QmNOTACID")
    assert p.returncode == 2 and "QmNOTACID is not a CID" in err(p)
    s = run(tmp_path, "cid", "format", "-v", "1",
            stdin=b"QmNXnHQrwXsaKYHfc8S8fzMuc4c7ZhjuiSLCLLZZ4pCMmb\n")
    assert s.stdout == b"bafybeiac3hz76p5srixewc7sdeu3hoc4dor6xokdk2wq4kbfuutkgomeoi\n"


def test_progress_switch_version_help(served: tuple[str, str, str], tmp_path: Path) -> None:
    url, fcid, _ = served
    for form in ("--progress", "--no-progress", "--progress=false"):
        p = run(tmp_path, "get", form, "-g", url, fcid, "-o", "p.bin")
        assert p.returncode == 0, (form, err(p))
    assert run(tmp_path, "-V").stdout.startswith(b"carget, version")
    h = run(tmp_path, "help", "get")
    assert h.returncode == 0 and b"Usage: carget get" in h.stdout
    assert b"Usage: carget car ls" in run(tmp_path, "help", "car", "ls").stdout


# --- 9. CAR messages ------------------------------------------------------------------


def test_car_messages(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("a" * 5000)
    assert run(tmp_path, "car", "create", "-f", "d.car", "d").returncode == 0
    (tmp_path / "cut.car").write_bytes((tmp_path / "d.car").read_bytes()[:120])
    (tmp_path / "text.car").write_text("hello world, this is not a car at all\n")
    cut = run(tmp_path, "car", "extract", "-f", "cut.car", "-o", "out")
    assert cut.returncode == 4 and "truncated" in err(cut)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    assert "not a CAR" in err(run(tmp_path, "car", "ls", "text.car"))
    ins = run(tmp_path, "car", "inspect", "d.car").stdout.decode()
    assert f"CAR size: {os.path.getsize(tmp_path / 'd.car')} bytes" in ins
    (tmp_path / "one").write_text("1")
    assert run(tmp_path, "car", "create", "-f", "one.car", "one").returncode == 0
    one = run(tmp_path, "car", "extract", "-f", "one.car", "-o", "o1")
    assert "extracted 1 entry to o1" in err(one)


# --- 11. small things ---------------------------------------------------------------


def test_no_arguments_is_help_on_stdout(tmp_path: Path) -> None:
    p = run(tmp_path)
    assert p.returncode == 0 and p.stdout.startswith(b"Usage: carget") and p.stderr == b""


def test_shell_completion_documented_and_works(tmp_path: Path) -> None:
    env = dict(os.environ, _CARGET_COMPLETE="bash_source")
    p = subprocess.run([sys.executable, "-c", "from carget.cli import main; main()"],
                       env=env, capture_output=True, timeout=60)
    assert b"_carget_completion" in p.stdout
    assert b"_CARGET_COMPLETE=bash_source carget" in run(tmp_path, "--help").stdout


def test_bench_on_a_terminal_prints_each_result_once(tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "carget", "bench", "--size", "1"],
                            cwd=tmp_path, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            piece = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not piece:
            break
        chunks.append(piece)
    assert proc.wait(120) == 0
    os.close(master)
    # what stays on screen: the transient status line is erased ("\r\x1b[2K", or a
    # line up and erased, "\x1b[1A\x1b[2K") each time
    final = _screen(b"".join(chunks).decode(errors="replace"))
    assert sum("add (1 job)" in line for line in final) == 1, final


def _screen(text: str) -> list[str]:
    """The lines a terminal shows after ``text``: carriage return, line feed, cursor up
    (``ESC[nA``) and erase line (``ESC[2K``) applied; other escapes (colours, cursor
    visibility) change nothing shown; a line's characters overwrite from the column."""
    import re

    lines, row, col = [""], 0, 0
    for piece in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", text):
        if piece == "\r":
            col = 0
        elif piece == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        elif piece.startswith("\x1b["):
            if piece.endswith("A"):
                row = max(0, row - int(piece[2:-1] or 1))
            elif piece == "\x1b[2K":
                lines[row] = ""
        elif piece:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + piece + line[col + len(piece):]
            col += len(piece)
    return lines


# --- 10. lima prefetch ----------------------------------------------------------------


LIMA_TEMPLATE = """images:
- location: "https://example.invalid/a.img"
  arch: "x86_64"
  digest: "sha256:ffe6203da54deeb6db5d2a98a83f9ec8e55f149d3f7ba622e1abe5fa966ee3d6"
"""


def test_prefetch_points_at_annotate_and_takes_g(tmp_path: Path) -> None:
    """Every row skipped for want of a cid: nothing was fetched, so the run fails (exit
    1) and says how to get cids."""
    (tmp_path / "t.yaml").write_text(LIMA_TEMPLATE)
    p = run(tmp_path, "lima", "prefetch", "t.yaml", "--arch", "x86_64", "--cache-dir", "c",
            "-g", "http://127.0.0.1:1")
    assert p.returncode == 1, err(p)
    last = err(p).splitlines()[-1]
    assert last.startswith("carget: nothing to fetch") and \
        "carget lima annotate t.yaml --write" in last, err(p)
    j = run(tmp_path, "lima", "prefetch", "--json", "t.yaml", "--arch", "x86_64",
            "--cache-dir", "c")
    assert j.returncode == 1 and j.stderr == b"", err(j)
    lines = [json.loads(line) for line in j.stdout.splitlines()]
    assert [e["event"] for e in lines] == ["entry", "error"]
    assert lines[0]["result"] == "skipped: no cid" and lines[0]["cid"] is None
    assert lines[1]["code"] == 1 and "carget lima annotate" in lines[1]["message"]


def test_prefetch_json_one_line_per_entry_then_error(served: tuple[str, str, str],
                                                     tmp_path: Path) -> None:
    """``prefetch --json``: an object a line on stdout for each entry, a failure's last
    line its error event, nothing on stderr."""
    import hashlib

    url, fcid, _ = served
    digest = hashlib.sha256(FILE_BYTES).hexdigest()
    good = (f'- location: "https://example.invalid/a.img"\n  arch: "x86_64"\n'
            f'  digest: "sha256:{digest}"\n  cid: "{fcid}"\n')
    (tmp_path / "ok.yaml").write_text("images:\n" + good)
    p = run(tmp_path, "lima", "prefetch", "--json", "ok.yaml", "--arch", "x86_64",
            "--cache-dir", "c", "-g", url)
    assert p.returncode == 0 and p.stderr == b"", err(p)
    (entry,) = [json.loads(line) for line in p.stdout.splitlines()]
    assert entry["event"] == "entry" and entry["result"] == "fetched"
    assert entry["cid"] == fcid and entry["size"] == len(FILE_BYTES)
    assert entry["location"] == "https://example.invalid/a.img" and entry["source"] == "ipfs"
    bad = good.replace("a.img", "b.img").replace(fcid, ABSENT)
    (tmp_path / "two.yaml").write_text("images:\n" + good + bad)
    p = run(tmp_path, "lima", "prefetch", "--json", "two.yaml", "--arch", "x86_64",
            "--cache-dir", "c", "-g", url)
    assert p.returncode == 3 and p.stderr == b"", err(p)
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(e["event"], e.get("result")) for e in lines[:2]] == [
        ("entry", "cached"), ("entry", lines[1]["result"])]
    assert lines[1]["error"]["code"] == 3
    assert lines[2]["event"] == "error" and lines[2]["code"] == 3 and "b.img" in \
        lines[2]["message"] and len(lines) == 3


def test_annotate_does_not_wrap_lines_off_a_terminal(tmp_path: Path) -> None:
    """stderr a pipe: every message is one line, however long (rich used to wrap)."""
    deep = tmp_path / ("long-directory-name-" * 10)
    (deep / "from").mkdir(parents=True)
    (deep / "from" / "a.img").write_bytes(b"image\n")
    cid = run(tmp_path, "add", "-Q", "--cid-version", "1", str(deep / "from" / "a.img")
              ).stdout.decode().strip()
    tpl = deep / "t.yaml"
    tpl.write_text('images:\n- location: "https://example.invalid/a.img"\n'
                   '  arch: "x86_64"\n  digest: "sha256:' + _sha256(b"image\n") + '"\n'
                   f'  cid: "{cid}"\n')
    p = run(tmp_path, "lima", "annotate", str(tpl), "--from-dir", str(deep / "from"))
    assert p.returncode == 0, err(p)
    lines = err(p).splitlines()
    assert f"{tpl}: every entry already carries its cid" in lines, lines
    assert any(line.startswith(f"{tpl}: images[0] x86_64 a.img: {cid} ") for line in lines)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_prefetch_prints_each_error_once(tmp_path: Path) -> None:
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    (tmp_path / "t.yaml").write_text(LIMA_TEMPLATE + f'  cid: "{cid}"\n')
    with running_gateway([]) as empty:
        p = run(tmp_path, "lima", "prefetch", "t.yaml", "--arch", "x86_64", "--cache-dir",
                "c", "-g", empty)
    assert p.returncode == 3, err(p)
    assert err(p).count("not found on any gateway") == 1, err(p)
