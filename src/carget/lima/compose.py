"""Composing a lima 2 template from its ``base:`` templates, as lima does.

lima 2's templates keep their images apart: ``templates/ubuntu-24.04.yaml`` says only
``base: [template:_images/ubuntu-24.04, template:_default/mounts]``. lima (pkg/limatmpl)
merges each base into the template that names it; for lists (``images``,
``containerd.archives``, ``firmware.images``) that means the template's own entries
first, then each base's, in the order of ``base:``, a base's own bases merged into it
first. So the composed entries are a depth-first walk, each file before its bases::

    ubuntu-24.04.yaml                 images: (none)
    ├── _images/ubuntu-24.04.yaml     images[0..13]      <- these, in this order
    └── _default/mounts.yaml          mounts only

The rules followed (lima's pkg/limatmpl, read for the facts):

* ``base:`` is a locator, a ``{url, digest}`` mapping, or a list of either;
* a locator is ``template:NAME`` (in lima's templates directories, ``.yaml`` added when
  NAME has no extension; see :mod:`carget.lima.locate`), ``http(s)://``, ``file:///ABS``
  or a path; ``~/`` is the home directory; a relative one is relative to the template
  naming it (also inside ``template:`` and URLs) and may not contain ``..``;
* a locator met twice is an error (lima's "base template loop detected": lima refuses a
  base included twice even when it is not a loop);
* the default base (``$LIMA_HOME/_config/base.yaml``) comes first in the top template's
  list when it exists;
* scalars such as ``arch:`` come from the first file, in that walk, that sets them.

Where carget does more than lima 2 does today: a base's ``digest:`` is checked (lima 2
refuses such a base as not yet implemented). Where it does less: ``github:`` and plug-in
URL schemes, and image-URL bases, are refused with a message.

The walk is a loop over an explicit stack, bounded by :data:`MAX_BASE_DEPTH` and
:data:`MAX_PARTS`, so a hostile chain of bases cannot exhaust the stack or memory.
"""

from __future__ import annotations

import os
import posixpath
import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ..digest import digest_bytes
from ..errors import DigestMismatch, FetchTimeout, InputError, NetworkError, NotFoundError
from .locate import TemplatesDir, default_base
from .template import (
    MAX_TEMPLATE_BYTES,
    Entry,
    Template,
    check_digest,
    decode_template,
    parse_template,
    read_template_file,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "MAX_BASE_DEPTH",
    "MAX_COMPOSED_BYTES",
    "MAX_PARTS",
    "Composed",
    "Part",
    "compose",
    "resolve_locator",
]

#: bases of bases this deep are refused: lima's own templates go two deep, and a chain
#: longer than this is a mistake or an attack, not a template
MAX_BASE_DEPTH = 32
#: files in one composition (lima's 4 MiB limit on the composed template bounds it there)
MAX_PARTS = 256
#: all the files of one composition together (four times the limit on one file)
MAX_COMPOSED_BYTES = 4 * MAX_TEMPLATE_BYTES
#: seconds without bytes from a base's server before giving up (the gateway spec's figure)
HTTP_IDLE_TIMEOUT = 30.0

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True, slots=True)
class Part:
    """One file of a composed template."""

    template: Template
    #: the absolute locator lima would name it by (``template:_images/ubuntu-24.04``)
    locator: str
    #: the local file read (as found, symlinks not resolved); None for an http(s) base
    file: str | None
    #: why carget may not write it, or None: lima's installed templates, a URL
    read_only: str | None
    #: locators from the top template down to this one
    chain: tuple[str, ...]

    @property
    def real(self) -> str | None:
        """The file a write must replace: a symlinked alias is written through."""
        return os.path.realpath(self.file) if self.file is not None else None


@dataclass(frozen=True, slots=True)
class Composed:
    """A template with its bases: the files and the entries in lima's order."""

    path: str
    parts: tuple[Part, ...]
    entries: tuple[Entry, ...]
    #: the template's ``arch:`` (None when unset, null or "default": the host's)
    arch: str | None


def _scheme(locator: str) -> str | None:
    # one-letter schemes are Windows drive names for lima; carget treats them as paths too
    m = _SCHEME_RE.match(locator)
    return m.group(1).lower() if m and len(m.group(1)) > 1 else None


def _normalize_template_url(locator: str) -> str:
    """``template://NAME`` (lima 1 style) is ``template:NAME`` since lima 2."""
    if locator.startswith("template://"):
        return "template:" + locator[len("template://"):].lstrip("/")
    return locator


def _base_dir(locator: str) -> str:
    """The locator of the directory holding ``locator`` (lima's basePath)."""
    scheme = _scheme(locator)
    if scheme == "template":
        name = locator.split(":", 1)[1]
        parent = posixpath.dirname(name)
        return f"template:{parent}"
    if scheme is not None:
        u = urllib.parse.urlsplit(locator)
        parent = posixpath.dirname(posixpath.join(u.netloc, u.path.lstrip("/")))
        return f"{scheme}://{parent}"
    return os.path.dirname(os.path.abspath(locator))


