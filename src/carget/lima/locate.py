"""Where lima keeps things on this machine: its home, its templates, the default base.

The rules are lima 2's (pkg/limatype/dirnames, pkg/templatestore, pkg/usrlocal):

* lima's home is ``$LIMA_HOME``, else ``~/.lima``, with symlinks resolved when it exists;
* ``template:NAME`` is searched in ``$LIMA_TEMPLATES_PATH`` (a ``:``-separated list) when
  it is set; else in ``$LIMA_HOME/_templates`` (the user's own), then in
  ``<prefix>/share/lima/templates`` beside ``limactl`` (``<prefix>/bin/limactl``), both
  as PATH names it and with its symlinks resolved (a Homebrew install links the binary);
* the default base is ``$LIMA_HOME/_config/base.yaml``: when that file exists, lima puts
  it first in the ``base:`` list of the template an instance is created from.

Templates found in a ``share/lima/templates`` beside ``limactl`` are lima's installed
ones: carget never writes into them (``limactl template copy`` makes a writable copy).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TemplatesDir",
    "default_base",
    "installed_templates_dirs",
    "lima_home",
    "templates_path",
]


@dataclass(frozen=True, slots=True)
class TemplatesDir:
    """One directory ``template:NAME`` is searched in."""

    path: Path
    #: lima's installed templates (beside limactl): read, never written
    installed: bool


def lima_home() -> Path:
    """``$LIMA_HOME`` or ``~/.lima``, symlinks resolved when it exists (as lima does)."""
    env = os.environ.get("LIMA_HOME")
    home = Path(env) if env else Path.home() / ".lima"
    return Path(os.path.realpath(home)) if home.exists() else home


def default_base() -> Path | None:
    """lima's default base template, ``$LIMA_HOME/_config/base.yaml``, if it exists."""
    path = lima_home() / "_config" / "base.yaml"
    return path if os.path.exists(path) else None


def installed_templates_dirs() -> list[Path]:
    """``<prefix>/share/lima/templates`` beside the ``limactl`` that PATH finds, as found
    and with symlinks resolved; only directories that exist."""
    limactl = shutil.which("limactl")
    if limactl is None:
        return []
    found: list[Path] = []
    for exe in (os.path.abspath(limactl), os.path.realpath(limactl)):
        prefix = Path(exe).parent.parent
        candidate = prefix / "share" / "lima" / "templates"
        if candidate.is_dir() and candidate not in found:
            found.append(candidate)
    return found


def templates_path(given: tuple[str, ...] | list[str] = ()) -> list[TemplatesDir]:
    """The directories ``template:NAME`` is looked up in, in order.

    ``given`` (``--templates-dir``) replaces lima's own search path. Directories found
    beside ``limactl`` are marked installed whether given or discovered, so a template of
    lima's installation is never rewritten.
    """
    installed = {os.path.realpath(p) for p in installed_templates_dirs()}

    def entry(p: str | Path) -> TemplatesDir:
        return TemplatesDir(Path(p), os.path.realpath(p) in installed)

    if given:
        return [entry(p) for p in given]
    env = os.environ.get("LIMA_TEMPLATES_PATH")
    if env:
        return [entry(p) for p in env.split(os.pathsep) if p]
    dirs = [TemplatesDir(lima_home() / "_templates", False)]
    dirs.extend(TemplatesDir(p, True) for p in installed_templates_dirs())
    return dirs
