"""lima 2 templates: ``base:`` composition, ``template:`` names, ``_images`` files.

The templates here are written for these tests in the shape of lima 2's own
(``templates/ubuntu-24.04.yaml`` names ``template:_images/ubuntu-24.04`` and
``template:_default/mounts``; ``_images/ubuntu-lts.yaml`` is a symlink): a main template
with ``base:``, an ``_images`` file with several arches and variants (one image with a
kernel and an initrd), a symlinked alias, a ``_default`` part, relative-path bases, loops.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from limafixtures import Site, StaticServer, run_cli, sample_bytes, sha256

from carget.add import add_bytes
from carget.errors import InputError
from carget.lima.cache import cache_key
from carget.lima.compose import MAX_BASE_DEPTH, compose, resolve_locator
from carget.lima.locate import TemplatesDir, templates_path
from carget.lima.template import pick
from carget.server.testing import running_gateway
from carget.unixfs.options import resolve_options

MIRROR = "https://mirror.invalid/noble"  # never contacted: entries with a cid come by IPFS

#: name -> (size, seed) of the files the _images template names
FILES = {
    "server-amd64.img": (300_000, 11),
    "server-arm64.img": (70_000, 12),
    "minimal-amd64.img": (40_000, 13),
    "minimal-arm64.img": (20_000, 14),
    "vmlinuz-amd64": (9_000, 15),
    "initrd-amd64": (8_000, 16),
    "base-extra-amd64.img": (5_000, 17),
}

MAIN = """\
minimumLimaVersion: 2.0.0

# as lima 2 writes its templates: nothing but bases
base:
- template:_images/noble
- template:_default/mounts
"""

# the _images file: a comment, quoting and blank lines vary, as in lima's own
IMAGES = """\
images:
# Try the release-yyyyMMdd images first.

- location: "{m}/server-amd64.img"
  arch: "x86_64"
  digest: "{d[server-amd64.img]}"
  variant: "server"
  kernel:
    location: "{m}/vmlinuz-amd64"
    digest: "{d[vmlinuz-amd64]}"
    cmdline: "console=ttyS0"
  initrd:
    location: "{m}/initrd-amd64"
    digest: "{d[initrd-amd64]}"
- location: "{m}/server-arm64.img"
  arch: "aarch64"
  digest: "{d[server-arm64.img]}"
  variant: "server"

# Fallback to the latest release image.
- location: {m}/current/server-amd64.img
  arch: x86_64
  variant: "server"

- location: "{m}/minimal-amd64.img"
  arch: "x86_64"
  digest: "{d[minimal-amd64.img]}"
  variant: "minimal"
- location: "{m}/minimal-arm64.img"
  arch: "aarch64"
  digest: "{d[minimal-arm64.img]}"
  variant: "minimal"
"""

MOUNTS = """\
mounts:
- location: "~"
"""


def cid_of(data: bytes) -> str:
    return str(add_bytes(data, resolve_options(cid_version=1)).cid)


class Lima2:
    """A lima 2 templates directory, the bytes its images name, and a clean lima home."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = {name: sample_bytes(size, seed) for name, (size, seed) in FILES.items()}
        self.files = root / "files"
        self.files.mkdir()
        for name, data in self.data.items():
            (self.files / name).write_bytes(data)
        self.templates = root / "templates"
        (self.templates / "_images").mkdir(parents=True)
        (self.templates / "_default").mkdir()
        self.images_text = IMAGES.format(
            m=MIRROR, d={k: sha256(v) for k, v in self.data.items()})
        self.images = self.templates / "_images" / "noble-24.04.yaml"
        self.images.write_text(self.images_text, newline="")
        # the alias lima keeps for "the current one", as _images/ubuntu-lts.yaml
        (self.templates / "_images" / "noble.yaml").symlink_to("noble-24.04.yaml")
        (self.templates / "_default" / "mounts.yaml").write_text(MOUNTS)
        self.main = self.templates / "noble.yaml"
        self.main.write_text(MAIN)
        self.home = root / "lima-home"
        self.home.mkdir()

    def annotated(self) -> None:
        """Give every pinned entry of the _images file its cid (as annotate would)."""
        text = self.images_text
        for data in self.data.values():
            digest = sha256(data)
            text = text.replace(f'digest: "{digest}"\n',
                                f'digest: "{digest}"\n  cid: "{cid_of(data)}"\n', 1)
        # the kernel's and initrd's lines are indented deeper
        for name in ("vmlinuz-amd64", "initrd-amd64"):
            text = text.replace(f'  cid: "{cid_of(self.data[name])}"\n',
                                f'    cid: "{cid_of(self.data[name])}"\n')
        self.images.write_text(text, newline="")