def resolve_locator(locator: str, base_dir: str, where: str) -> str:
    """The absolute form of ``locator`` named by a template in ``base_dir``.

    Raises :class:`InputError` naming ``where`` for an empty locator or a relative one
    with ``..`` segments (lima refuses both).
    """
    if not locator:
        raise InputError(f"{where}: base locator is empty")
    locator = _normalize_template_url(locator)
    if _scheme(locator) is not None:
        return locator
    if locator == "~" or locator.startswith("~/"):
        locator = os.path.expanduser(locator)
    if locator.startswith("/"):
        return os.path.normpath(locator)
    if ".." in locator.replace("\\", "/").split("/"):
        raise InputError(f"{where}: relative base {locator!r} must not contain '..'")
    scheme = _scheme(base_dir)
    if scheme == "template":
        return "template:" + posixpath.normpath(posixpath.join(base_dir[len("template:"):],
                                                               locator)).lstrip("./")
    if scheme is not None:
        u = urllib.parse.urlsplit(base_dir)
        path = posixpath.normpath(posixpath.join(u.path or "/", locator))
        return urllib.parse.urlunsplit((u.scheme, u.netloc, path, "", ""))
    return os.path.normpath(os.path.join(base_dir, locator))


def _base_list(tpl: Template) -> list[tuple[str, str | None]]:
    """``base:`` as (locator, digest) pairs. Raises :class:`InputError` when malformed."""
    raw = tpl.data.get("base")
    if raw is None:
        return []
    items = list(raw) if isinstance(raw, CommentedSeq) else [raw]
    out: list[tuple[str, str | None]] = []
    for i, item in enumerate(items):
        where = f"{tpl.path}: base[{i}]" if isinstance(raw, CommentedSeq) else f"{tpl.path}: base"
        if isinstance(item, str):
            out.append((item, None))
        elif isinstance(item, CommentedMap):
            url, digest = item.get("url"), item.get("digest")
            if not isinstance(url, str):
                raise InputError(f"{where}: a base mapping needs a url: string")
            if digest is not None:
                if not isinstance(digest, str):
                    raise InputError(f"{where}: digest must be a string")
                check_digest(digest, where)
            out.append((url, digest))
        else:
            raise InputError(f"{where}: a base is a locator string or a {{url, digest}} mapping")
    return out


def _template_name(name: str) -> str:
    """``NAME`` as a file name in a templates directory (lima's templatestore rule:
    ``.yaml`` is added unless NAME has an extension that does not start with a digit)."""
    ext = posixpath.splitext(name)[1]
    if len(ext) < 2 or ext[1].isdigit():
        name += ".yaml"
    return name


class _Loader:
    """Reads each locator's bytes: from a templates directory, a file, or HTTP(S)."""

    def __init__(self, templates: list[TemplatesDir], client: httpx.Client | None) -> None:
        self.templates = templates
        self._client = client

    def client(self) -> httpx.Client:
        import httpx  # only when a base is a URL: reading local templates needs no HTTP

        if self._client is None:
            # trust_env (httpx's default): HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE apply
            self._client = httpx.Client(follow_redirects=True,
                                        timeout=httpx.Timeout(HTTP_IDLE_TIMEOUT))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def load(
        self, locator: str, digest: str | None, where: str
    ) -> tuple[str, str | None, str | None]:
        """(text, local file or None, why read-only or None) of ``locator``."""
        at = where or "template"
        scheme = _scheme(locator)
        if scheme == "template":
            return self._template(locator, where)
        if scheme in ("http", "https"):
            return self._http(locator, digest, where), None, "it was downloaded from a URL"
        if scheme == "file":
            path = urllib.parse.unquote(urllib.parse.urlsplit(locator).path)
            if not locator.startswith("file:///") or not os.path.isabs(path):
                raise InputError(f"{at}: file URL {locator!r} is not an absolute path")
            return self._file(path, digest, where), path, None
        if scheme is not None:
            raise InputError(f"{at}: carget cannot read {scheme}: locators ({locator})")
        return self._file(locator, digest, where), locator, None

    def _file(self, path: str, digest: str | None, where: str) -> str:
        try:
            text = read_template_file(path)
        except InputError as exc:
            if not where:
                raise
            raise InputError(f"{where}: {exc}") from None
        _check(text.encode("utf-8"), digest, f"{where or 'template'}: {path}")
        return text

    def _template(self, locator: str, where: str) -> tuple[str, str, str | None]:
        at = where or "template"
        name = locator.split(":", 1)[1]
        if ".." in name:
            raise InputError(f"{at}: template name {name!r} must not contain '..'")
        if not self.templates:
            raise InputError(
                f"{at}: {locator}: lima's templates directory was not found (no limactl "
                "on PATH with share/lima/templates beside it); pass --templates-dir DIR"
            )
        filename = _template_name(name)
        for d in self.templates:
            path = os.path.normpath(d.path / filename)
            if os.path.exists(path) or os.path.islink(path):
                text = self._file(path, None, where)
                why = (f"it is one of lima's installed templates ({d.path})"
                       if d.installed else None)
                return text, path, why
        searched = ", ".join(str(d.path) for d in self.templates)
        raise InputError(
            f"{at}: {locator}: no {filename} in {searched}; pass --templates-dir DIR "
            "to name lima's templates directory"
        )

    def _http(self, url: str, digest: str | None, where: str) -> str:
        import httpx

        at = where or "template"
        try:
            with self.client().stream("GET", url) as resp:
                if resp.status_code in (404, 410):
                    raise NotFoundError(f"{at}: {url}: HTTP {resp.status_code}")
                if not resp.is_success:
                    raise NetworkError(f"{at}: {url}: HTTP {resp.status_code}")
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_TEMPLATE_BYTES:
                        break
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"{at}: {url}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"{at}: {url}: {exc or type(exc).__name__}") from None
        raw = bytes(body)
        _check(raw, digest, f"{at}: {url}")
        return decode_template(raw, url)


