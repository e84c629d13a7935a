"""Reading lima templates: the downloadable entries, their arch, digest and cid.

A lima template (``templates/*.yaml`` in lima-vm/lima) names the files a VM needs as
mappings with ``location``, ``arch`` and ``digest``:

* ``images[]``: the disk images, one per arch, each optionally with ``kernel`` and
  ``initrd`` mappings (``location``, ``digest``) that share the image's arch;
* ``containerd.archives[]``: the nerdctl-full archives lima installs in the guest;
* ``firmware.images[]``: UEFI firmware images.

The lima IPFS proposal adds ``cid:`` beside ``digest:``. This module parses the text with
ruamel.yaml's round-trip loader, which keeps every node's line and column, so
:mod:`carget.lima.annotate` can edit the text line by line and the rest of carget can name
an entry the way a user would find it (``images[2]``, line 12). No I/O but the one read.
"""

from __future__ import annotations

import os
import platform
import posixpath
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ..cid import CID
from ..digest import DigestSyntaxError, parse_digest
from ..errors import CargetError, InputError, UsageError

__all__ = [
    "LIMA_ARCHES",
    "MAX_TEMPLATE_BYTES",
    "Entry",
    "Template",
    "host_arch",
    "load_template",
    "decode_template",
    "is_image",
    "parse_template",
    "pick",
    "read_template_file",
    "select",
]

#: lima's arch names (limayaml.Arch: X8664, AARCH64, ARMV7L, PPC64LE, RISCV64, S390X)
LIMA_ARCHES = ("x86_64", "aarch64", "armv7l", "ppc64le", "riscv64", "s390x")

#: what Python's platform.machine() says on each OS, mapped to lima's names
_MACHINE_TO_LIMA = {
    "x86_64": "x86_64", "amd64": "x86_64",
    "aarch64": "aarch64", "arm64": "aarch64",
    "armv7l": "armv7l", "armv7": "armv7l", "armhf": "armv7l",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "s390x": "s390x",
}

#: lima templates are a few KiB; anything far larger is not a template and is refused
#: before YAML parsing can spend memory on it
MAX_TEMPLATE_BYTES = 4 * 1024 * 1024



