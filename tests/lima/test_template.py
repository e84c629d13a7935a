"""Template parsing: entries, arches, and bad input naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from limafixtures import Site

from carget.errors import InputError, UsageError
from carget.lima import template as tm
from carget.lima.template import load_template, parse_template, select


def test_entries_in_file_order_with_arch_and_digest(site: Site) -> None:
    t = parse_template(site.template("https://example.invalid"), "t.yaml")
    wheres = [e.where for e in t.entries]
    assert wheres == [
        "images[0]", "images[0].kernel", "images[1]", "images[2]", "images[3]",
        "containerd.archives[0]", "containerd.archives[1]",
    ]
    kernel = t.entries[1]
    assert kernel.arch == "x86_64"  # a kernel shares its image's arch
    assert kernel.name == "vmlinuz-amd64"
    assert kernel.line == 11
    assert t.entries[4].digest is None  # the moving "current" fallback
    assert all(e.cid is None for e in t.entries)
    amd64 = [e.where for e in select(t.entries, "x86_64")]
    assert amd64 == ["images[0]", "images[0].kernel", "images[3]", "containerd.archives[0]"]
    assert len(select(t.entries, None)) == 7


def test_entry_without_arch_is_for_every_arch() -> None:
    t = parse_template("images:\n- location: https://h/x.img\n")
    assert [e.where for e in select(t.entries, "riscv64")] == ["images[0]"]


def test_cid_is_parsed() -> None:
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    t = parse_template(f"images:\n- location: https://h/x.img\n  cid: {cid}\n")
    assert str(t.entries[0].cid) == cid


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("images: [\n", "not valid YAML"),
        ("key: value\n  bad: indent\n", "not valid YAML"),
        ("- just\n- a list\n", "top level is not a mapping"),
        ("arch: x86_64\n", "no images list"),
        ("images: []\n", "no images list"),
        ("images: notalist\n", "expected a list"),
        ("images:\n- 42\n", "images[0]: expected a mapping"),
        ("images:\n- arch: x86_64\n", "images[0] (line 2): entry has no location"),
        (
            "images:\n- location: https://h/a\n  arch: sparc\n",
            "images[0] (line 2): unknown arch 'sparc'",
        ),
        ("images:\n- location: https://h/a\n  digest: md5:00\n", "not supported"),
        ("images:\n- location: https://h/a\n  digest: sha256:zz\n", "not ALGORITHM:HEX"),
        ("images:\n- location: https://h/a\n  digest: sha256:00\n", "64 hex digits"),
        ("images:\n- location: https://h/a\n  cid: notacid\n", "images[0] (line 2): bad cid"),
        ("images:\n- location: [1, 2]\n", "images[0] (line 2): location must be a string"),
        ("images:\n- location: https://h/a\ncontainerd: 3\n", "containerd: expected a mapping"),
        (
            "images:\n- location: https://h/a\ncontainerd:\n  archives:\n  - location: ''\n",
            "containerd.archives[0] (line 5): entry has no location",
        ),
        ("a: &x [*x]\nimages: 1\n", "expected a list"),
        ("k: 1\nk: 2\nimages: []\n", "not valid YAML"),
    ],
)
def test_bad_templates_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(InputError) as info:
        parse_template(text, "bad.yaml")
    assert needle in str(info.value)
    assert str(info.value).startswith("bad.yaml: ")


def test_load_template_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_template(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"images:\n- location: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_template(binary)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (tm.MAX_TEMPLATE_BYTES + 1))
    with pytest.raises(InputError, match="larger than"):
        load_template(huge)
    with pytest.raises(InputError):
        load_template(tmp_path)  # a directory


@pytest.mark.parametrize(
    ("machine", "lima"),
    [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("arm64", "aarch64"), ("aarch64", "aarch64"),
     ("armv7l", "armv7l"), ("riscv64", "riscv64"), ("s390x", "s390x"), ("ppc64le", "ppc64le")],
)
def test_host_arch_uses_lima_names(
    monkeypatch: pytest.MonkeyPatch, machine: str, lima: str
) -> None:
    monkeypatch.setattr(tm.platform, "machine", lambda: machine)
    assert tm.host_arch() == lima


def test_unknown_host_arch_and_unknown_arch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tm.platform, "machine", lambda: "vax")
    with pytest.raises(UsageError, match="vax"):
        tm.host_arch()
    with pytest.raises(UsageError, match="unknown arch 'mips'"):
        tm.check_arch("mips")


def test_location_basename() -> None:
    assert tm.location_basename("https://h/a/b/img%20x.qcow2?x=1#f") == "img x.qcow2"
    assert tm.location_basename("/srv/images/a.img") == "a.img"
    assert tm.location_basename("~/a.img") == "a.img"


def test_lima_modules_import_only_what_they_need() -> None:
    import subprocess
    import sys

    code = (
        "import sys, carget.lima, carget.lima.template, carget.lima.edit, carget.lima.cache\n"
        "print(','.join(m for m in ('trio', 'httpx', 'click', 'rich') if m in sys.modules))\n"
        "import carget.lima.annotate\n"  # needs httpx (which loads click and rich), not trio
        "print(','.join(m for m in ('trio',) if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", ""]