@pytest.fixture
def lima2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lima2:
    tree = Lima2(tmp_path)
    # no user's lima: its home, templates and limactl stay out of every test
    monkeypatch.setenv("LIMA_HOME", str(tree.home))
    monkeypatch.delenv("LIMA_TEMPLATES_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    return tree


@pytest.fixture
def gateway(lima2: Lima2) -> Iterator[str]:
    with running_gateway([lima2.files], cid_version=1) as url:
        yield url


def dirs(lima2: Lima2) -> list[TemplatesDir]:
    return [TemplatesDir(lima2.templates, installed=False)]


# --- composition --------------------------------------------------------------------------


def test_main_template_takes_its_images_from_its_bases_in_limas_order(lima2: Lima2) -> None:
    c = compose(str(lima2.main), templates=dirs(lima2))
    assert [p.locator for p in c.parts] == [
        str(lima2.main), "template:_images/noble", "template:_default/mounts"]
    images = [e for e in c.entries if len(e.path) == 2]
    assert [e.name for e in images] == [
        "server-amd64.img", "server-arm64.img", "server-amd64.img", "minimal-amd64.img",
        "minimal-arm64.img"]
    assert [e.variant for e in images] == ["server"] * 3 + ["minimal"] * 2
    assert {e.source for e in c.entries} == {"template:_images/noble"}
    kernel = next(e for e in c.entries if e.where == "images[0].kernel")
    assert (kernel.arch, kernel.variant) == ("x86_64", "server")


def test_a_template_naming_bases_without_images_is_still_refused(lima2: Lima2) -> None:
    (lima2.templates / "empty.yaml").write_text("base: template:_default/mounts\n")
    with pytest.raises(InputError, match="no images"):
        compose("template:empty", templates=dirs(lima2))


def test_symlinked_alias_is_read_and_written_through(lima2: Lima2) -> None:
    c = compose("template:noble", templates=dirs(lima2))
    alias = c.parts[1]
    assert alias.file == str(lima2.templates / "_images" / "noble.yaml")
    assert alias.real == str(lima2.images)


def test_own_images_come_before_the_bases_and_a_base_before_its_own_bases(
    lima2: Lima2,
) -> None:
    # images of a file, then of its first base (and that base's bases), then the next
    (lima2.templates / "_images" / "extra.yaml").write_text(
        f"base: noble\nimages:\n- location: {MIRROR}/base-extra-amd64.img\n  arch: x86_64\n")
    (lima2.templates / "mine.yaml").write_text(
        f"base: [template:_images/extra, template:_default/mounts]\n"
        f"images:\n- location: {MIRROR}/own.img\n  arch: x86_64\n")
    c = compose("template:mine", templates=dirs(lima2))
    # "base: noble" in _images/extra.yaml is relative to it: template:_images/noble
    assert [p.locator for p in c.parts] == [
        "template:mine", "template:_images/extra", "template:_images/noble",
        "template:_default/mounts"]
    names = [e.name for e in c.entries if len(e.path) == 2]
    assert names[:3] == ["own.img", "base-extra-amd64.img", "server-amd64.img"]


def test_relative_base_is_relative_to_the_template_not_the_cwd(
    lima2: Lima2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = tmp_path / "proj"
    (proj / "parts").mkdir(parents=True)
    (proj / "parts" / "images.yaml").write_text(lima2.images_text)
    (proj / "vm.yaml").write_text("base: parts/images.yaml\ncpus: 2\n")
    monkeypatch.chdir(tmp_path)
    c = compose("proj/vm.yaml", templates=[])
    assert c.parts[1].file == str(proj / "parts" / "images.yaml")
    assert c.parts[1].template.entries[0].source == str(proj / "parts" / "images.yaml")


def test_file_url_base(lima2: Lima2, tmp_path: Path) -> None:
    vm = tmp_path / "vm.yaml"
    vm.write_text(f"base:\n- url: file://{lima2.images}\n")
    c = compose(str(vm), templates=[])
    assert c.parts[1].file == str(lima2.images)
    assert len([e for e in c.entries if len(e.path) == 2]) == 5


@pytest.mark.parametrize(("locator", "base_dir", "expected"), [
    ("template:_images/x", "/any", "template:_images/x"),
    ("template://_images/x", "/any", "template:_images/x"),  # lima 1 spelling
    ("x", "template:_images", "template:_images/x"),
    ("y/x.yaml", "https://h.example/t", "https://h.example/t/y/x.yaml"),
    ("x.yaml", "/srv/t", "/srv/t/x.yaml"),
    ("/abs/x.yaml", "/srv/t", "/abs/x.yaml"),
    ("file:///abs/x.yaml", "/srv/t", "file:///abs/x.yaml"),
])
def test_locators_resolve_as_lima_resolves_them(
    locator: str, base_dir: str, expected: str
) -> None:
    assert resolve_locator(locator, base_dir, "t") == expected


def test_tilde_base_is_the_home_directory() -> None:
    assert resolve_locator("~/t.yaml", "/srv", "t") == os.path.expanduser("~/t.yaml")


@pytest.mark.parametrize("locator", ["../x.yaml", "a/../../x.yaml", ""])
def test_relative_locators_may_not_climb(locator: str) -> None:
    with pytest.raises(InputError):
        resolve_locator(locator, "/srv/t", "t")


def test_template_names_may_not_climb(lima2: Lima2) -> None:
    # a template outside the templates directory, which a climbing name would reach
    (lima2.root / "outside.yaml").write_text(lima2.images_text)
    (lima2.templates / "bad.yaml").write_text("base: template:../outside\n")
    with pytest.raises(InputError, match=r"must not contain '\.\.'"):
        compose("template:bad", templates=dirs(lima2))


def test_a_loop_is_reported_with_its_chain(lima2: Lima2, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\nimages: []\n")
    (tmp_path / "b.yaml").write_text("base: [c.yaml]\n")
    (tmp_path / "c.yaml").write_text("base: a.yaml\n")
    with pytest.raises(InputError, match=r"loop: .*a\.yaml -> .*b\.yaml -> .*c\.yaml -> "
                                         r".*a\.yaml"):
        compose(str(tmp_path / "a.yaml"), templates=[])
    code, _, err = run_cli(["lima", "prefetch", str(tmp_path / "a.yaml"), "--arch", "x86_64"],
                           capsys)
    assert code == 1 and "loop" in err


def test_a_base_included_twice_is_refused_as_lima_does(lima2: Lima2) -> None:
    (lima2.templates / "twice.yaml").write_text(
        "base: [template:_images/noble, template:_images/noble]\n")
    with pytest.raises(InputError, match="already included"):
        compose("template:twice", templates=dirs(lima2))


def test_a_long_chain_is_refused_without_recursing(tmp_path: Path, lima2: Lima2) -> None:
    n = MAX_BASE_DEPTH + 5
    for i in range(n):
        (tmp_path / f"t{i}.yaml").write_text(f"base: t{i + 1}.yaml\n")
    with pytest.raises(InputError, match="nested more than"):
        compose(str(tmp_path / "t0.yaml"), templates=[])


def test_the_default_base_comes_first_among_the_bases(lima2: Lima2) -> None:
    config = lima2.home / "_config"
    config.mkdir()
    (config / "base.yaml").write_text(
        f"images:\n- location: {MIRROR}/base-extra-amd64.img\n  arch: x86_64\n")
    c = compose(str(lima2.main), templates=dirs(lima2))
    assert [p.locator for p in c.parts][:3] == [
        str(lima2.main), str(config / "base.yaml"), "template:_images/noble"]
    assert c.entries[0].name == "base-extra-amd64.img"
    # only for the template itself, and only as lima applies it (not with the option off)
    c = compose(str(lima2.main), templates=dirs(lima2), use_default_base=False)
    assert c.entries[0].name == "server-amd64.img"


def test_template_arch_comes_from_the_first_file_setting_it(lima2: Lima2) -> None:
    (lima2.templates / "arm.yaml").write_text("arch: aarch64\nbase: template:_images/noble\n")
    assert compose("template:arm", templates=dirs(lima2)).arch == "aarch64"
    assert compose("template:noble", templates=dirs(lima2)).arch is None


# --- http(s) bases --------------------------------------------------------------------------


def test_http_base_is_downloaded_and_checked_by_its_digest(
    lima2: Lima2, site: Site, static_server: StaticServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = site.root
    (root / "tpl").mkdir()
    (root / "tpl" / "images.yaml").write_text(lima2.images_text)
    digest = sha256(lima2.images_text.encode())
    url = f"{static_server.base}/tpl/images.yaml"
    vm = tmp_path / "vm.yaml"
    vm.write_text(f"base:\n- url: {url}\n  digest: {digest}\n")
    c = compose(str(vm), templates=[])
    assert c.parts[1].locator == url and c.parts[1].read_only is not None
    assert c.entries[0].source == url
    wrong = "sha256:" + "0" * 64
    vm.write_text(f"base:\n- url: {url}\n  digest: {wrong}\n")
    code, _, err = run_cli(["lima", "prefetch", str(vm), "--arch", "x86_64"], capsys)
    assert code == 5 and wrong in err


def test_http_base_honours_the_proxy_environment(
    lima2: Lima2, site: Site, static_server: StaticServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the loopback server answers a proxy's absolute-form request by its path; the name
    # base.invalid resolves nowhere, so only a request through the proxy can succeed
    root = site.root
    hop = root / "http:" / "base.invalid"
    hop.mkdir(parents=True)
    (hop / "images.yaml").write_text(lima2.images_text)
    vm = tmp_path / "vm.yaml"
    vm.write_text("base: http://base.invalid/images.yaml\n")
    monkeypatch.setenv("HTTP_PROXY", static_server.base)
    c = compose(str(vm), templates=[])
    assert c.parts[1].locator == "http://base.invalid/images.yaml"
    assert static_server.counts["http://base.invalid/images.yaml"] == 1


# --- templates directory ----------------------------------------------------------------------


def fake_limactl(root: Path, templates: Path) -> Path:
    """``<prefix>/bin/limactl`` with lima's templates at ``<prefix>/share/lima/templates``."""
    prefix = root / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "share" / "lima").mkdir(parents=True)
    os.rename(templates, prefix / "share" / "lima" / "templates")
    exe = prefix / "bin" / "limactl"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return prefix


def test_templates_dir_is_found_beside_limactl(
    lima2: Lima2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = fake_limactl(tmp_path, lima2.templates)
    monkeypatch.setenv("PATH", str(prefix / "bin"))
    found = templates_path()
    assert found[-1] == TemplatesDir(prefix / "share" / "lima" / "templates", installed=True)
    c = compose("template:noble", templates=found)
    assert c.parts[1].read_only is not None and "installed" in c.parts[1].read_only
    # $LIMA_HOME/_templates comes first, as for lima
    assert found[0] == TemplatesDir(lima2.home / "_templates", installed=False)


def test_no_limactl_says_to_pass_templates_dir(
    lima2: Lima2, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["lima", "prefetch", "template:noble", "--arch", "x86_64"], capsys)
    assert code == 1 and "--templates-dir" in err
    code, _, err = run_cli(["lima", "prefetch", str(lima2.main), "--arch", "x86_64"], capsys)
    assert code == 1 and "--templates-dir" in err


def test_lima_templates_path_is_honoured(
    lima2: Lima2, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMA_TEMPLATES_PATH", f"/nonexistent:{lima2.templates}")
    assert compose("template:noble", templates=templates_path()).parts[1].file == str(
        lima2.templates / "_images" / "noble.yaml")


# --- annotate -------------------------------------------------------------------------------


def test_annotate_writes_each_cid_into_the_file_holding_its_entry(
    lima2: Lima2, capsys: pytest.CaptureFixture[str]
) -> None:
    main_before = lima2.main.read_bytes()
    mounts_before = (lima2.templates / "_default" / "mounts.yaml").read_bytes()
    code, _, err = run_cli(["lima", "annotate", "--write", "--templates-dir",
                            str(lima2.templates), "--from-dir", str(lima2.files),
                            "--arch", "aarch64", str(lima2.main)], capsys)
    assert code == 0, err
    assert "template:_images/noble: images[1] aarch64 (server) server-arm64.img" in err
    assert lima2.main.read_bytes() == main_before
    assert (lima2.templates / "_default" / "mounts.yaml").read_bytes() == mounts_before
    # written through the alias into its target, which stays a symlink's target
    assert (lima2.templates / "_images" / "noble.yaml").is_symlink()
    after = lima2.images.read_text()
    added = [ln for ln in after.splitlines() if ln not in lima2.images_text.splitlines()]
    assert added == [f'  cid: "{cid_of(lima2.data["server-arm64.img"])}"',
                     f'  cid: "{cid_of(lima2.data["minimal-arm64.img"])}"']
    # every other byte as it was
    assert after.replace(added[0] + "\n", "").replace(added[1] + "\n", "") == lima2.images_text


def test_annotate_refuses_limas_installed_templates_before_any_work(
    lima2: Lima2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = fake_limactl(tmp_path, lima2.templates)
    monkeypatch.setenv("PATH", str(prefix / "bin"))
    installed = prefix / "share" / "lima" / "templates" / "_images" / "noble-24.04.yaml"
    before = installed.read_bytes()
    code, _, err = run_cli(["lima", "annotate", "--write", "--from-dir", "/nonexistent",
                            "template:noble"], capsys)
    assert code == 1
    assert "limactl template copy" in err and "installed" in err
    assert installed.read_bytes() == before
    # without --write the diff is shown, with a note that the file is not carget's to write
    code, out, err = run_cli(["lima", "annotate", "--from-dir", str(lima2.files),
                              "--arch", "aarch64", "template:noble"], capsys)
    assert code == 0, err
    assert "+  cid: " in out and "not writable by carget" in err


# --- prefetch -------------------------------------------------------------------------------


def entries_of(cache: Path) -> dict[str, dict[str, bytes]]:
    by_url = cache / "download" / "by-url-sha256"
    return {d.name: {f.name: f.read_bytes() for f in d.iterdir()} for d in by_url.iterdir()}


def lima_entry(lima2: Lima2, name: str) -> dict[str, bytes]:
    return {"url": f"{MIRROR}/{name}".encode(), "data": lima2.data[name],
            "sha256.digest": sha256(lima2.data[name]).encode()}


def test_prefetch_picks_the_arch_and_variant_as_lima_does_with_kernel_and_initrd(
    lima2: Lima2, gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lima2.annotated()
    cache = tmp_path / "cache"
    args = ["lima", "prefetch", "--templates-dir", str(lima2.templates), "--cache-dir",
            str(cache), "--gateway", gateway, str(lima2.main)]
    code, _, err = run_cli([*args, "--arch", "x86_64"], capsys)
    assert code == 0, err
    # the server variant (the first x86_64 image's): not the minimal image
    assert entries_of(cache) == {
        cache_key(f"{MIRROR}/{n}"): lima_entry(lima2, n)
        for n in ("server-amd64.img", "vmlinuz-amd64", "initrd-amd64")}
    assert "template:_images/noble: images[0].kernel x86_64 (server)" in err
    assert "minimal" not in err.split("carget lima prefetch")[-1]
    # run again: everything is in lima's cache, nothing is downloaded
    code, _, err = run_cli([*args, "--arch", "x86_64", "--gateway", "http://127.0.0.1:9"],
                           capsys)
    assert code == 0 and err.count("cached") == 3, err
    # --variant, as limactl start --image-variant
    code, _, err = run_cli([*args, "--arch", "aarch64", "--variant", "minimal"], capsys)
    assert code == 0, err
    assert cache_key(f"{MIRROR}/minimal-arm64.img") in entries_of(cache)
    assert cache_key(f"{MIRROR}/server-arm64.img") not in entries_of(cache)


def test_prefetch_defaults_to_the_templates_arch(
    lima2: Lima2, gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lima2.annotated()
    (lima2.templates / "arm.yaml").write_text("arch: aarch64\nbase: template:_images/noble\n")
    cache = tmp_path / "cache"
    code, _, err = run_cli(["lima", "prefetch", "--templates-dir", str(lima2.templates),
                            "--cache-dir", str(cache), "--gateway", gateway, "template:arm"],
                           capsys)
    assert code == 0, err
    assert set(entries_of(cache)) == {cache_key(f"{MIRROR}/server-arm64.img")}


def test_pick_takes_the_variant_of_the_first_image_of_the_arch(lima2: Lima2) -> None:
    c = compose(str(lima2.main), templates=dirs(lima2))
    got = [(e.where, e.variant) for e in pick(c.entries, "aarch64")]
    assert got == [("images[1]", "server")]
    assert [e.where for e in pick(c.entries, "x86_64", "minimal")] == ["images[3]"]