@dataclass(frozen=True, slots=True)
class Entry:
    """One downloadable file of a template.

    ``where`` is the YAML path (``images[0]``, ``images[0].kernel``,
    ``containerd.archives[1]``); ``line`` is 1-based. ``node`` is the ruamel mapping, which
    carries the line/column facts :mod:`carget.lima.annotate` edits by.
    """

    where: str
    path: tuple[str | int, ...]  # keys and indexes from the top-level mapping
    line: int
    location: str
    arch: str | None
    digest: str | None
    cid: CID | None
    node: CommentedMap = field(repr=False, compare=False)
    #: lima 2's ``variant:`` of an image (its kernel and initrd carry their image's)
    variant: str | None = None
    #: the file holding the entry, as messages name it ("" for text parsed alone)
    source: str = ""

    @property
    def name(self) -> str:
        """The last path segment of the location (how ``--from-dir`` finds the file)."""
        return location_basename(self.location)

    @property
    def label(self) -> str:
        """How messages and the summary table name this entry: its file (when it came
        from a composed template), YAML path, arch, variant and file name."""
        arch = f" {self.arch}" if self.arch else ""
        variant = f" ({self.variant})" if self.variant else ""
        return f"{self.at}{arch}{variant} {self.name}"

    @property
    def at(self) -> str:
        """``FILE: images[0]``, or only the YAML path for a template parsed alone."""
        return f"{self.source}: {self.where}" if self.source else self.where

    @property
    def key(self) -> tuple[str, str]:
        """Unique within a composed template (YAML paths repeat across its files)."""
        return (self.source, self.where)

    @property
    def is_remote(self) -> bool:
        return urllib.parse.urlsplit(self.location).scheme in ("http", "https")


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: its text, its round-trip data and its entries in file order."""

    path: str
    text: str
    data: CommentedMap
    entries: tuple[Entry, ...]

    @property
    def parts(self) -> tuple[Template, ...]:
        """The files the entries come from: this one (see :class:`carget.lima.compose.Composed`
        for a template made of several)."""
        return (self,)


def host_arch() -> str:
    """This machine's arch in lima's names. Raises :class:`UsageError` if lima has none."""
    machine = platform.machine().lower()
    try:
        return _MACHINE_TO_LIMA[machine]
    except KeyError:
        raise UsageError(
            f"this machine's arch {machine!r} has no lima name; pass --arch "
            f"({', '.join(LIMA_ARCHES)})"
        ) from None


def check_arch(arch: str) -> str:
    """Return ``arch`` if lima knows it. Raises :class:`UsageError` naming it otherwise."""
    if arch not in LIMA_ARCHES:
        raise UsageError(f"unknown arch {arch!r} (lima knows {', '.join(LIMA_ARCHES)})")
    return arch


def location_basename(location: str) -> str:
    """Last path segment of a URL or path, without query or fragment, percent-decoded."""
    parts = urllib.parse.urlsplit(location)
    path = parts.path if parts.scheme else location
    return urllib.parse.unquote(posixpath.basename(path.rstrip("/")))


def check_digest(text: str, where: str) -> str:
    """Validate a go-digest string (``sha256:HEX``). Raises :class:`InputError` naming
    ``where`` if it is malformed or its algorithm is one carget cannot compute."""
    try:
        parse_digest(text, exact=True)
    except DigestSyntaxError as exc:
        raise InputError(f"{where}: digest {exc}") from None
    return text


def _scalar(node: CommentedMap, key: str, where: str) -> str | None:
    if key not in node:
        return None
    value = node[key]
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}: {key} must be a string, not {type(value).__name__}")
    return value


def _entry(
    node: Any, where: str, path: tuple[str | int, ...], parent_arch: str | None,
    with_arch: bool, file: str, parent_variant: str | None = None, source: str = "",
) -> Entry:
    if not isinstance(node, CommentedMap):
        raise InputError(f"{file}: {where}: expected a mapping with location/arch/digest")
    line = node.lc.line + 1
    ctx = f"{file}: {where} (line {line})"
    location = _scalar(node, "location", ctx)
    if not location:
        raise InputError(f"{ctx}: entry has no location")
    arch = _scalar(node, "arch", ctx) if with_arch else None
    if arch is not None and arch not in LIMA_ARCHES:
        raise InputError(f"{ctx}: unknown arch {arch!r} (lima knows {', '.join(LIMA_ARCHES)})")
    digest = _scalar(node, "digest", ctx)
    if digest is not None:
        check_digest(digest, ctx)
    cid_text = _scalar(node, "cid", ctx)
    cid = None
    if cid_text:  # "cid:" left empty is a placeholder, as if absent
        try:
            cid = CID.parse(cid_text)
        except CargetError as exc:
            raise InputError(f"{ctx}: bad cid {cid_text!r}: {exc}") from None
    variant = _scalar(node, "variant", ctx) if with_arch else None
    return Entry(where, path, line, location, arch or parent_arch, digest, cid, node,
                 variant or parent_variant, source)


def _seq(data: CommentedMap, key: str, where: str) -> CommentedSeq | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, CommentedSeq):
        raise InputError(f"{where}: expected a list")
    return value


def parse_template(
    text: str, path: str = "<template>", *, part: bool = False, source: str = ""
) -> Template:
    """Parse template text into its entries.

    ``part`` is for one file of a composed template (a ``base:`` or a template naming
    bases), which may have no images of its own; ``source`` is how entries name the file.
    Raises :class:`InputError` naming ``path`` (and the entry) when the text is not YAML,
    is not a mapping, has no non-empty ``images`` list (unless ``part``), or an entry is
    malformed (no location, unknown arch, bad digest or cid).
    """
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, TypeError, RecursionError) as exc:  # ruamel on pathological input
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, CommentedMap):
        raise InputError(f"{path}: not a lima template (the top level is not a mapping)")
    images = _seq(data, "images", f"{path}: images")
    if not images and not part:
        raise InputError(f"{path}: not a lima template (no images list)")
    entries: list[Entry] = []
    for i, node in enumerate(images or ()):
        image = _entry(node, f"images[{i}]", ("images", i), None, True, path, None, source)
        entries.append(image)
        for sub in ("kernel", "initrd"):
            if node.get(sub) is not None:
                entries.append(
                    _entry(node[sub], f"images[{i}].{sub}", ("images", i, sub), image.arch, False,
                           path, image.variant, source)
                )
    for section, key in (("containerd", "archives"), ("firmware", "images")):
        parent = data.get(section)
        if parent is None:
            continue
        if not isinstance(parent, CommentedMap):
            raise InputError(f"{path}: {section}: expected a mapping")
        items = _seq(parent, key, f"{path}: {section}.{key}")
        for i, node in enumerate(items or ()):
            entries.append(
                _entry(node, f"{section}.{key}[{i}]", (section, key, i), None, True, path,
                       None, source)
            )
    return Template(path, text, data, tuple(entries))


def read_template_file(path: str | os.PathLike[str]) -> str:
    """The text of a template file, read once and bounded.

    Raises :class:`InputError` when it is missing, unreadable, larger than
    :data:`MAX_TEMPLATE_BYTES` or not UTF-8.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read(MAX_TEMPLATE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror or exc}") from None
    return decode_template(raw, name)


