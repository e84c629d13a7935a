"""``carget lima annotate``: CIDs computed once per file, written without touching the rest."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from limafixtures import DIGEST_FIELDS, FILES, Site, StaticServer, run_cli, sha256

from carget.add import add_bytes
from carget.errors import InputError
from carget.lima.annotate import compute_url, lima_import_options
from carget.lima.edit import Annotation, annotate_text
from carget.lima.template import parse_template


def cid_of(data: bytes) -> str:
    return str(add_bytes(data, lima_import_options()).cid)


def added_lines(old: str, new: str) -> list[str]:
    """The lines ``new`` adds to ``old``; fails if anything else changed."""
    sm = difflib.SequenceMatcher(a=old.splitlines(keepends=True),
                                 b=new.splitlines(keepends=True), autojunk=False)
    added: list[str] = []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            continue
        assert op == "insert", (op, sm.a[i1:i2], sm.b[j1:j2])
        added += sm.b[j1:j2]
    return added


def strip_lines(text: str, lines: list[str]) -> str:
    out = text.splitlines(keepends=True)
    for line in lines:
        out.remove(line)
    return "".join(out)


def test_known_cid_matches_kubo_cid_version_1() -> None:
    # `echo -n hello | ipfs add --cid-version=1 --only-hash`: a one-chunk raw leaf
    assert cid_of(b"hello") == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert lima_import_options().chunk_size == 262144 and lima_import_options().raw_leaves


def test_diff_adds_only_cid_lines_from_download(
    site: Site, static_server: StaticServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = site.template(static_server.base)
    path = tmp_path / "t.yaml"
    path.write_text(text, newline="")
    code, out, err = run_cli(["lima", "annotate", str(path)], capsys)
    assert code == 0, err
    assert path.read_bytes().decode() == text  # no --write: untouched
    assert out.startswith(f"--- a/{path}\n+++ b/{path}\n")
    plus = [ln[1:] for ln in out.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    minus = [ln for ln in out.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    assert minus == []
    # six pinned entries get a cid; the digest-less fallback gets digest and cid
    assert sum("cid:" in ln for ln in plus) == 7
    assert sum("digest:" in ln for ln in plus) == 1
    # each file was downloaded exactly once; "current" and the pinned amd64 image are
    # different locations, so both were read
    assert sorted(static_server.counts) == sorted(f"/{rel}" for rel in FILES)
    assert set(static_server.counts.values()) == {1}


def test_write_round_trips_byte_for_byte(
    site: Site, static_server: StaticServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = site.template(static_server.base)
    path = tmp_path / "t.yaml"
    path.write_text(text, newline="")
    path.chmod(0o640)
    code, _, err = run_cli(["lima", "annotate", "--write", str(path)], capsys)
    assert code == 0, err
    new = path.read_bytes().decode()
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    added = added_lines(text, new)
    assert strip_lines(new, added) == text  # byte-for-byte apart from the added lines
    assert not new.endswith("\n")  # the original had no final newline, nor has the result

    # each cid line sits right after its entry's digest line, at the same indentation
    lines = new.splitlines()
    t = parse_template(new)
    for e in t.entries:
        rel = e.location.split(static_server.base + "/", 1)[1]
        assert str(e.cid) == cid_of(site.data[rel])
        assert e.digest == sha256(site.data[rel])
        row = e.node.lc.key("cid")[0]
        digest_row, digest_col = e.node.lc.key("digest")
        assert row == digest_row + 1
        assert e.node.lc.key("cid")[1] == digest_col
        assert lines[row].lstrip().startswith("cid: ")
    # quoting follows the entry's own style
    assert '  cid: "bafk' in new or '  cid: "bafy' in new
    assert "    cid: 'baf" in new
    assert "\n      cid: baf" in new

    # a second run finds nothing to do and leaves the file alone
    code, out, err = run_cli(["lima", "annotate", "--write", str(path)], capsys)
    assert code == 0 and out == ""
    assert "already carries" in err
    assert "0 cid(s) added, 0 updated, 7 already right" in err
    assert path.read_bytes().decode() == new


def test_from_dir_reads_local_files_only(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for rel, data in site.data.items():
        (flat / Path(rel).name).write_bytes(data)
    # the locations point at a closed port: nothing may be downloaded
    text = site.template("https://127.0.0.1:9")
    path = tmp_path / "t.yaml"
    path.write_text(text, newline="")
    code, _, err = run_cli(
        ["lima", "annotate", "--arch", "aarch64", "--from-dir", str(flat), "--write", str(path)],
        capsys,
    )
    assert code == 0, err
    t = parse_template(path.read_bytes().decode())
    with_cid = {e.where for e in t.entries if e.cid is not None}
    assert with_cid == {"images[1]", "containerd.archives[1]"}  # --arch limits the entries
    assert str(t.entries[2].cid) == cid_of(site.data["releases/20250101/test-cloudimg-arm64.img"])


def test_missing_file_in_from_dir_names_the_entry(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(site.template("https://127.0.0.1:9"), newline="")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["lima", "annotate", "--from-dir", str(empty), str(path)], capsys)
    assert code == 1
    assert "images[0]" in err and "test-cloudimg-amd64.img" in err


def test_digest_mismatch_exits_5_and_writes_nothing(
    site: Site, static_server: StaticServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "sha256:" + "ab" * 32
    text = site.template(static_server.base, digest_nerdctl_amd64=wrong)
    path = tmp_path / "t.yaml"
    path.write_text(text, newline="")
    code, out, err = run_cli(["lima", "annotate", "--write", str(path)], capsys)
    assert code == 5
    assert "containerd.archives[0]" in err and wrong in err
    assert path.read_bytes().decode() == text
    assert out == ""


@pytest.mark.parametrize(
    ("text", "code", "needle"),
    [
        ("images: [\n", 1, "not valid YAML"),
        ("mounts: []\n", 1, "no images list"),
        ("images:\n- location: /srv/a.img\n", 1, "images[0] (line 2): location '/srv/a.img' is "
                                                 "not http(s)"),
        ("images:\n- location: ftp://h/a.img\n", 1, "not http(s)"),
    ],
)
def test_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, code: int, needle: str
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    got, _, err = run_cli(["lima", "annotate", "--write", str(path)], capsys)
    assert got == code
    assert needle in err
    assert path.read_text() == text


def test_unknown_arch_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("images:\n- location: https://h/a.img\n")
    code, _, err = run_cli(["lima", "annotate", "--arch", "m68k", str(path)], capsys)
    assert code == 2 and "m68k" in err


def test_http_errors_name_the_entry(
    site: Site, static_server: StaticServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.yaml"
    text = f"images:\n- location: {static_server.base}/nope.img\n  arch: x86_64\n"
    path.write_text(text)
    code, _, err = run_cli(["lima", "annotate", str(path)], capsys)
    assert code == 3 and "images[0]" in err and "404" in err
    text = "images:\n- location: http://127.0.0.1:9/x.img\n"
    path.write_text(text)
    code, _, err = run_cli(["lima", "annotate", str(path)], capsys)
    assert code == 6 and "images[0]" in err


def test_compute_url_streams_cid_and_digest(site: Site, static_server: StaticServer) -> None:
    rel = "releases/20250101/test-cloudimg-amd64.img"
    got = compute_url(f"{static_server.base}/{rel}", "sha512")
    assert str(got.cid) == cid_of(site.data[rel])
    assert got.digest.startswith("sha512:") and got.size == len(site.data[rel])


# --- the line editor alone -------------------------------------------------------------

CID = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
D = "sha256:" + "0" * 64


def test_crlf_file_keeps_crlf() -> None:
    text = f"images:\r\n- location: https://h/a.img\r\n  digest: {D}\r\nmounts: []\r\n"
    t = parse_template(text)
    new = annotate_text(t, [Annotation(t.entries[0], CID)])
    assert new == text.replace(f"{D}\r\n", f"{D}\r\n  cid: {CID}\r\n")


def test_existing_cid_is_updated_in_place_keeping_comment() -> None:
    old = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    text = f"images:\n- location: https://h/a.img\n  cid: \"{old}\"  # stale\n  digest: {D}\n"
    t = parse_template(text)
    new = annotate_text(t, [Annotation(t.entries[0], CID)])
    assert new == text.replace(old, CID)
    # the same CID in another base is left as written
    t2 = parse_template(new.replace(CID, "zb2rhZfjRh2FHHB2RkHVEvL2vJnCTcu7kwRqgVsf9gpkLgteo"))
    assert annotate_text(t2, [Annotation(t2.entries[0], CID)]) == t2.text


def test_digest_is_added_after_arch_when_missing() -> None:
    text = "images:\n-   location: https://h/a.img\n    arch: x86_64\n    # note\n"
    t = parse_template(text)
    new = annotate_text(t, [Annotation(t.entries[0], CID, D)])
    assert new == text.replace("x86_64\n", f"x86_64\n    digest: {D}\n    cid: {CID}\n")


def test_flow_style_entry_is_refused() -> None:
    t = parse_template(f"images:\n- {{location: 'https://h/a.img', digest: '{D}'}}\n")
    with pytest.raises(InputError, match=r"images\[0\] \(line 2\) is a flow-style mapping"):
        annotate_text(t, [Annotation(t.entries[0], CID)])


def test_layout_the_editor_cannot_handle_is_refused() -> None:
    # a digest split over two lines (an escaped line break): inserting after its first line would
    # change the value, and the check after editing catches that
    text = 'images:\n- location: https://h/a.img\n  digest: "sha256:0000000000000000\\\n' \
           '    000000000000000000000000000000000000000000000000"\n'
    t = parse_template(text)
    assert t.entries[0].digest == D
    with pytest.raises(InputError, match="nothing written"):
        annotate_text(t, [Annotation(t.entries[0], CID)])


def test_every_digest_field_is_covered() -> None:
    assert set(DIGEST_FIELDS.values()) <= set(FILES)


@pytest.mark.parametrize(
    ("placeholder", "filled"),
    [
        ("  cid:\n  arch: x86_64\n", f"  cid: {CID}\n  arch: x86_64\n"),
        ("  cid: ''\n", f"  cid: {CID}\n"),
        ("  cid: ~ # to fill\n", f"  cid: {CID} # to fill\n"),
        ("  cid:", f"  cid: {CID}"),
    ],
)
def test_empty_cid_placeholder_is_filled(placeholder: str, filled: str) -> None:
    head = f"images:\n- location: https://h/a.img\n  digest: {D}\n"
    t = parse_template(head + placeholder)
    assert t.entries[0].cid is None
    assert annotate_text(t, [Annotation(t.entries[0], CID)]) == head + filled