def _check(raw: bytes, digest: str | None, what: str) -> None:
    """Raise :class:`DigestMismatch` when ``raw`` does not have ``digest``."""
    if digest is None:
        return
    algo = digest.partition(":")[0]
    got = digest_bytes(algo, raw)
    if got != digest:
        raise DigestMismatch(f"{what} has digest {got}, the base says {digest}")


def _arch(data: CommentedMap) -> tuple[bool, str | None]:
    """(whether the file sets ``arch:``, its value when it names an arch)."""
    if "arch" not in data:
        return False, None
    value = data["arch"]
    return True, value if isinstance(value, str) and value != "default" else None


def compose(
    locator: str,
    *,
    templates: list[TemplatesDir],
    use_default_base: bool = True,
    client: httpx.Client | None = None,
) -> Composed:
    """Read the template at ``locator`` (a path, ``template:NAME``, ``file://`` or
    ``http(s)://``) and every base it names, as lima does; see the module docstring.

    Raises :class:`InputError` for a loop or a base met twice, a chain deeper than
    :data:`MAX_BASE_DEPTH`, more than :data:`MAX_PARTS` files, a malformed ``base:``, an
    unreadable or malformed file, a ``template:`` name with no templates directory, and a
    composed template without images; :class:`DigestMismatch` when a base's bytes differ
    from its ``digest:``; :class:`NotFoundError`, :class:`NetworkError` for http(s) bases.
    """
    top = _normalize_template_url(locator)
    given = top
    if _scheme(top) is None:
        top = os.path.abspath(os.path.expanduser(top))
    loader = _Loader(templates, client)
    parts: list[Part] = []
    seen: set[str] = {top}
    total = 0
    arch_set, arch = False, None
    # (locator, digest, chain of the templates naming it); bases are pushed in reverse so
    # they pop in their list's order: a depth-first walk, each file before its bases
    stack: list[tuple[str, str | None, tuple[str, ...]]] = [(top, None, ())]
    try:
        while stack:
            loc, digest, parents = stack.pop()
            chain = (*parents, loc)
            where = f"base of {parents[-1]}" if parents else ""
            text, file, read_only = loader.load(loc, digest, where)
            total += len(text)
            if len(parts) >= MAX_PARTS or total > MAX_COMPOSED_BYTES:
                raise InputError(f"{given}: more than {MAX_PARTS} base files or "
                                 f"{MAX_COMPOSED_BYTES} bytes in all: refused")
            if parents:
                name = file if file is not None else loc
                source = _display(loc, file)
            else:  # the template itself: named as the user named it
                source = given
                name = given if _scheme(given) is None else (file or loc)
            tpl = parse_template(text, name, part=True, source=source)
            parts.append(Part(tpl, loc, file, read_only, chain))
            if not arch_set:
                arch_set, arch = _arch(tpl.data)
            bases = _base_list(tpl)
            if not parents and use_default_base:
                default = default_base()
                if default is not None:
                    bases.insert(0, (str(default), None))
            if bases and len(chain) >= MAX_BASE_DEPTH:
                raise InputError(f"{given}: bases nested more than {MAX_BASE_DEPTH} deep: "
                                 f"{' -> '.join(chain[:3])} -> ...")
            here = _base_dir(loc)
            pending: list[tuple[str, str | None, tuple[str, ...]]] = []
            for raw, base_digest in bases:
                absolute = resolve_locator(raw, here, f"{name}: base {raw!r}")
                if absolute in chain:
                    loop = " -> ".join((*chain, absolute))
                    raise InputError(f"base template loop: {loop}")
                if absolute in seen:
                    raise InputError(
                        f"{name}: base {absolute} is already included (lima refuses a base "
                        "included twice)"
                    )
                seen.add(absolute)
                pending.append((absolute, base_digest, chain))
            stack.extend(reversed(pending))
    finally:
        loader.close()
    entries = tuple(e for p in parts for e in p.template.entries)
    if not any(e.path[0] == "images" for e in entries):
        raise InputError(f"{locator}: not a lima template (no images list, "
                         f"in it or in its {len(parts) - 1} base(s))")
    return Composed(parts[0].template.path, tuple(parts), entries, arch)


def _display(locator: str, file: str | None) -> str:
    """How entries of a base name their file: ``template:NAME`` and URLs as written,
    local files by path."""
    if _scheme(locator) in ("template", "http", "https"):
        return locator
    return file or locator