def decode_template(raw: bytes, name: str) -> str:
    """Template bytes as text. Raises :class:`InputError` when they are larger than
    :data:`MAX_TEMPLATE_BYTES` or not UTF-8."""
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise InputError(f"{name}: larger than {MAX_TEMPLATE_BYTES} bytes: not a lima template")
    try:
        # newline="" semantics: keep \r\n as it is, so edits can preserve the file's bytes
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_template(path: str | os.PathLike[str]) -> Template:
    """Read and parse a template file.

    Raises :class:`InputError` when it is missing, unreadable, too large, not UTF-8, or
    not a lima template (see :func:`parse_template`).
    """
    name = os.fspath(path)
    return parse_template(read_template_file(name), name)


def select(entries: tuple[Entry, ...] | list[Entry], arch: str | None) -> list[Entry]:
    """Entries for ``arch`` (all when None). An entry without ``arch`` is for every arch, as
    lima fills a missing image arch with the instance's arch."""
    if arch is None:
        return list(entries)
    return [e for e in entries if e.arch is None or e.arch == arch]


def is_image(entry: Entry) -> bool:
    """True for an ``images[i]`` entry (not its kernel or initrd, not an archive)."""
    return entry.path[0] == "images" and len(entry.path) == 2


def pick(
    entries: tuple[Entry, ...] | list[Entry], arch: str, variant: str | None = None
) -> list[Entry]:
    """The entries lima would try for an instance of ``arch``, in lima's order.

    As lima 2 starts an instance (pkg/instance Prepare): an image without ``arch`` is for
    the instance's arch; the first image of the arch sets the variant, and only images of
    that arch and that variant are tried, each with its ``kernel`` and ``initrd``.
    ``variant`` filters the images first, as ``limactl start --image-variant`` does.
    Archives and firmware are picked by arch alone (:func:`select`).
    """
    images = [e for e in entries if is_image(e) and (variant is None or e.variant == variant)]
    target = next((e for e in images if e.arch in (None, arch)), None)
    chosen = {
        e.key for e in images
        if target is not None and e.arch in (None, arch) and e.variant == target.variant
    }
    out: list[Entry] = []
    for e in entries:
        if e.path[0] == "images":
            if (e.source, f"images[{e.path[1]}]") in chosen:
                out.append(e)
        elif e.arch is None or e.arch == arch:
            out.append(e)
    return out
