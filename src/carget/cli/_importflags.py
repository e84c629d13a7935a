"""kubo's ``ipfs add`` flags, shared by every command that imports (``add``, ``serve``).

One list of click options, one command class for kubo's flag forms, and one function that
turns the parsed values into :class:`~carget.unixfs.options.ImportOptions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import click

from ..cid import SUPPORTED_HASHES
from ..errors import UsageError
from ..unixfs.options import PROFILES, ImportOptions, resolve_options

__all__ = ["KuboFlagsCommand", "add_flags", "import_flags", "pop_import_options"]

F = TypeVar("F", bound=Callable[..., Any])

#: parameter names import_flags adds, consumed by pop_import_options
_NAMES = (
    "wrap",
    "hidden",
    "cid_version",
    "raw_leaves",
    "chunker",
    "trickle",
    "hash_name",
    "inline",
    "inline_limit",
    "profile",
    "preserve_mode",
    "preserve_mtime",
    "max_file_links",
    "max_directory_links",
    "max_hamt_fanout",
    "empty_dirs",
    "mode",
    "mtime",
    "mtime_nsecs",
    "jobs",
)

#: parameter names add_flags adds (``add`` only), with their values when not given
_ADD_DEFAULTS: dict[str, Any] = {
    "dereference_symlinks": False,
    "dereference_args": False,
    "ignore": (),
    "ignore_rules_path": None,
    "stdin_name": "",
    "nocopy": False,
    "only_hash": False,
    "pin": True,
    "pin_name": None,
    "fscache": False,
    "to_files": None,
    "fast_provide_root": None,
    "fast_provide_dag": None,
    "fast_provide_wait": None,
}


class KuboFlagsCommand(click.Command):
    """kubo's bool and optional-value flags: a bare ``--raw-leaves`` means true and never
    swallows the next argument; ``--raw-leaves=false`` turns it off (likewise ``--digest``
    where a command has it)."""

    BARE: ClassVar[dict[str, str]] = {
        "--raw-leaves": "--raw-leaves=true",
        "--empty-dirs": "--empty-dirs=true",
        "-E": "--empty-dirs=true",
        "--digest": "--digest=sha256",
        "--pin": "--pin=true",
        "--fast-provide-root": "--fast-provide-root=true",
        "--fast-provide-dag": "--fast-provide-dag=true",
        "--fast-provide-wait": "--fast-provide-wait=true",
    }

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names = {opt for p in self.params for opt in getattr(p, "opts", ())}
        fixed: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                fixed += args[i:]
                break
            fixed.append(self.BARE[arg] if arg in self.BARE and arg in names else arg)
        return super().parse_args(ctx, fixed)


class _GoUint(click.ParamType):  # type: ignore[type-arg]
    """An unsigned number as kubo's command parser reads it (Go ``strconv.ParseUint(s, 0,
    32)``): ``0644`` and ``0o644`` are octal, ``0x1a4`` hex, ``420`` decimal."""

    name = "uint"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).replace("_", "")
        try:
            if len(text) > 1 and text[0] == "0" and text[1].isdigit():
                n = int(text[1:], 8)  # Go's leading-zero octal
            else:
                n = int(text, 0)
        except ValueError:
            self.fail(f"{value!r} is not an unsigned number", param, ctx)
        if not 0 <= n < 2**32:
            self.fail(f"{value!r} is out of range (0 to 2^32-1)", param, ctx)
        return n


def import_flags(fn: F) -> F:
    """Add kubo's import flags (names and defaults as ``ipfs add``) to a click command."""
    options = [
        click.option(
            "-w",
            "--wrap-with-directory",
            "wrap",
            is_flag=True,
            help="Wrap files with a directory object.",
        ),
        click.option("-H", "--hidden", is_flag=True, help="Include files that are hidden."),
        click.option(
            "--cid-version",
            type=click.IntRange(0, 1),
            default=None,
            help="CID version (default 0; 1 implies --raw-leaves).",
        ),
        click.option(
            "--raw-leaves",
            type=click.BOOL,
            default=None,
            help="Use raw blocks for leaf nodes (--raw-leaves[=true|false]).",
        ),
        click.option(
            "--chunker",
            "-s",
            default=None,
            metavar="size-N",
            help="Chunking algorithm, size-N (default size-262144).",
        ),
        click.option("--trickle", "-t", is_flag=True, help="Use the trickle DAG layout."),
        click.option(
            "--hash",
            "hash_name",
            default=None,
            metavar="NAME",
            help=f"Hash function (default sha2-256), as kubo's: {SUPPORTED_HASHES}.",
        ),
        click.option("--inline", is_flag=True, help="Inline small blocks into identity CIDs."),
        click.option(
            "--inline-limit",
            type=click.IntRange(0),
            default=None,
            help="Maximum block size to inline (default 32).",
        ),
        click.option(
            "--profile",
            default=None,
            type=click.Choice(sorted(PROFILES)),
            help="Named import profile (IPIP-499).",
        ),
        click.option("--preserve-mode", is_flag=True, help="Store the files' modes (UnixFS 1.5)."),
        click.option(
            "--preserve-mtime", is_flag=True, help="Store the files' mtimes (UnixFS 1.5)."
        ),
        click.option(
            "--max-file-links",
            type=int,
            default=None,
            help="Limit the links per UnixFS file node (default 174; 1024 under "
            "unixfs-v1-2025; 0 or less means 174).",
        ),
        click.option(
            "--max-directory-links",
            type=int,
            default=None,
            help="Shard a directory of more entries than this into a HAMT (default 0: no "
            "limit; as kubo, not the top directory of the add).",
        ),
        click.option(
            "--max-hamt-fanout",
            type=int,
            default=None,
            help="Links per HAMT node: a power of 2 from 8 to 1024 (default 256; as kubo, "
            "not for the top directory of the add).",
        ),
        click.option(
            "--empty-dirs",
            "-E",
            type=click.BOOL,
            default=True,
            help="Include empty directories (--empty-dirs[=true|false], default true).",
        ),
        click.option(
            "--mode",
            type=_GoUint(),
            default=None,
            help="Store this POSIX mode (e.g. 0644) in every file and directory (UnixFS 1.5).",
        ),
        click.option(
            "--mtime",
            type=int,
            default=None,
            help="Store this modification time (seconds since the Unix epoch) in every entry.",
        ),
        click.option(
            "--mtime-nsecs",
            type=_GoUint(),
            default=None,
            help="The nanoseconds of --mtime.",
        ),
        click.option(
            "--jobs",
            "-j",
            type=click.IntRange(1),
            default=None,
            help="Hashing threads (default: number of CPUs).",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def add_flags(fn: F) -> F:
    """``ipfs add``'s flags for reading the files (go-ipfs-cmds' file options) and those
    that only say what kubo does with the blocks, for ``carget add``. carget always
    computes as ``ipfs add --only-hash`` does, so the storing flags that ``--only-hash``
    ignores (``--pin``, ``--fscache``) are accepted and do nothing, and those it refuses
    (``--to-files``, ``--pin-name``) are refused with kubo's reason."""
    options = [
        click.option("--dereference-symlinks", is_flag=True,
                     help="Add what every symlink points to (arguments and inside "
                          "directories), not the link."),
        click.option("--dereference-args", is_flag=True,
                     help="DEPRECATED (as kubo): use --dereference-symlinks. Follows "
                          "symlinks given as arguments only."),
        click.option("--ignore", multiple=True, metavar="RULE",
                     help="A .gitignore-style rule for entries to leave out, matched "
                          "against each entry's name (repeatable; kubo's matcher: see the "
                          "README)."),
        click.option("--ignore-rules-path", type=click.Path(dir_okay=False), default=None,
                     metavar="FILE", help="A file of .gitignore-style rules (before any "
                                          "--ignore)."),
        click.option("--stdin-name", default="", metavar="NAME",
                     help="Name standard input's entry (default: its CID)."),
        click.option("--nocopy", is_flag=True,
                     help="The CIDs kubo's filestore gives (ipfs add --nocopy): implies "
                          "--raw-leaves."),
        click.option("-n", "--only-hash", is_flag=True,
                     help="Accepted for kubo's command lines: carget only ever hashes."),
        click.option("--pin", type=click.BOOL, default=True,
                     help="Accepted, does nothing: nothing is stored to pin (as kubo "
                          "with --only-hash)."),
        click.option("--fscache", is_flag=True,
                     help="Accepted, does nothing: there is no filestore to check (as "
                          "kubo with --only-hash)."),
        *(click.option(f"--fast-provide-{what}", type=click.BOOL, default=None,
                       help="Accepted, does nothing: nothing is provided (as kubo with "
                            "--only-hash).") for what in ("root", "dag", "wait")),
        click.option("--pin-name", default=None, metavar="NAME",
                     help="Refused, as kubo refuses it with --only-hash."),
        click.option("--to-files", default=None, metavar="MFS-PATH",
                     help="Refused, as kubo refuses it with --only-hash."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _rules_file(path: str) -> list[str]:
    """The lines of ``--ignore-rules-path`` (read here: carget.ignore does no I/O)."""
    from ..errors import InputError
    from ..ignore import split_rules_file

    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return split_rules_file(f.read())
    except OSError as exc:
        raise InputError(f"--ignore-rules-path {path}: {exc.strerror or exc}") from None


def pop_import_options(flags: dict[str, Any]) -> tuple[ImportOptions, int | None]:
    """Take import_flags' (and add_flags', when given) values out of ``flags``; return
    the options and ``--jobs``.

    Raises :class:`UsageError` for combinations kubo refuses.
    """
    v = {name: flags.pop(name) for name in _NAMES}
    a = {name: flags.pop(name, default) for name, default in _ADD_DEFAULTS.items()}
    if a["to_files"] is not None:
        raise UsageError("only-hash and to-files options are not compatible (carget "
                         "always computes as ipfs add --only-hash)")
    if a["pin_name"] is not None:
        # kubo: --only-hash turns pinning off, and a pin name needs a pin
        raise UsageError("pin-name option requires pin to be set (carget always computes "
                         "as ipfs add --only-hash, which pins nothing)")
    rules = tuple(_rules_file(a["ignore_rules_path"])) if a["ignore_rules_path"] else ()
    opts = resolve_options(
        profile=v["profile"],
        cid_version=v["cid_version"],
        raw_leaves=v["raw_leaves"],
        chunker=v["chunker"],
        trickle=v["trickle"],
        hash=v["hash_name"],
        inline=v["inline"],
        inline_limit=v["inline_limit"],
        wrap=v["wrap"],
        hidden=v["hidden"],
        preserve_mode=v["preserve_mode"],
        preserve_mtime=v["preserve_mtime"],
        max_file_links=v["max_file_links"],
        max_directory_links=v["max_directory_links"],
        max_hamt_fanout=v["max_hamt_fanout"],
        empty_dirs=v["empty_dirs"],
        mode=v["mode"],
        mtime=v["mtime"],
        mtime_nsecs=v["mtime_nsecs"],
        nocopy=a["nocopy"],
        ignore=rules + tuple(a["ignore"]),
        dereference_symlinks=a["dereference_symlinks"],
        dereference_args=a["dereference_args"],
        stdin_name=a["stdin_name"],
    )
    return opts, v["jobs"]
